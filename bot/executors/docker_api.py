"""The Docker Engine API as the executor uses it: one docker SDK client per engine
address, each call in a worker thread under a timeout, every failure an `ExecutorError`.

Why the docker SDK (`docker` on PyPI, maintained by Docker) rather than aiodocker: it
speaks `unix://` and `tcp://` (and TLS) from the same address strings operators put in
DOCKER_HOST, parses the multiplexed log stream itself, and negotiates the API version;
being synchronous, it runs in worker threads exactly like the official Kubernetes
client next door (`kubernetes_api.py`), so both executors share one model of timeouts
and failures and the domain imports no aiohttp.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION as SDK_VERSION
from docker.errors import APIError, DockerException
from docker.utils import version_lt

from bot.executors.base import DockerTarget, ExecutorError, Unanswered, truncate
from bot.redact import redact

T = TypeVar("T")
SCHEMES = ("unix://", "tcp://")


class DockerApi:
    """Where the engines are: each target's `host_env` names the variable that holds
    its address. One client per address, created (and its API version negotiated) on
    first use, in a worker thread, and kept."""

    def __init__(self, environ: Mapping[str, str], timeout: float = 10.0) -> None:
        self._environ = environ
        self._timeout = timeout
        self._clients: dict[str, docker.APIClient] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()

    def _address(self, target: DockerTarget) -> str:
        address = self._environ.get(target.host_env, "").strip()
        if not address:
            raise ExecutorError(f"environment variable {target.host_env} is not set")
        if not address.startswith(SCHEMES):
            raise ExecutorError(
                f"{target.host_env} must hold unix:///path/docker.sock or tcp://host:port"
            )
        # Checked first: the SDK's unix transport leaks its socket when connect() fails.
        socket_path = address.removeprefix("unix://")
        if address.startswith("unix://") and not Path(socket_path).is_socket():
            raise ExecutorError(f"Docker Engine unreachable (no socket at {socket_path})")
        return address

    def _client(self, address: str) -> docker.APIClient:
        with self._lock:
            if address not in self._clients:
                self._clients[address] = self._connect(address)
            return self._clients[address]

    def _connect(self, address: str) -> docker.APIClient:
        """A client speaking the engine's API version, or the SDK's own if older. The
        SDK's `version="auto"` would ask from inside its constructor and leak the
        client's connections when the engine doesn't answer; asking here, a probe
        client is closed whatever happens."""
        timeout = math.ceil(self._timeout)
        probe = docker.APIClient(base_url=address, version=SDK_VERSION, timeout=timeout)
        try:
            served = str(probe.version(api_version=False)["ApiVersion"])
        except (KeyError, TypeError):
            raise ExecutorError("unexpected answer from the Docker Engine (version)") from None
        finally:
            probe.close()
        version = served if version_lt(served, SDK_VERSION) else SDK_VERSION
        return docker.APIClient(base_url=address, version=version, timeout=timeout)

    async def call(
        self,
        target: DockerTarget,
        what: str,
        run: Callable[[docker.APIClient], T],
        grace: float = 0,
    ) -> T:
        """`run(client)` in a thread, within the timeout (plus `grace`, the seconds a
        stop or restart may wait for the container to exit); `what` names the call
        in messages ("restart shop-checkout-1")."""
        address = self._address(target)
        limit = self._timeout + grace
        timed_out = f"Docker Engine unreachable (timeout after {limit:g}s)"
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(lambda: run(self._client(address))), limit
            )
        except APIError as exc:
            raise _api_error(exc, what) from None
        except (TimeoutError, requests.exceptions.ReadTimeout):
            raise Unanswered(f"{timed_out} during {what}") from None  # sent, perhaps acted on
        except requests.exceptions.ConnectTimeout:
            raise ExecutorError(timed_out) from None
        except requests.exceptions.ConnectionError as exc:
            raise ExecutorError(f"Docker Engine unreachable ({_connect_failure(exc)})") from None
        except DockerException as exc:  # the SDK's own checks (a malformed address…)
            raise ExecutorError(f"Docker client error: {truncate(redact(str(exc)), 200)}") from None
        except (requests.exceptions.RequestException, OSError):
            raise ExecutorError("Docker Engine unreachable (connection failed)") from None
        except ValueError:  # an answer that is not the JSON the SDK expects
            raise ExecutorError(f"unexpected answer from the Docker Engine ({what})") from None


def _connect_failure(exc: BaseException) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "no such file" in text:
        return "no socket at that path"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "its host name does not resolve"
    return "could not connect"


def _api_error(exc: APIError, what: str) -> ExecutorError:
    """An engine error as one line, with the engine's own message where it has one."""
    message = truncate(redact(str(exc.explanation or "")), 300)
    status = exc.status_code
    if status in (401, 403):
        return ExecutorError(f"forbidden: the Docker Engine refused {what}")
    if status == 404:
        return ExecutorError(f"not found: {message or what}")
    if status == 409:
        return ExecutorError(f"conflict: {message or what}")
    return ExecutorError(f"Docker Engine error {status} on {what}: {message or exc}")


def labels(target: DockerTarget) -> dict[str, Any]:
    """The filter for the Compose service's containers, as `docker compose ps` uses it."""
    return {
        "label": [
            f"com.docker.compose.project={target.compose_project}",
            f"com.docker.compose.service={target.service}",
        ]
    }
