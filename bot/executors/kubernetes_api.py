"""The Kubernetes API as the executor uses it: one client per kubeconfig context, each
call in a worker thread under a timeout, every failure an `ExecutorError` in words.

The official client is synchronous, so every call runs in a worker thread with a
per-request timeout and an overall `asyncio.wait_for`: a hung API server can't stall
the bot. A refused connection, a connect timeout (nothing was sent) and a request
sent but unanswered (`Unanswered`: a write may still land) are told apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.executors.base import ExecutorError, KubernetesTarget, Unanswered, truncate
from bot.redact import redact

# Every API call the executor makes, with its client class and the RBAC verb and
# resource it needs; deploy/kubernetes/role.yaml grants exactly these. The classes are
# named, not imported: loading one builds hundreds of models (seconds of CPU), which
# happens in a worker thread (`warm_up`, `call`), never on the event loop.
API_CALLS: dict[str, tuple[str, str, str]] = {
    "list_namespaced_pod": ("CoreV1Api", "list", "pods"),
    "read_namespaced_pod_log": ("CoreV1Api", "get", "pods/log"),
    "list_namespaced_event": ("CoreV1Api", "list", "events"),
    "read_namespaced_deployment": ("AppsV1Api", "get", "deployments"),
    "patch_namespaced_deployment": ("AppsV1Api", "patch", "deployments"),
    "patch_namespaced_deployment_scale": ("AppsV1Api", "patch", "deployments/scale"),
    "list_namespaced_replica_set": ("AppsV1Api", "list", "replicasets"),
    "list_namespaced_custom_object": ("CustomObjectsApi", "list", "pods.metrics.k8s.io"),
}


def _connect_failure(exc: urllib3.exceptions.NewConnectionError) -> str:
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "its host name does not resolve"
    if "refused" in str(exc).lower():
        return "connection refused"
    return "could not connect"


class KubernetesApi:
    """Where the clusters are: `kubeconfig` is a path; without it $KUBECONFIG or
    ~/.kube/config is used, and failing those the in-cluster service account. One
    ApiClient per context, created on first use and kept."""

    def __init__(self, kubeconfig: str | None = None, timeout: float = 10.0) -> None:
        default = Path("~/.kube/config").expanduser()
        fallback = str(default) if default.is_file() else None
        self._kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or fallback
        self._timeout = timeout
        self._clients: dict[str | None, client.ApiClient] = {}
        self._lock = threading.Lock()

    async def warm_up(self) -> None:
        """Load the API classes in a worker thread, so the first diagnostic need not."""
        await asyncio.to_thread(lambda: [getattr(client, api) for api, _, _ in API_CALLS.values()])

    def close(self) -> None:
        """Release the connection pools of every cached client."""
        with self._lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()

    def _client(self, context: str | None) -> client.ApiClient:
        with self._lock:
            if context not in self._clients:
                cfg = client.Configuration()
                if self._kubeconfig:
                    config.load_kube_config(
                        self._kubeconfig, context, client_configuration=cfg, persist_config=False
                    )
                elif context:
                    raise ExecutorError(f"context {context!r} requested but no kubeconfig found")
                else:
                    config.load_incluster_config(client_configuration=cfg)
                # No retries: they would overrun the timeout the user was promised, and
                # urllib3 then raises the underlying error instead of MaxRetryError.
                cfg.retries = False
                self._clients[context] = client.ApiClient(cfg)
            return self._clients[context]

    async def call(
        self,
        target: KubernetesTarget,
        method: str,
        *args: object,
        raw: bool = False,
        missing: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run one of `API_CALLS` in a thread and turn every failure into an
        ExecutorError; `missing` replaces the message for a 404. `raw` returns the
        decoded JSON instead of client models."""
        api, verb, resource = API_CALLS[method]

        def run() -> Any:
            call = getattr(getattr(client, api)(self._client(target.context)), method)
            result = call(*args, _request_timeout=self._timeout, _preload_content=not raw, **kwargs)
            return json.loads(result.data) if raw else result

        timed_out = f"Kubernetes API unreachable (timeout after {self._timeout:g}s)"
        try:
            return await asyncio.wait_for(asyncio.to_thread(run), self._timeout)
        except ApiException as exc:
            if exc.status == 404 and missing:
                raise ExecutorError(missing) from None
            raise _api_error(exc, verb, resource, target.namespace) from None
        except urllib3.exceptions.NewConnectionError as exc:
            # Checked before TimeoutError: urllib3 2.x makes a refused connection a
            # subclass of ConnectTimeoutError, though it failed at once.
            raise ExecutorError(f"Kubernetes API unreachable ({_connect_failure(exc)})") from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise ExecutorError(timed_out) from None  # nothing was sent
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            raise Unanswered(timed_out) from None  # sent, perhaps acted on
        except (urllib3.exceptions.HTTPError, OSError):
            raise ExecutorError("Kubernetes API unreachable (connection failed)") from None
        except ConfigException as exc:
            raise ExecutorError(f"Kubernetes configuration error: {redact(str(exc))}") from None
        except ValueError:  # a response the client's models reject
            raise ExecutorError(f"unexpected answer from the Kubernetes API ({method})") from None


def _api_error(exc: ApiException, verb: str, resource: str, namespace: str) -> ExecutorError:
    """An API error as one readable line; the server's own message where it has one."""
    try:
        message = truncate(redact(json.loads(exc.body or "{}").get("message") or ""), 300)
    except (ValueError, AttributeError):
        message = ""
    if exc.status in (401, 403):
        return ExecutorError(
            f"forbidden: the service account may not {verb} {resource} in {namespace}"
        )
    if exc.status == 404:
        return ExecutorError(f"not found: {message or f'{resource} in {namespace}'}")
    if exc.status == 409:
        return ExecutorError(f"conflict: {resource} changed meanwhile, try again")
    if exc.status in (400, 422):
        return ExecutorError(f"rejected by the API server: {message or exc.reason}")
    return ExecutorError(f"Kubernetes API error {exc.status}: {message or exc.reason}")
