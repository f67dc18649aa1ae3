"""The fake Docker Engine API (aiohttp, on a unix socket or a loopback port): tests,
shell and demo.

It answers what the docker SDK sends for Compose services, in the engine's own JSON
shapes: `/version` (API negotiation), `/containers/json` with label filters,
`/containers/{id}/json`, `/containers/{id}/logs` as the multiplexed stream (an 8-byte
header per frame: stream, three zero bytes, big-endian length) with RFC 3339 nano
timestamps, `since` and `tail`, `/containers/{id}/stats?stream=false`, restart,
create/start/stop/rename/remove, and `/images/json` and `/images/{name}/json`. Paths
take an optional `/v1.xx` prefix. Errors are `{"message": …}` with the engine's status
codes (404 no such container or image, 409 name in use or running, 304 already
started or stopped). Every request is recorded; `delay` holds every answer (a hung
engine), `write_delay` holds the answer to a write after applying it (with
`apply_late`, before), and `stop()` makes it refuse connections.

    async with FakeDocker(socket_path=tmp_path / "docker.sock") as engine:
        engine.image("shop/checkout:1.4.2")
        engine.container("shop-app-1", "shop/checkout:1.4.2", project="shop", service="app")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from emulator.kubernetes import LogEntry, log_entries, rfc3339_nano

API_VERSION = "1.47"
Obj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class _Container:
    inspect: Obj
    logs: list[LogEntry] = field(default_factory=list)
    usage: Obj = field(default_factory=dict)  # cpu_percent, memory, limit


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _iso(when: datetime) -> str:
    return rfc3339_nano(when)


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


class FakeDocker:
    """The engine and its state; see the module docstring."""

    def __init__(self, socket_path: Path | None = None) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, _Container] = {}
        self.images: dict[str, Obj] = {}
        self.requests: list[Recorded] = []
        self.delay = 0.0
        self.write_delay = 0.0
        self.apply_late = False
        self.port = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._closing = asyncio.Event()

    # -- test-facing state ---------------------------------------------------------------
    def image(
        self,
        tag: str,
        ago: float = 3600,
        cmd: list[str] | None = None,
        env: list[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Add an image `repo:tag` built `ago` seconds ago; returns its ID."""
        ident = _digest(tag)
        self.images[ident] = {
            "Id": ident,
            "RepoTags": [tag],
            "RepoDigests": [],
            "Parent": "",
            "Created": _iso(datetime.now(UTC) - timedelta(seconds=ago)),
            "Config": {
                "Cmd": cmd or ["python", "-m", "app"],
                "Entrypoint": None,
                "Env": env or ["PATH=/usr/local/bin:/usr/bin:/bin", f"APP_VERSION={tag}"],
                "Labels": labels or {"org.opencontainers.image.version": tag.rpartition(":")[2]},
                "WorkingDir": "/app",
                "User": "",
            },
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 123_456_789,
        }
        return ident

    def container(
        self,
        name: str,
        image: str,
        *,
        project: str,
        service: str,
        number: int = 1,
        state: str = "running",
        exit_code: int = 0,
        health: str | None = None,
        restarts: int = 0,
        oom: bool = False,
        env: list[str] | None = None,
        ago: float = 600,
    ) -> str:
        """Add a Compose service's container running `image` (a tag of an added image)."""
        image_obj = self._image(image)
        ident = hashlib.sha256(f"{name}{next(self._ids)}".encode()).hexdigest()
        started = datetime.now(UTC) - timedelta(seconds=ago)
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "False",
        } | image_obj["Config"]["Labels"]
        config = {
            "Hostname": ident[:12],
            "Env": (env or []) + image_obj["Config"]["Env"],
            "Cmd": image_obj["Config"]["Cmd"],
            "Entrypoint": None,
            "Image": image,
            "Labels": labels,
            "WorkingDir": "/app",
            "User": "",
            "Tty": False,
            "ExposedPorts": {"8080/tcp": {}},
        }
        inspect = {
            "Id": ident,
            "Created": _iso(started - timedelta(seconds=5)),
            "Name": f"/{name}",
            "Image": image_obj["Id"],
            "RestartCount": restarts,
            "Config": config,
            "HostConfig": {
                "NetworkMode": f"{project}_default",
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
                "Binds": None,
            },
            "NetworkSettings": {
                "Networks": {
                    f"{project}_default": {"Aliases": [name, service, ident[:12]], "IPAddress": ""}
                }
            },
            "Mounts": [],
            "State": {},
        }
        self.containers[ident] = _Container(inspect)
        self._set_state(ident, state, exit_code, oom, started)
        if health:
            inspect["State"]["Health"] = {
                "Status": health,
                "FailingStreak": 3 if health == "unhealthy" else 0,
                "Log": [
                    {
                        "Start": _iso(started),
                        "End": _iso(started),
                        "ExitCode": 1 if health == "unhealthy" else 0,
                        "Output": "curl: (7) Failed to connect to localhost port 8080"
                        if health == "unhealthy"
                        else "ok",
                    }
                ],
            }
        self.set_stats(name, cpu_percent=5.0, memory=64 * 2**20, limit=512 * 2**20)
        return ident

    def set_log(self, name: str, text: str, stream: int = 1, spacing: float = 1.0) -> None:
        """What a container wrote on stdout (1) or stderr (2), replacing that stream's
        lines; lines with an RFC 3339 prefix were written then, the others `spacing`
        apart up to now."""
        found = self._find(name)
        kept = [e for e in found.logs if e.stream != stream]
        found.logs = sorted(kept + log_entries(text, spacing, stream), key=lambda e: e.time)

    def set_stats(self, name: str, *, cpu_percent: float, memory: int, limit: int) -> None:
        self._find(name).usage = {"cpu_percent": cpu_percent, "memory": memory, "limit": limit}

    def inspect(self, name: str) -> Obj:
        return self._find(name).inspect

    def names(self) -> list[str]:
        return sorted(c.inspect["Name"].lstrip("/") for c in self.containers.values())

    @property
    def url(self) -> str:
        """The address to put in a target's host_env variable."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"tcp://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start (or, after `stop()`, restart at the same address)."""
        if self._runner is None:
            app = web.Application(middlewares=[self._middleware])
            for prefix in ("", "/v{version:[0-9.]+}"):
                for method, path, handler in self._routes():
                    app.router.add_route(method, prefix + path, handler)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
            await self._runner.setup()
        self._closing.clear()
        if self.socket_path is not None:
            self._site = web.UnixSite(self._runner, str(self.socket_path))
        else:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        if self.socket_path is None:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening: clients are refused, like an engine that is down."""
        self._closing.set()
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    async def close(self) -> None:
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDocker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _routes(self) -> list[tuple[str, str, Handler]]:
        c = "/containers/{id}"
        return [
            ("GET", "/version", self._version),
            ("GET", "/_ping", self._ping),
            ("GET", "/containers/json", self._list),
            ("POST", "/containers/create", self._create),
            ("GET", f"{c}/json", self._inspect),
            ("GET", f"{c}/logs", self._logs),
            ("GET", f"{c}/stats", self._stats),
            ("POST", f"{c}/restart", self._restart),
            ("POST", f"{c}/start", self._start),
            ("POST", f"{c}/stop", self._stop),
            ("POST", f"{c}/rename", self._rename),
            ("DELETE", c, self._remove),
            ("GET", "/images/json", self._images),
            ("GET", "/images/{name:.+}/json", self._image_inspect),
        ]

    # -- plumbing ------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
        self.requests.append(Recorded(request.method, request.path, dict(request.query), body))
        await self._hold(self.delay)
        write = request.method in ("POST", "DELETE")
        try:
            if write and self.apply_late:
                await self._hold(self.write_delay)
            response = await handler(request)
            if write and not self.apply_late:
                await self._hold(self.write_delay)  # applied; the answer comes late
            return response
        except _Error as err:
            return web.json_response({"message": err.message}, status=err.status)

    async def _hold(self, seconds: float) -> None:
        if seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    def _find(self, ref: str) -> _Container:
        """By full ID, unique ID prefix or name, as the engine resolves references."""
        ref = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        for found in self.containers.values():
            if found.inspect["Name"] == f"/{ref}":
                return found
        prefixed = [c for ident, c in self.containers.items() if ident.startswith(ref)]
        if len(prefixed) == 1 and ref:
            return prefixed[0]
        raise _Error(404, f"No such container: {ref}")

    def _image(self, ref: str) -> Obj:
        if ref in self.images:
            return self.images[ref]
        for image in self.images.values():
            if ref in image["RepoTags"] or f"{ref}:latest" in image["RepoTags"]:
                return image
        raise _Error(404, f"No such image: {ref}")

    def _set_state(
        self, ident: str, status: str, exit_code: int = 0, oom: bool = False, at: Any = None
    ) -> None:
        inspect = self.containers[ident].inspect
        now = at or datetime.now(UTC)
        running = status == "running"
        previous = inspect.get("State") or {}
        inspect["State"] = previous | {
            "Status": status,
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": oom,
            "Dead": False,
            "Pid": 4242 if running else 0,
            "ExitCode": 0 if running else exit_code,
            "Error": "",
            "StartedAt": _iso(now) if running else previous.get("StartedAt", _iso(now)),
            "FinishedAt": "0001-01-01T00:00:00Z" if running else _iso(now),
        }

    # -- handlers ------------------------------------------------------------------------
    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "Version": "27.3.1",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": "6.1.0",
                "GoVersion": "go1.22.7",
            }
        )

    async def _ping(self, _: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": API_VERSION})

    async def _list(self, request: web.Request) -> web.Response:
        show_all = request.query.get("all", "") in _TRUE
        filters = json.loads(request.query.get("filters") or "{}")
        wanted = filters.get("label", [])
        if isinstance(wanted, dict):  # the older {"k=v": true} form
            wanted = [k for k, v in wanted.items() if v]
        found = []
        for c in self.containers.values():
            inspect = c.inspect
            labels = inspect["Config"]["Labels"]
            if not show_all and not inspect["State"]["Running"]:
                continue
            if not all(_label_matches(labels, term) for term in wanted):
                continue
            found.append(_summary(inspect))
        return web.json_response(found)

    async def _inspect(self, request: web.Request) -> web.Response:
        return web.json_response(self._find(request.match_info["id"]).inspect)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        found, query = self._find(request.match_info["id"]), request.query
        if query.get("follow", "0") in _TRUE:
            raise _Error(400, "the fake engine does not follow logs")
        streams = {1} if query.get("stdout", "0") in _TRUE else set()
        streams |= {2} if query.get("stderr", "0") in _TRUE else set()
        if not streams:
            raise _Error(400, "Bad parameters: you must choose at least one stream")
        entries = [e for e in found.logs if e.stream in streams]
        since = float(query.get("since", "0") or 0)
        if since:
            cutoff = datetime.fromtimestamp(since, UTC)
            entries = [e for e in entries if e.time >= cutoff]
        tail = query.get("tail", "all")
        if tail not in ("all", "") and int(tail) >= 0:
            entries = entries[-int(tail) :] if int(tail) else []
        stamped = query.get("timestamps", "0") in _TRUE
        tty = found.inspect["Config"]["Tty"]
        payload = b"".join(_frame(e, stamped, tty) for e in entries)
        kind = (
            "application/vnd.docker.raw-stream"
            if tty
            else ("application/vnd.docker.multiplexed-stream")
        )
        return web.Response(body=payload, headers={"Content-Type": kind})

    async def _stats(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["id"])
        if request.query.get("stream", "1") in _TRUE:
            raise _Error(400, "the fake engine answers stream=false only")
        return web.json_response(_stats_body(found))

    async def _restart(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["id"])
        self._set_state(found.inspect["Id"], "running")
        return web.Response(status=204)

    async def _start(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["id"])
        if found.inspect["State"]["Running"]:
            return web.Response(status=304)
        self._set_state(found.inspect["Id"], "running")
        return web.Response(status=204)

    async def _stop(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["id"])
        if not found.inspect["State"]["Running"]:
            return web.Response(status=304)
        self._set_state(found.inspect["Id"], "exited", exit_code=0)
        return web.Response(status=204)

    async def _rename(self, request: web.Request) -> web.Response:
        found, name = self._find(request.match_info["id"]), request.query.get("name", "")
        self._name_free(name)
        found.inspect["Name"] = f"/{name}"
        return web.Response(status=204)

    async def _remove(self, request: web.Request) -> web.Response:
        found = self._find(request.match_info["id"])
        ident = found.inspect["Id"]
        if found.inspect["State"]["Running"] and request.query.get("force", "0") not in _TRUE:
            raise _Error(
                409,
                f'cannot remove container "{found.inspect["Name"]}": container is running: '
                "stop the container before removing or force remove",
            )
        del self.containers[ident]
        return web.Response(status=204)

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = request.query.get("name", "")
        self._name_free(name)
        image = self._image(str(body.get("Image", "")))
        ident = hashlib.sha256(f"{name}{next(self._ids)}".encode()).hexdigest()
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        defaults = image["Config"]
        config = {
            "Hostname": ident[:12],
            "Env": [],
            "Tty": False,
            "Labels": {},
            **config,
            "Cmd": config.get("Cmd") or defaults["Cmd"],
            "Entrypoint": config.get("Entrypoint") or defaults["Entrypoint"],
        }
        config["Env"] = list(config["Env"] or []) + [
            e
            for e in defaults["Env"]
            if e.split("=")[0] not in {v.split("=")[0] for v in config["Env"] or []}
        ]
        config["Labels"] = defaults["Labels"] | (config["Labels"] or {})
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        self.containers[ident] = _Container(
            {
                "Id": ident,
                "Created": _iso(datetime.now(UTC)),
                "Name": f"/{name or ident[:12]}",
                "Image": image["Id"],
                "RestartCount": 0,
                "Config": config,
                "HostConfig": body.get("HostConfig") or {},
                "NetworkSettings": {"Networks": endpoints},
                "Mounts": [],
                "State": {},
            }
        )
        self._set_state(ident, "created")
        self.containers[ident].inspect["State"]["StartedAt"] = "0001-01-01T00:00:00Z"
        return web.json_response({"Id": ident, "Warnings": []}, status=201)

    def _name_free(self, name: str) -> None:
        for c in self.containers.values():
            if name and c.inspect["Name"] == f"/{name}":
                raise _Error(
                    409,
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{c.inspect["Id"]}". You have to remove (or rename) that container to be '
                    "able to reuse that name.",
                )

    async def _images(self, request: web.Request) -> web.Response:
        filters = json.loads(request.query.get("filters") or "{}")
        references = filters.get("reference", [])
        found = [
            {
                "Id": image["Id"],
                "ParentId": "",
                "RepoTags": image["RepoTags"],
                "RepoDigests": image["RepoDigests"],
                "Created": int(_parse_iso(image["Created"]).timestamp()),
                "Size": image["Size"],
                "SharedSize": -1,
                "Labels": image["Config"]["Labels"],
                "Containers": -1,
            }
            for image in self.images.values()
            if not references or any(_reference(image, ref) for ref in references)
        ]
        return web.json_response(found)

    async def _image_inspect(self, request: web.Request) -> web.Response:
        return web.json_response(self._image(request.match_info["name"]))


def _label_matches(labels: dict[str, str], term: str) -> bool:
    key, sep, value = term.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _reference(image: Obj, ref: str) -> bool:
    """`reference=repo` matches every tag of repo; `repo:tag` that one tag."""
    return any(tag == ref or tag.rpartition(":")[0] == ref for tag in image["RepoTags"])


def _summary(inspect: Obj) -> Obj:
    """A `/containers/json` entry: the listing's own shape, not the inspect's."""
    state = inspect["State"]
    started = _parse_iso(state["StartedAt"]) if state["Running"] else None
    if started is not None:
        minutes = int((datetime.now(UTC) - started).total_seconds() // 60)
        status = f"Up {minutes} minutes" if minutes else "Up Less than a second"
        health = (state.get("Health") or {}).get("Status")
        status += f" ({health})" if health else ""
    elif state["Status"] == "created":
        status = "Created"
    else:
        status = f"Exited ({state['ExitCode']}) 1 minute ago"
    return {
        "Id": inspect["Id"],
        "Names": [inspect["Name"]],
        "Image": inspect["Config"]["Image"],
        "ImageID": inspect["Image"],
        "Command": " ".join(inspect["Config"].get("Cmd") or []),
        "Created": int(_parse_iso(inspect["Created"]).timestamp()),
        "Ports": [],
        "Labels": inspect["Config"]["Labels"],
        "State": state["Status"],
        "Status": status,
        "HostConfig": {"NetworkMode": inspect["HostConfig"].get("NetworkMode", "default")},
        "NetworkSettings": inspect["NetworkSettings"],
        "Mounts": [],
    }


def _frame(entry: LogEntry, stamped: bool, tty: bool) -> bytes:
    """One log line, framed as the engine frames a non-TTY container's output."""
    line = (f"{_iso(entry.time)} " if stamped else "") + entry.text + "\n"
    payload = line.encode()
    if tty:
        return payload
    return struct.pack(">BxxxL", entry.stream, len(payload)) + payload


def _stats_body(found: _Container) -> Obj:
    """One `stats?stream=false` sample whose CPU delta gives `cpu_percent` over 2 CPUs."""
    usage, running = found.usage, found.inspect["State"]["Running"]
    system, cpus = 10_000_000_000, 2
    total = int(usage["cpu_percent"] / 100 * system / cpus) if running else 0
    now = datetime.now(UTC)
    return {
        "read": _iso(now),
        "preread": _iso(now - timedelta(seconds=1)),
        "name": found.inspect["Name"],
        "id": found.inspect["Id"],
        "pids_stats": {"current": 12 if running else 0, "limit": 4096},
        "networks": {"eth0": {"rx_bytes": 1_234_567, "tx_bytes": 7_654_321}},
        "memory_stats": {
            "usage": usage["memory"] + 8 * 2**20 if running else 0,
            "limit": usage["limit"],
            "stats": {"inactive_file": 8 * 2**20 if running else 0},
        },
        "blkio_stats": {"io_service_bytes_recursive": []},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 50_000_000_000 + total},
            "system_cpu_usage": 900_000_000_000 + system,
            "online_cpus": cpus,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 50_000_000_000},
            "system_cpu_usage": 900_000_000_000,
            "online_cpus": cpus,
        },
    }
