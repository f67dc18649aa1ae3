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
from collections.abc import Callable
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
    "read_namespaced_network_policy": ("NetworkingV1Api", "get", "networkpolicies"),
    "create_namespaced_network_policy": ("NetworkingV1Api", "create", "networkpolicies"),
    "delete_namespaced_network_policy": ("NetworkingV1Api", "delete", "networkpolicies"),
    "list_node": ("CoreV1Api", "list", "nodes"),
    "list_pod_for_all_namespaces": ("CoreV1Api", "list", "pods"),
    "list_cluster_custom_object": ("CustomObjectsApi", "list", "nodes.metrics.k8s.io"),
}
# The calls above that read the whole cluster: a ClusterRole grants them
# (deploy/kubernetes/clusterrole.yaml), the namespaced Roles the rest.
CLUSTER_SCOPED = frozenset(
    {"list_node", "list_pod_for_all_namespaces", "list_cluster_custom_object"}
)


class NotFound(ExecutorError):
    """The API server answered 404: the object (or the API) is not there."""


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

        return await self._guarded(run, target, method, verb, resource, missing)

    async def can_i(self, target: KubernetesTarget, method: str) -> tuple[bool, str]:
        """`kubectl auth can-i` for one of `API_CALLS` in the target's namespace, asked
        through a SelfSubjectAccessReview (which every authenticated identity may create):
        whether it is allowed, and the authorizer's reason when it gives one."""
        verb = API_CALLS[method][1]
        group, plural, subresource = rbac_attributes(method)

        def run() -> Any:
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=target.namespace,
                        verb=verb,
                        group=group,
                        resource=plural,
                        subresource=subresource,
                    )
                )
            )
            api = client.AuthorizationV1Api(self._client(target.context))
            return api.create_self_subject_access_review(review, _request_timeout=self._timeout)

        answer = await self._guarded(
            run, target, "create_self_subject_access_review", "create", "selfsubjectaccessreviews"
        )
        status = answer.status
        return bool(status and status.allowed), str((status and status.reason) or "")

    async def _guarded(
        self,
        run: Callable[[], Any],
        target: KubernetesTarget,
        method: str,
        verb: str,
        resource: str,
        missing: str | None = None,
    ) -> Any:
        """`run` in a worker thread under the timeout, every failure an ExecutorError."""
        timed_out = f"Kubernetes API unreachable (timeout after {self._timeout:g}s)"
        try:
            return await asyncio.wait_for(asyncio.to_thread(run), self._timeout)
        except ApiException as exc:
            if exc.status == 404 and missing:
                raise ExecutorError(missing) from None
            scope = "the cluster" if method in CLUSTER_SCOPED else target.namespace
            raise _api_error(exc, verb, resource, scope) from None
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


def rbac_attributes(method: str) -> tuple[str, str, str | None]:
    """The API group, resource and subresource an `API_CALLS` entry acts on, as RBAC
    and SelfSubjectAccessReview name them: `deployments/scale` is (apps, deployments,
    scale); `pods.metrics.k8s.io` is (metrics.k8s.io, pods, None)."""
    api, _, resource = API_CALLS[method]
    name, _, subresource = resource.partition("/")
    plural, _, group = name.partition(".")
    if not group:
        group = "apps" if api == "AppsV1Api" else ""
    return group, plural, subresource or None


def _api_error(exc: ApiException, verb: str, resource: str, scope: str) -> ExecutorError:
    """An API error as one readable line; the server's own message where it has one."""
    try:
        message = truncate(redact(json.loads(exc.body or "{}").get("message") or ""), 300)
    except (ValueError, AttributeError):
        message = ""
    if exc.status in (401, 403):
        return ExecutorError(f"forbidden: the service account may not {verb} {resource} in {scope}")
    if exc.status == 404:
        return NotFound(f"not found: {message or f'{resource} in {scope}'}")
    if exc.status == 409:
        return ExecutorError(f"conflict: {resource} changed meanwhile, try again")
    if exc.status in (400, 422):
        return ExecutorError(f"rejected by the API server: {message or exc.reason}")
    return ExecutorError(f"Kubernetes API error {exc.status}: {message or exc.reason}")
