"""Diagnostics and mitigations for a Docker Compose service on a Docker Engine.

The service's containers are the ones labelled `com.docker.compose.project` and
`com.docker.compose.service`, as `docker compose ps` finds them, so nothing depends
on container names. Calls go through `DockerApi` (threads, timeouts, failures in
words). The engine has no server-side dry run: a dry run reads everything the change
needs and says what it would do; it pins the container IDs and images it read, and
a confirmed run that finds them changed is refused (`StateChanged`). Environment
variables are copied when a container is recreated, and never shown.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.durations import compact_duration
from bot.executors.base import (
    DockerTarget,
    ExecutionResult,
    ExecutorError,
    OutcomeUnknown,
    StateChanged,
    Unanswered,
    age_of,
    build_result,
    format_table,
    mitigation_result,
    tally,
    truncate,
)
from bot.executors.docker_api import DockerApi, labels
from bot.executors.loglines import LogLine, Read, errors_result, logs_result, parse_stamped

__all__ = ["ROLLED_BACK_FROM", "DockerExecutor"]

ROLLED_BACK_FROM = "io.firebreak.rolled-back-from"  # label on a container a rollback made
DRY_RUN_NOTE = (
    "\n(dry run: read only, nothing was changed; the Docker Engine has no server-side dry run)"
)
STOP_GRACE = 10  # seconds a container gets to exit on SIGTERM, as `docker stop` gives
SCAN_LINES = 20_000  # lines read per container when filtering a window (grep, errors)
Pinned = dict[str, Any] | None
Json = dict[str, Any]


def _name(container: Json) -> str:
    """`shop-checkout-1` from a listing (`Names: ["/shop-checkout-1"]`) or an inspect."""
    names = container.get("Names") or [container.get("Name") or container["Id"][:12]]
    return str(names[0]).lstrip("/")


def _repository(image: str) -> str:
    """`registry:5000/shop/checkout` from `registry:5000/shop/checkout:1.4.2` or `@sha256:…`."""
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def _created(when: str | None) -> datetime | None:
    """The engine's RFC 3339 times (nanoseconds, `Z`) as datetimes; None for its zero time."""
    if not when or when.startswith("0001-"):
        return None
    lines = parse_stamped(f"{when} x", "")
    return lines[0].time if lines else None


def _check_pinned(pinned: Pinned, now: dict[str, str], service: str) -> None:
    """Refuse when the containers (or their images) differ from the confirmed dry run."""
    if pinned is not None and pinned.get("containers") != now:
        raise StateChanged(f"{service}'s containers changed since this dry run; propose again")


def _mitigation(dry_run: bool, action: str, output: str, **details: object) -> ExecutionResult:
    return mitigation_result(dry_run, action, output, note=DRY_RUN_NOTE, **details)


class DockerExecutor:
    """Runs allow-listed operations against the Docker Engines named by the targets."""

    def __init__(self, environ: Mapping[str, str] = os.environ, timeout: float = 10.0) -> None:
        self._api = DockerApi(environ, timeout)
        self._call = self._api.call

    def close(self) -> None:
        self._api.close()

    def _where(self, target: DockerTarget) -> str:
        return f"{target.compose_project}/{target.service}"

    async def _list(self, target: DockerTarget) -> list[Json]:
        """The service's containers, running or not, oldest first."""
        found: list[Json] = await self._call(
            target,
            f"list containers of {self._where(target)}",
            lambda api: api.containers(all=True, filters=labels(target)),
        )
        return sorted(found, key=lambda c: (c.get("Created", 0), _name(c)))

    async def _inspect(self, target: DockerTarget, containers: list[Json]) -> list[Json]:
        async def one(container: Json) -> Json:
            ident = container["Id"]
            found: Json = await self._call(
                target, f"inspect {_name(container)}", lambda api: api.inspect_container(ident)
            )
            return found

        return list(await asyncio.gather(*(one(c) for c in containers)))

    async def _required(self, target: DockerTarget) -> list[Json]:
        containers = await self._list(target)
        if not containers:
            raise ExecutorError(f"no containers of Compose service {self._where(target)}")
        return containers

    # -- diagnostics ----------------------------------------------------------------------

    async def containers(self, target: DockerTarget) -> ExecutionResult:
        """`docker compose ps -a` with restarts, exit codes and OOM kills from inspect."""
        listed = await self._list(target)
        if not listed:
            return build_result(True, f"no containers of Compose service {self._where(target)}", "")
        rows, oom, restarts = [], 0, 0
        for container in await self._inspect(target, listed):
            state = container["State"]
            restarts += int(container.get("RestartCount") or 0)
            oom += bool(state.get("OOMKilled"))
            health = (state.get("Health") or {}).get("Status", "-")
            exited = f" ({state.get('ExitCode')})" if state.get("Status") == "exited" else ""
            rows.append(
                [
                    _name(container),
                    f"{state.get('Status', '?')}{exited}",
                    health,
                    container.get("RestartCount") or 0,
                    "yes" if state.get("OOMKilled") else "",
                    container["Config"].get("Image", "?"),
                    age_of(_created(state.get("StartedAt"))),
                ]
            )
        summary = tally("containers", (str(r[1]).split(" ")[0] for r in rows), restarts, oom)
        headers = ["NAME", "STATE", "HEALTH", "RESTARTS", "OOM", "IMAGE", "UP FOR"]
        shown = [{"name": r[0], "state": r[1], "health": r[2]} for r in rows]
        return build_result(True, summary, format_table(headers, rows), containers=shown)

    async def logs(
        self,
        target: DockerTarget,
        tail: int = 100,
        previous: bool = False,
        pod: str | None = None,
        since: int | None = None,
        grep: str | None = None,
    ) -> ExecutionResult:
        """The last `tail` lines of every container of the service (or of the one named
        `pod`), stdout and stderr, merged by time and redacted; `since` in seconds,
        `grep` a literal, case-insensitive filter."""
        if previous:
            raise ExecutorError(
                "Docker keeps one log per container across its restarts: leave out "
                "`previous`, and the crashed runs' lines are in `logs`"
            )
        containers = await self._required(target)
        if pod:
            containers = [c for c in containers if _name(c) == pod]
            if not containers:
                raise ExecutorError(
                    f"container {pod} is not one of Compose service {self._where(target)}"
                )
        read = await self._read_logs(target, containers, since, None if grep else tail)
        where = pod or f"Compose service {self._where(target)}"
        return logs_result(read, tail=tail, grep=grep, where=where)

    async def errors(self, target: DockerTarget, since: int) -> ExecutionResult:
        """Error and warning lines of every container in the last `since` seconds,
        grouped by message: the top 10 with count, first and last seen."""
        read = await self._read_logs(target, await self._required(target), since, None)
        where = f"Compose service {self._where(target)}"
        return errors_result(read, where=where, window=compact_duration(since))

    async def _read_logs(
        self, target: DockerTarget, containers: list[Json], since: int | None, tail: int | None
    ) -> Read:
        """Each container's log with the engine's timestamps, read concurrently."""
        start = int(time.time()) - since if since else None
        lines = tail or SCAN_LINES

        async def one(container: Json) -> tuple[list[LogLine], str | None]:
            ident, name = container["Id"], _name(container)
            raw: bytes = await self._call(
                target,
                f"logs of {name}",
                lambda api: api.logs(ident, timestamps=True, tail=lines, since=start),
            )
            parsed = parse_stamped(raw.decode("utf-8", "replace"), name)
            cut = tail is None and len(parsed) >= SCAN_LINES
            return (
                parsed,
                f"{name}: only its last {SCAN_LINES} lines; narrow since" if cut else None,
            )

        answers = await asyncio.gather(*(one(c) for c in containers))
        return Read([lines for lines, _ in answers], len(answers), [n for _, n in answers if n])

    async def stats(self, target: DockerTarget) -> ExecutionResult:
        """`docker stats --no-stream` for the service's running containers."""
        running = [c for c in await self._required(target) if c.get("State") == "running"]
        if not running:
            return build_result(True, f"no running containers of {self._where(target)}", "")

        async def one(container: Json) -> Json:
            ident = container["Id"]
            found: Json = await self._call(
                target, f"stats of {_name(container)}", lambda api: api.stats(ident, stream=False)
            )
            return found

        rows, usage = [], {}
        for container, stats in zip(
            running, await asyncio.gather(*(one(c) for c in running)), strict=True
        ):
            name, cpu, (used, limit) = _name(container), _cpu_percent(stats), _memory(stats)
            pct = 100 * used / limit if limit else 0.0
            rx = sum(n.get("rx_bytes", 0) for n in (stats.get("networks") or {}).values())
            tx = sum(n.get("tx_bytes", 0) for n in (stats.get("networks") or {}).values())
            pids = (stats.get("pids_stats") or {}).get("current", "?")
            rows.append(
                [
                    name,
                    f"{cpu:.1f}%",
                    f"{_bytes(used)} / {_bytes(limit)}",
                    f"{pct:.1f}%",
                    f"{_bytes(rx)} / {_bytes(tx)}",
                    pids,
                ]
            )
            usage[name] = {"cpu_percent": round(cpu, 1), "memory_percent": round(pct, 1)}
        busiest = max(usage, key=lambda n: usage[n]["memory_percent"])
        summary = (
            f"{len(rows)} running containers; highest memory: {busiest} "
            f"{usage[busiest]['memory_percent']}% of its limit"
        )
        headers = ["NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "PIDS"]
        return build_result(True, summary, format_table(headers, rows), containers=usage)

    async def health(self, target: DockerTarget) -> ExecutionResult:
        """Each container's HEALTHCHECK: status, failing streak and the last probes'
        output (redacted). Not ok when one is unhealthy."""
        inspected = await self._inspect(target, await self._required(target))
        rows, statuses, probes = [], Counter[str](), []
        for container in inspected:
            health = container["State"].get("Health")
            name = _name(container)
            if not health:
                statuses["no healthcheck"] += 1
                rows.append([name, "no healthcheck", "", ""])
                continue
            status = str(health.get("Status", "?"))
            statuses[status] += 1
            log = health.get("Log") or []
            last = log[-1] if log else {}
            output = " ".join(str(last.get("Output") or "").split())
            rows.append([name, status, health.get("FailingStreak", 0), truncate(output, 120)])
            for probe in log[-3:]:
                probes.append(
                    f"{name} {probe.get('End', '?')[:19]} exit {probe.get('ExitCode')}: "
                    f"{truncate(' '.join(str(probe.get('Output') or '').split()), 300)}"
                )
        summary = f"{len(rows)} containers: " + ", ".join(
            f"{n} {s}" for s, n in statuses.most_common()
        )
        output = format_table(["NAME", "HEALTH", "FAILING STREAK", "LAST PROBE"], rows)
        if probes:
            output += "\n\nlast probes:\n" + "\n".join(probes)
        ok = statuses["unhealthy"] == 0
        return build_result(ok, summary, output, health=dict(statuses))

    # -- mitigations ----------------------------------------------------------------------
    # Each pins `containers` ({id: image id}) in its dry run; a confirmed run re-reads them
    # and refuses when they differ.

    async def _pin(self, target: DockerTarget, pinned: Pinned) -> tuple[list[Json], dict[str, str]]:
        containers = await self._required(target)
        now = {c["Id"]: c.get("ImageID", "") for c in containers}
        _check_pinned(pinned, now, self._where(target))
        return containers, now

    async def restart(
        self, target: DockerTarget, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """`docker compose restart <service>`: each container, one after the other,
        gets SIGTERM, STOP_GRACE seconds, and is started again."""
        containers, now = await self._pin(target, pinned)
        names = [_name(c) for c in containers]
        if not dry_run:
            for container in containers:
                await self._restart_one(target, container)
        action = f"restarted {len(names)} containers of {self._where(target)}"
        output = "\n".join(
            f"{n}: {c.get('Status', '?')}" for n, c in zip(names, containers, strict=True)
        )
        return _mitigation(dry_run, action, output, pinned={"containers": now}, restarted=names)

    async def _restart_one(self, target: DockerTarget, container: Json) -> None:
        """Restart, and when the answer never came, read it back: a StartedAt later than
        before shows it landed; otherwise the outcome is unknown."""
        ident, name = container["Id"], _name(container)
        before = (await self._inspect(target, [container]))[0]["State"].get("StartedAt")
        try:
            await self._call(
                target,
                f"restart {name}",
                lambda api: api.restart(ident, timeout=STOP_GRACE),
                grace=STOP_GRACE,
            )
        except Unanswered as exc:
            try:
                after = (await self._inspect(target, [container]))[0]["State"].get("StartedAt")
            except ExecutorError as again:
                raise OutcomeUnknown(f"{exc}, and reading {name} back failed ({again})") from None
            if after == before:
                raise OutcomeUnknown(f"{exc}; {name} has not restarted yet") from None

    async def rollback(
        self,
        target: DockerTarget,
        revision: int | None,
        dry_run: bool,
        pinned: Pinned = None,
    ) -> ExecutionResult:
        """Recreate the service's containers from the previous image, as the seeds' manual
        rollback (`docker stop`, `docker rm`, `docker run` of the older tag) does.

        The previous image is the newest image on the engine of the same repository as
        the one the containers run, created before it (what `docker images <repo>` lists
        under the running tag). Each container is recreated with its own configuration
        (environment, labels, mounts, networks, restart policy), minus what came from the
        running image (its command, entrypoint, environment and labels), so the previous
        image's own apply; its name and Compose labels stay, and a label records the image
        it was rolled back from."""
        if revision is not None:
            raise ExecutorError(
                "Compose services have no numbered revisions: leave out `revision`, and "
                "Firebreak takes the previous image"
            )
        containers, now = await self._pin(target, pinned)
        inspected = await self._inspect(target, containers)
        images = {c["Image"] for c in inspected}
        if len(images) != 1:
            raise ExecutorError(
                f"{self._where(target)} runs {len(images)} different images; roll back by hand"
            )
        current = await self._image(target, images.pop())
        previous = await self._previous(target, current, pinned)
        running, wanted = _tag(current), _tag(previous)
        names = [_name(c) for c in inspected]
        if not dry_run:
            for container in inspected:
                await self._recreate(target, container, current, previous)
        action = f"rolled {self._where(target)} back from {running} to {wanted}"
        output = "\n".join(
            [f"image: {running} -> {wanted} ({previous['Id'][:19]})", "recreated:", *names]
        )
        pin = {"containers": now, "image": previous["Id"]}
        return _mitigation(dry_run, action, output, pinned=pin, image=wanted, containers=names)

    async def _image(self, target: DockerTarget, ident: str) -> Json:
        found: Json = await self._call(
            target, f"inspect image {ident[:19]}", lambda api: api.inspect_image(ident)
        )
        return found

    async def _previous(self, target: DockerTarget, current: Json, pinned: Pinned) -> Json:
        """The image to go back to: pinned by the dry run, or found by the rule above."""
        if pinned is not None:
            return await self._image(target, str(pinned["image"]))
        tags = current.get("RepoTags") or []
        if not tags:
            raise ExecutorError("the running image has no tag, so its repository is unknown")
        repository = _repository(tags[0])
        listed: list[Json] = await self._call(
            target,
            f"list images of {repository}",
            lambda api: api.images(filters={"reference": [repository]}),
        )
        born = int(_created(current.get("Created")).timestamp())  # type: ignore[union-attr]
        older = [i for i in listed if i["Id"] != current["Id"] and i.get("Created", 0) < born]
        if not older:
            raise ExecutorError(
                f"no earlier image of {repository} on the engine to roll back to "
                f"(running {_tag(current)})"
            )
        chosen = max(older, key=lambda i: i.get("Created", 0))
        return await self._image(target, chosen["Id"])

    async def _recreate(
        self, target: DockerTarget, container: Json, current: Json, previous: Json
    ) -> None:
        """Create the replacement beside the old container, stop and remove the old one,
        give the new one its name and start it. A step that fails leaves the service as
        that step found it, and the message says which step."""
        name = _name(container)
        body = _recreated(container, current, previous)
        staging = f"{name}-firebreak-rollback"
        steps = [
            ("create", lambda api: api.create_container_from_config(body, name=staging)),
            ("stop", lambda api: api.stop(container["Id"], timeout=STOP_GRACE)),
            ("remove", lambda api: api.remove_container(container["Id"])),
            ("rename", lambda api: api.rename(staging, name)),
            ("start", lambda api: api.start(name)),
        ]
        for step, run in steps:
            try:
                await self._call(target, f"{step} of {name}", run, grace=STOP_GRACE)
            except Unanswered as exc:
                raise OutcomeUnknown(f"{exc}: {name} may be half rolled back") from None
            except ExecutorError as exc:
                raise ExecutorError(f"rollback of {name} stopped at {step}: {exc}") from None


def _tag(image: Json) -> str:
    tags = image.get("RepoTags") or []
    return str(tags[0]) if tags else str(image["Id"])[:19]


def _recreated(container: Json, current: Json, previous: Json) -> Json:
    """The create body for `container` on `previous`: its own config without what the
    running image put there, so the previous image's command and defaults apply."""
    config, image_config = dict(container["Config"]), current.get("Config") or {}
    for key in ("Cmd", "Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal"):
        if key in config and config[key] == image_config.get(key):
            config.pop(key)
    config["Env"] = [e for e in config.get("Env") or [] if e not in (image_config.get("Env") or [])]
    inherited = image_config.get("Labels") or {}
    config["Labels"] = {
        k: v for k, v in (config.get("Labels") or {}).items() if inherited.get(k) != v
    } | {ROLLED_BACK_FROM: _tag(current)}
    if config.get("Hostname") == container["Id"][:12]:
        config.pop("Hostname")  # the engine's default: the old container's short ID
    config["Image"] = previous["Id"]
    networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
    config["HostConfig"] = container.get("HostConfig") or {}
    config["NetworkingConfig"] = {
        "EndpointsConfig": {
            net: {"Aliases": [a for a in (spec.get("Aliases") or []) if a != container["Id"][:12]]}
            for net, spec in networks.items()
        }
    }
    return config


def _cpu_percent(stats: Json) -> float:
    """CPU % the way the docker CLI computes it: the container's share of the host's CPU
    time between the two samples, times the number of CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [1])
    return 100.0 * used / system * cpus if used > 0 and system > 0 else 0.0


def _memory(stats: Json) -> tuple[int, int]:
    """Used and limit, the CLI's way: usage minus the inactive page cache."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, int(memory.get("usage", 0)) - int(cache)), int(memory.get("limit", 0))


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"
