"""The fake Kubernetes API server (aiohttp, loopback, ephemeral port): tests, shell and demo.

It speaks just enough of the real API for the `kubernetes` client to deserialise every
answer into its models: complete objects, `Status` bodies for errors, `text/plain` logs.
Behaviour that the executors rely on is real: label and field selectors, `dryRun=All`
(validated and answered, never persisted), JSON patch / merge patch / strategic merge
patch (lists are replaced whole, which is all the executors need), validation of the
patched Deployment, `generation` moving with every spec change, bearer-token auth,
NetworkPolicy create/get/delete (with a delete's UID precondition). Every request
and every write (PATCH, POST, DELETE; even a refused one) is recorded in `patches`
so tests can assert on what was sent. Fault switches: `forbidden`, `delay` (before
answering anything), `write_delay` (a write is applied, then its answer held back;
with `apply_late`, held before it is applied, as a write stuck in admission is),
`metrics_available`, and
`stop()` / `start()` for a server that is down. `rollout()` lands a new revision, as a
deploy between a dry run and its confirmation would. `controller`, when set, runs after
every write that lands, as the cluster's controllers would (emulator/cluster.py uses it
to replace the pods of a rolled-back Deployment).

    async with FakeKubernetes() as kube:
        kube.add(deployment("checkout"))
        config = kube.write_kubeconfig(tmp_path / "kubeconfig")
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from kubernetes.utils.quantity import parse_quantity

TOKEN = "fake-kubernetes-test-token"
USER = "system:serviceaccount:firebreak:firebreak"
_GROUPS = {
    "deployments": "apps",
    "replicasets": "apps",
    "pods.metrics.k8s.io": "metrics.k8s.io",
    "networkpolicies": "networking.k8s.io",
    "nodes.metrics.k8s.io": "metrics.k8s.io",
}
Obj = dict[str, Any]
WRITES = ("PATCH", "POST", "DELETE")  # recorded in `patches` (body and dry run) and delayed


@dataclass(frozen=True)
class PatchRecord:
    path: str
    content_type: str
    body: Any
    dry_run: bool


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]


class _Reply(Exception):
    """Raised inside handlers to answer with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.response = web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
            status=code,
        )


@dataclass(frozen=True)
class LogEntry:
    """One line a container wrote (without its newline), and when."""

    time: datetime
    text: str
    stream: int = 1  # 1 stdout, 2 stderr: how the Docker Engine multiplexes them


_LOG_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) ?")


def log_entries(text: str, spacing: float = 1.0, stream: int = 1) -> list[LogEntry]:
    """Lines of `text` as log entries: a line starting with an RFC 3339 time was
    written then; the others `spacing` seconds apart, the last one now."""
    lines, now = text.splitlines(), datetime.now(UTC)
    entries = []
    for i, line in enumerate(lines):
        match = _LOG_STAMP.match(line)
        if match:
            stamp = match[1].replace("Z", "+00:00")
            frac = re.search(r"\.(\d+)", stamp)
            if frac:  # Python reads at most microseconds
                stamp = stamp.replace(frac[0], "." + frac[1][:6].ljust(6, "0"))
            when, line = datetime.fromisoformat(stamp), line[match.end() :]
        else:
            when = now - timedelta(seconds=spacing * (len(lines) - 1 - i))
        entries.append(LogEntry(when, line, stream))
    return entries


def rfc3339_nano(when: datetime) -> str:
    """`2026-11-29T21:03:04.123456000Z`: how the kubelet and dockerd stamp log lines."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def select_log(
    entries: list[LogEntry], *, since: float | None, tail: int | None, timestamps: bool
) -> bytes:
    """The log as the kubelet serves it: lines newer than `since` seconds, the last
    `tail` of them, each stamped when `timestamps`."""
    if since is not None:
        cutoff = datetime.now(UTC) - timedelta(seconds=since)
        entries = [e for e in entries if e.time >= cutoff]
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    return "".join(
        f"{rfc3339_nano(e.time)} {e.text}\n" if timestamps else f"{e.text}\n" for e in entries
    ).encode()


def timestamp(ago: float = 0) -> str:
    """RFC 3339 in UTC, `ago` seconds before now, as the API server writes times."""
    return (datetime.now(UTC) - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, namespace: str, ago: float = 3600, **extra: Any) -> Obj:
    return {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "1",
        "creationTimestamp": timestamp(ago),
        **extra,
    }


def _container(name: str, image: str) -> Obj:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def pod(
    name: str,
    namespace: str = "shop",
    labels: Mapping[str, str] | None = None,
    *,
    image: str = "registry.example.com/checkout:1.4.2",
    containers: tuple[str, ...] = ("app",),
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
    last_terminated: str | None = None,
    ago: float = 600,
) -> Obj:
    """A Pod whose containers all share the given state: `waiting="CrashLoopBackOff"`,
    `last_terminated="OOMKilled"` give the shapes a crash-looping pod really has."""
    start = timestamp(ago - 5)
    statuses = []
    for cname in containers:
        state = (
            {"waiting": {"reason": waiting, "message": f"back-off restarting {cname}"}}
            if waiting
            else {"running": {"startedAt": start}}
        )
        last = (
            {
                "terminated": {
                    "exitCode": 137 if last_terminated == "OOMKilled" else 1,
                    "reason": last_terminated,
                    "startedAt": timestamp(ago / 2),
                    "finishedAt": timestamp(ago / 3),
                }
            }
            if last_terminated
            else {}
        )
        statuses.append(
            {
                "name": cname,
                "image": image,
                "imageID": f"{image}@sha256:{'0' * 64}",
                "containerID": f"containerd://{uuid.uuid4().hex}",
                "ready": ready,
                "started": ready,
                "restartCount": restarts,
                "state": state,
                "lastState": last,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, ago, labels=dict(labels or {"app": "checkout"})),
        "spec": {
            "containers": [_container(c, image) for c in containers],
            "nodeName": "node-1",
            "restartPolicy": "Always",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": phase,
            "podIP": "10.1.2.3",
            "hostIP": "192.0.2.10",
            "startTime": start,
            "qosClass": "Burstable",
            "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": start}],
        },
    }


def deployment(
    name: str = "checkout",
    namespace: str = "shop",
    *,
    replicas: int = 3,
    image: str = "registry.example.com/checkout:1.4.2",
    revision: int = 1,
    ready: int | None = None,
    paused: bool = False,
) -> Obj:
    """An apps/v1 Deployment labelled and selecting `app=<name>`."""
    labels = {"app": name}
    ready = replicas if ready is None else ready
    cond = {"lastUpdateTime": timestamp(60), "lastTransitionTime": timestamp(60)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(
            name,
            namespace,
            86400,
            generation=revision,
            labels=labels,
            annotations={"deployment.kubernetes.io/revision": str(revision)},
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "paused": paused,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [_container("app", image)],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                },
            },
        },
        "status": {
            "observedGeneration": revision,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": str(ready >= replicas),
                    "reason": "MinimumReplicasAvailable",
                    "message": "ok",
                    **cond,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}" has successfully progressed.',
                    **cond,
                },
            ],
        },
    }


def replicaset(owner: Obj, revision: int, image: str, replicas: int = 0, ago: float = 7200) -> Obj:
    """A ReplicaSet owned by `owner` for one revision: the owner's template with `image`,
    plus the `pod-template-hash` label the deployment controller adds."""
    template = copy.deepcopy(owner["spec"]["template"])
    template["spec"]["containers"][0]["image"] = image
    pth = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    template["metadata"]["labels"]["pod-template-hash"] = pth
    meta = owner["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": _meta(
            f"{meta['name']}-{pth}",
            meta["namespace"],
            ago,
            generation=1,
            labels=dict(template["metadata"]["labels"]),
            annotations={
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": str(replicas),
            },
            ownerReferences=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        ),
        "spec": {
            "replicas": replicas,
            "template": template,
            "selector": {"matchLabels": dict(template["metadata"]["labels"])},
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "fullyLabeledReplicas": replicas,
            "observedGeneration": 1,
        },
    }


def event(
    name: str,
    reason: str,
    message: str,
    namespace: str = "shop",
    *,
    type: str = "Warning",
    kind: str = "Pod",
    object_name: str = "checkout-1",
    count: int = 1,
    ago: float = 60,
) -> Obj:
    """A core/v1 Event about `kind/object_name`, last seen `ago` seconds ago."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(name, namespace, ago),
        "involvedObject": {
            "apiVersion": "v1",
            "kind": kind,
            "name": object_name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
        },
        "reason": reason,
        "message": message,
        "type": type,
        "count": count,
        "firstTimestamp": timestamp(ago + 600),
        "lastTimestamp": timestamp(ago),
        "source": {"component": "kubelet", "host": "node-1"},
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
        "eventTime": None,
    }


def pod_metrics(
    name: str,
    usage: Mapping[str, tuple[str, str]],
    namespace: str = "shop",
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """A metrics.k8s.io PodMetrics; `usage` maps container → (cpu, memory) quantities."""
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": timestamp(),
            "labels": dict(labels or {"app": "checkout"}),
        },
        "timestamp": timestamp(10),
        "window": "15s",
        "containers": [
            {"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, (cpu, mem) in usage.items()
        ],
    }


def write_kubeconfig(
    path: Path, contexts: Mapping[str, tuple[str, str, str]], current: str | None = None
) -> Path:
    """Write a kubeconfig; `contexts` maps a context name to (server URL, token, namespace)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": current or next(iter(contexts)),
        "clusters": [{"name": n, "cluster": {"server": s}} for n, (s, _, _) in contexts.items()],
        "users": [{"name": n, "user": {"token": t}} for n, (_, t, _) in contexts.items()],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": n, "namespace": ns}}
            for n, (_, _, ns) in contexts.items()
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`.
    As in Kubernetes, `!=` and `notin` also match objects without the label."""
    requirements: list[tuple[str, str, set[str]]] = []  # (in | notin | exists | !exists)
    for req in (r.strip() for r in re.split(r",(?![^(]*\))", text) if r.strip()):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", req):
            requirements.append((m[2], m[1], {v.strip() for v in m[3].split(",")}))
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)", req):
            requirements.append(("notin" if m[2] == "!=" else "in", m[1], {m[3]}))
        elif m := re.fullmatch(r"(!?)([\w./-]+)", req):
            requirements.append((f"{m[1]}exists", m[2], set()))
        else:
            raise _Reply(400, "BadRequest", f"unable to parse requirement: {req!r}")

    def matches(labels: Mapping[str, str]) -> bool:
        for op, key, values in requirements:
            found = labels.get(key) in values if op in ("in", "notin") else key in labels
            if found != (op in ("in", "exists")):
                return False
        return True

    return matches


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch; also the fake's strategic merge (lists replaced whole)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 `add`, `remove`, `replace` and `test` on object members: enough for
    kubectl's rollback patch."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if node is None:
                raise _Reply(422, "Invalid", f"jsonpatch {op['op']}: missing path {op['path']}")
        kind, exists = op["op"], (last in node if isinstance(node, dict) else True)
        if kind in ("remove", "replace", "test") and not exists:
            raise _Reply(
                422,
                "Invalid",
                f"jsonpatch {kind} operation does not apply: doc is missing key: {op['path']}",
            )
        if kind == "test" and node[last] != op["value"]:
            raise _Reply(422, "Invalid", f"jsonpatch test failed at {op['path']}")
        if kind == "remove":
            del node[last]
        elif kind in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        elif kind != "test":
            raise _Reply(422, "Invalid", f"unsupported jsonpatch op {kind!r}")
    return doc


def _apply_patch(obj: Obj, content_type: str, body: Any) -> Obj:
    if content_type == "application/json-patch+json" and isinstance(body, list):
        return _json_patch(obj, body)
    merge_types = ("application/merge-patch+json", "application/strategic-merge-patch+json")
    if content_type in merge_types and isinstance(body, dict):
        return _merge(copy.deepcopy(obj), body)  # a dry run must not touch the stored one
    if content_type.startswith("application/") and content_type.endswith("patch+json"):
        raise _Reply(400, "BadRequest", f"invalid {content_type} body")
    raise _Reply(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")


def _validate_deployment(dep: Obj) -> None:
    name, spec = dep["metadata"]["name"], dep.get("spec", {})
    problems = []
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
        problems.append("spec.replicas: Invalid value: must be a non-negative integer")
    labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
        problems.append(
            "spec.template.metadata.labels: Invalid value: `selector` does not "
            "match template `labels`"
        )
    containers = spec.get("template", {}).get("spec", {}).get("containers") or []
    if not containers or not all(c.get("name") and c.get("image") for c in containers):
        problems.append("spec.template.spec.containers: Required value")
    if problems:
        raise _Reply(422, "Invalid", f'Deployment.apps "{name}" is invalid: ' + "; ".join(problems))


def _validate_resources(dep: Obj) -> None:
    """Quantities must parse, and a container's request can't exceed its limit, as the
    API server checks (`spec.template.spec.containers[0].resources.requests`)."""
    name = dep["metadata"]["name"]
    for i, container in enumerate(dep["spec"]["template"]["spec"]["containers"]):
        resources = container.get("resources") or {}
        parsed: dict[str, dict[str, Any]] = {}
        for kind in ("limits", "requests"):
            for resource, value in (resources.get(kind) or {}).items():
                try:
                    parsed.setdefault(kind, {})[resource] = parse_quantity(value)
                except (ValueError, TypeError):
                    raise _Reply(
                        422,
                        "Invalid",
                        f'Deployment.apps "{name}" is invalid: spec.template.spec.containers'
                        f"[{i}].resources.{kind}[{resource}]: Invalid value: {value!r}: "
                        "quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ) from None
        limits, requests = parsed.get("limits", {}), parsed.get("requests", {})
        for resource in sorted(set(limits) & set(requests)):
            if requests[resource] > limits[resource]:
                raise _Reply(
                    422,
                    "Invalid",
                    f'Deployment.apps "{name}" is invalid: spec.template.spec.containers[{i}]'
                    f".resources.requests: Invalid value: {resources['requests'][resource]!r}: "
                    f"must be less than or equal to {resource} limit of "
                    f"{resources['limits'][resource]}",
                )


def node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "16Gi",
    pods: str = "110",
    ready: str = "True",
    pressure: tuple[str, ...] = (),
    unschedulable: bool = False,
) -> Obj:
    """A core/v1 Node with the four kubelet conditions; `pressure` names the ones that are
    True ("MemoryPressure", "DiskPressure", "PIDPressure"). Allocatable is capacity less
    the kubelet's usual reservations."""
    beat = {"lastHeartbeatTime": timestamp(10), "lastTransitionTime": timestamp(86400)}
    words = {
        "MemoryPressure": ("KubeletHasSufficientMemory", "KubeletHasInsufficientMemory", "memory"),
        "DiskPressure": ("KubeletHasNoDiskPressure", "KubeletHasDiskPressure", "disk"),
        "PIDPressure": ("KubeletHasSufficientPID", "KubeletHasInsufficientPID", "PID"),
    }
    conditions = [
        {
            "type": kind,
            "status": str(kind in pressure),
            "reason": on if kind in pressure else off,
            "message": f"kubelet has {'insufficient' if kind in pressure else 'sufficient'} {what}",
            **beat,
        }
        for kind, (off, on, what) in words.items()
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
            "message": "kubelet is posting ready status"
            if ready == "True"
            else "Kubelet stopped posting node status.",
            **beat,
        }
    )
    allocatable_memory = f"{parse_quantity(memory) * 94 // 100 // 1024}Ki"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "creationTimestamp": timestamp(30 * 86400),
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "spec": {"podCIDR": "10.244.1.0/24", **({"unschedulable": True} if unschedulable else {})},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {
                "cpu": f"{int(parse_quantity(cpu) * 1000) - 80}m",
                "memory": allocatable_memory,
                "pods": pods,
            },
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "192.0.2.10"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid4().hex,
                "systemUUID": str(uuid.uuid4()),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": "6.1.0-18-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.29.2",
                "kubeProxyVersion": "v1.29.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def node_metrics(name: str, cpu: str, memory: str) -> Obj:
    """A metrics.k8s.io NodeMetrics, as `kubectl top nodes` reads it."""
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "NodeMetrics",
        "metadata": {
            "name": name,
            "creationTimestamp": timestamp(),
            "labels": {"kubernetes.io/hostname": name},
        },
        "timestamp": timestamp(10),
        "window": "20.05s",
        "usage": {"cpu": cpu, "memory": memory},
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeKubernetes:
    """The server and its mutable state; see the module docstring."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.logs: dict[tuple[str, str, str, bool], list[LogEntry]] = {}
        self.forbidden: set[tuple[str, str]] = set()  # (verb or "*", resource)
        # Every (verb, resource) a request was authorised for, in order: what a caller needs.
        self.authorized: list[tuple[str, str]] = []
        self.delay = 0.0
        self.write_delay = 0.0
        self.apply_late = False
        self.metrics_available = True
        self.patches: list[PatchRecord] = []
        self.requests: list[RequestRecord] = []
        self.port = 0
        self._versions = itertools.count(100)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closing = asyncio.Event()
        self.controller: Callable[[], None] | None = None

    # -- test-facing state -------------------------------------------------------------
    def add(self, *objs: Obj) -> None:
        for obj in objs:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])  # "" for cluster-scoped objects
            self.objects.setdefault(obj["kind"], {})[key] = obj

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        return self.objects[kind][(namespace, name)]

    def set_log(
        self,
        namespace: str,
        pod_name: str,
        text: str,
        container: str = "app",
        previous: bool = False,
        spacing: float = 1.0,
    ) -> None:
        """A container's log. A line starting with an RFC 3339 time was written then;
        the others `spacing` seconds apart, the last one now."""
        self.logs[(namespace, pod_name, container, previous)] = log_entries(text, spacing)

    def forbid(self, verb: str, resource: str) -> None:
        """Answer 403 to `verb` ("get", "list", "patch" or "*") on `resource` ("pods",
        "pods/log", "events", "deployments", "deployments/scale", "replicasets",
        "pods.metrics.k8s.io"); a SelfSubjectAccessReview for it answers not allowed."""
        self.forbidden.add((verb, resource))

    def _denied(self, verb: str, resource: str) -> bool:
        return (verb, resource) in self.forbidden or ("*", resource) in self.forbidden

    def pause(self, namespace: str, name: str, paused: bool = True) -> None:
        """`kubectl rollout pause` (or resume) a stored Deployment."""
        self.get("Deployment", namespace, name)["spec"]["paused"] = paused

    def rollout(self, namespace: str, name: str, image: str) -> int:
        """A deploy lands: the Deployment takes `image` in a new revision with its own
        ReplicaSet (the old ones scaled to 0), as the controller does. Returns the revision."""
        dep = self.get("Deployment", namespace, name)
        meta = dep["metadata"]
        revision = int(meta["annotations"]["deployment.kubernetes.io/revision"]) + 1
        for rs in self.objects.get("ReplicaSet", {}).values():
            if any(ref["uid"] == meta["uid"] for ref in rs["metadata"]["ownerReferences"]):
                rs["spec"]["replicas"] = rs["status"]["replicas"] = 0
        dep["spec"]["template"]["spec"]["containers"][0]["image"] = image
        meta["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        meta["generation"] = meta.get("generation", 1) + 1
        meta["resourceVersion"] = str(next(self._versions))
        self.add(replicaset(dep, revision, image, replicas=dep["spec"]["replicas"], ago=0))
        self._written()
        return revision

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, contexts: Mapping[str, str] | None = None) -> Path:
        """A kubeconfig whose contexts (name → namespace) all point at this server."""
        contexts = contexts or {"fake": "shop"}
        return write_kubeconfig(path, {n: (self.url, self.token, ns) for n, ns in contexts.items()})

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start (or, after `stop()`, restart on the same port) listening on loopback."""
        if self._runner is None:
            app = web.Application(middlewares=[self._middleware])
            core, apps = "/api/v1/namespaces/{ns}", "/apis/apps/v1/namespaces/{ns}"
            app.router.add_get(f"{core}/pods", self._list_pods)
            app.router.add_get(f"{core}/pods/{{name}}/log", self._pod_log)
            app.router.add_get(f"{core}/events", self._list_events)
            app.router.add_get(f"{apps}/deployments/{{name}}", self._get_deployment)
            app.router.add_patch(f"{apps}/deployments/{{name}}", self._patch_deployment)
            app.router.add_get(f"{apps}/deployments/{{name}}/scale", self._get_scale)
            app.router.add_patch(f"{apps}/deployments/{{name}}/scale", self._patch_scale)
            app.router.add_get(f"{apps}/replicasets", self._list_replicasets)
            app.router.add_get("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", self._metrics)
            policies = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
            app.router.add_get(policies, self._list_policies)
            app.router.add_post(policies, self._create_policy)
            app.router.add_get(f"{policies}/{{name}}", self._get_policy)
            app.router.add_delete(f"{policies}/{{name}}", self._delete_policy)
            app.router.add_post(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self._access_review
            )
            self._add_cluster_routes(app)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1)
            await self._runner.setup()
        self._closing.clear()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening: clients now get 'connection refused', like an API server that's down."""
        self._closing.set()
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def close(self) -> None:
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKubernetes:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(RequestRecord(request.method, request.path, dict(request.query)))
        if request.method in WRITES:
            text = await request.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            dry_run = "dryRun" in request.query
            self.patches.append(PatchRecord(request.path, request.content_type, body, dry_run))
        await self._hold(self.delay)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise _Reply(401, "Unauthorized", "Unauthorized")
            write = request.method in WRITES and "dryRun" not in request.query
            if write and self.apply_late:
                await self._hold(self.write_delay)
            response = await handler(request)
            if write and not self.apply_late:
                await self._hold(self.write_delay)  # applied; the answer comes late
            return response
        except _Reply as reply:
            return reply.response
        except web.HTTPNotFound:
            return _Reply(
                404, "NotFound", "the server could not find the requested resource"
            ).response

    def _written(self) -> None:
        if self.controller is not None:
            self.controller()

    async def _hold(self, seconds: float) -> None:
        if seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    def _authorize(self, verb: str, resource: str, ns: str, name: str | None = None) -> None:
        self.authorized.append((verb, resource))
        if self._denied(verb, resource):
            group = _GROUPS.get(resource.split("/")[0], "")
            plural = resource.split("/")[0].removesuffix(".metrics.k8s.io")
            what = f"{plural}{'.' + group if group else ''}" + (f' "{name}"' if name else "")
            raise _Reply(
                403,
                "Forbidden",
                f'{what} is forbidden: User "{USER}" cannot {verb} '
                f'resource "{resource.removesuffix(".metrics.k8s.io")}"'
                f' in API group "{group}" '
                + (f'in the namespace "{ns}"' if ns else "at the cluster scope"),
            )

    def _find(self, kind: str, ns: str, name: str, plural: str) -> Obj:
        try:
            return self.objects[kind][(ns, name)]
        except KeyError:
            raise _Reply(404, "NotFound", f'{plural} "{name}" not found') from None

    def _list(self, request: web.Request, kind: str, api_version: str) -> web.Response:
        ns, query = request.match_info.get("ns"), request.query  # None: the whole cluster
        labels = _selector(query.get("labelSelector", ""))
        fields = [
            re.fullmatch(r"([\w.]+)\s*(!=|==|=)\s*(.*)", f.strip())
            for f in query.get("fieldSelector", "").split(",")
            if f.strip()
        ]
        if not all(fields):
            raise _Reply(400, "BadRequest", "invalid field selector")
        items = [
            copy.deepcopy(o)
            for (ons, _), o in self.objects.get(kind, {}).items()
            if (ns is None or ons == ns)
            and labels(o["metadata"].get("labels") or {})
            and all((_field(o, m[1]) == m[3]) != (m[2] == "!=") for m in fields if m)
        ]
        return web.json_response(
            {
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items,
            }
        )

    async def _read_patch(self, request: web.Request) -> tuple[Any, bool]:
        dry = request.query.getall("dryRun", [])
        if any(d != "All" for d in dry):
            raise _Reply(400, "BadRequest", f"Invalid dry run value: {dry}")
        try:
            return json.loads(await request.text()), bool(dry)
        except ValueError:
            raise _Reply(400, "BadRequest", "the request body is not valid JSON") from None

    # -- cluster-scoped reads: nodes, their metrics, pods across namespaces ------------
    def _add_cluster_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/nodes", self._list_nodes)
        app.router.add_get("/api/v1/pods", self._list_all_pods)
        app.router.add_get("/apis/metrics.k8s.io/v1beta1/nodes", self._node_metrics)

    async def _list_nodes(self, request: web.Request) -> web.Response:
        self._authorize("list", "nodes", "")
        return self._list(request, "Node", "v1")

    async def _list_all_pods(self, request: web.Request) -> web.Response:
        self._authorize("list", "pods", "")
        return self._list(request, "Pod", "v1")

    async def _node_metrics(self, request: web.Request) -> web.Response:
        if not self.metrics_available:
            raise web.HTTPNotFound()
        self._authorize("list", "nodes.metrics.k8s.io", "")
        return self._list(request, "NodeMetrics", "metrics.k8s.io/v1beta1")

    # -- handlers ----------------------------------------------------------------------
    async def _list_pods(self, request: web.Request) -> web.Response:
        self._authorize("list", "pods", request.match_info["ns"])
        return self._list(request, "Pod", "v1")

    async def _list_events(self, request: web.Request) -> web.Response:
        self._authorize("list", "events", request.match_info["ns"])
        return self._list(request, "Event", "v1")

    async def _list_replicasets(self, request: web.Request) -> web.Response:
        self._authorize("list", "replicasets", request.match_info["ns"])
        return self._list(request, "ReplicaSet", "apps/v1")

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.metrics_available:
            raise web.HTTPNotFound()
        self._authorize("list", "pods.metrics.k8s.io", request.match_info["ns"])
        return self._list(request, "PodMetrics", "metrics.k8s.io/v1beta1")

    async def _pod_log(self, request: web.Request) -> web.Response:
        ns, name, query = request.match_info["ns"], request.match_info["name"], request.query
        self._authorize("get", "pods/log", ns, name)
        containers = [c["name"] for c in self._find("Pod", ns, name, "pods")["spec"]["containers"]]
        container = query.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise _Reply(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(containers)}]",
            )
        if container not in containers:
            raise _Reply(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = query.get("previous", "").lower() == "true"
        text = self.logs.get((ns, name, container, previous))
        if text is None and previous:
            raise _Reply(
                400,
                "BadRequest",
                f'previous terminated container "{container}" in pod "{name}" not found',
            )
        body = select_log(
            text or [],
            since=int(query["sinceSeconds"]) if "sinceSeconds" in query else None,
            tail=int(query["tailLines"]) if "tailLines" in query else None,
            timestamps=query.get("timestamps", "").lower() == "true",
        )
        limit = int(query.get("limitBytes", 0))  # the first bytes of the window, as the API
        return web.Response(body=body[:limit] if limit else body, content_type="text/plain")

    async def _access_review(self, request: web.Request) -> web.Response:
        """`kubectl auth can-i`: a SelfSubjectAccessReview answered from `forbidden`."""
        try:
            review = json.loads(await request.text())
            attributes = review["spec"]["resourceAttributes"]
            verb, plural = attributes["verb"], attributes["resource"]
        except (ValueError, KeyError, TypeError):
            raise _Reply(400, "BadRequest", "spec.resourceAttributes is required") from None
        group, sub = attributes.get("group") or "", attributes.get("subresource") or ""
        resource = plural + (f".{group}" if group == "metrics.k8s.io" else "")
        resource += f"/{sub}" if sub else ""
        allowed = not self._denied(verb, resource)
        status: Obj = {"allowed": allowed}
        if allowed:
            namespace = attributes.get("namespace")
            status["reason"] = f'RBAC: allowed by RoleBinding "firebreak" in {namespace}'
        answer = {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": review["spec"],
            "status": status,
        }
        return web.json_response(answer, status=201)

    async def _get_deployment(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("get", "deployments", ns, name)
        return web.json_response(self._find("Deployment", ns, name, "deployments.apps"))

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("patch", "deployments", ns, name)
        current = self._find("Deployment", ns, name, "deployments.apps")
        body, dry_run = await self._read_patch(request)
        patched = _apply_patch(current, request.content_type, body)
        if patched["metadata"].get("name") != name:
            raise _Reply(422, "Invalid", f'Deployment.apps "{name}" is invalid: metadata.name')
        _validate_deployment(patched)
        _validate_resources(patched)
        patched["metadata"]["resourceVersion"] = str(next(self._versions))
        if patched["spec"] != current["spec"]:
            patched["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if not dry_run:
            self.add(patched)
            self._written()
            patched = self._find("Deployment", ns, name, "deployments.apps")
        return web.json_response(patched)

    def _scale(self, dep: Obj) -> Obj:
        meta = dep["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": dep["spec"]["replicas"]},
            "status": {"replicas": dep["status"]["replicas"], "selector": selector},
        }

    async def _get_scale(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("get", "deployments/scale", ns, name)
        return web.json_response(
            self._scale(self._find("Deployment", ns, name, "deployments.apps"))
        )

    async def _patch_scale(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("patch", "deployments/scale", ns, name)
        dep = self._find("Deployment", ns, name, "deployments.apps")
        body, dry_run = await self._read_patch(request)
        scale = _apply_patch(self._scale(dep), request.content_type, body)
        replicas = scale.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _Reply(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                f"Invalid value: {replicas!r}: must be greater than or "
                f"equal to 0",
            )
        if not dry_run:
            dep["spec"]["replicas"] = replicas
            dep["metadata"]["generation"] = dep["metadata"].get("generation", 1) + 1
            dep["metadata"]["resourceVersion"] = str(next(self._versions))
            self._written()
        scale["metadata"]["resourceVersion"] = str(next(self._versions))
        return web.json_response(scale)

    # -- networking.k8s.io/v1 NetworkPolicy ---------------------------------------------
    async def _list_policies(self, request: web.Request) -> web.Response:
        self._authorize("list", "networkpolicies", request.match_info["ns"])
        return self._list(request, "NetworkPolicy", "networking.k8s.io/v1")

    async def _get_policy(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("get", "networkpolicies", ns, name)
        return web.json_response(self._find("NetworkPolicy", ns, name, _POLICIES))

    async def _create_policy(self, request: web.Request) -> web.Response:
        """POST: validated, stored with the fields the server sets, 201 (a dry run: 200,
        not stored); an existing name is 409 AlreadyExists."""
        ns = request.match_info["ns"]
        self._authorize("create", "networkpolicies", ns)
        body, dry_run = await self._read_write(request)
        meta = body.get("metadata") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise _Reply(
                422,
                "Invalid",
                "NetworkPolicy.networking.k8s.io is invalid: metadata.name: Required value",
            )
        if meta.get("namespace", ns) != ns:
            raise _Reply(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )
        _validate_policy(name, body)
        if (ns, name) in self.objects.get("NetworkPolicy", {}):
            raise _Reply(409, "AlreadyExists", f'{_POLICIES} "{name}" already exists')
        stored = copy.deepcopy(body)
        stored["metadata"] = {
            **_meta(name, ns, 0, generation=1),
            **{k: v for k, v in meta.items() if k in ("labels", "annotations")},
            "resourceVersion": str(next(self._versions)),
        }
        if dry_run:
            return web.json_response(stored)
        self.add(stored)
        self._written()
        return web.json_response(stored, status=201)

    async def _delete_policy(self, request: web.Request) -> web.Response:
        """DELETE with DeleteOptions: `preconditions.uid` must match (409 otherwise)."""
        ns, name = request.match_info["ns"], request.match_info["name"]
        self._authorize("delete", "networkpolicies", ns, name)
        current = self._find("NetworkPolicy", ns, name, _POLICIES)
        options, dry_run = await self._read_write(request, optional=True)
        wanted = ((options or {}).get("preconditions") or {}).get("uid")
        uid = current["metadata"]["uid"]
        if wanted is not None and wanted != uid:
            raise _Reply(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_POLICIES} "{name}": Precondition '
                f"failed: UID in precondition: {wanted}, UID in object meta: {uid}",
            )
        if not dry_run:
            del self.objects["NetworkPolicy"][(ns, name)]
            self._written()
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": "networking.k8s.io",
                    "kind": "networkpolicies",
                    "uid": uid,
                },
            }
        )

    async def _read_write(
        self, request: web.Request, *, optional: bool = False
    ) -> tuple[Any, bool]:
        """A POST's or DELETE's JSON body (optional for a DELETE) and its `dryRun=All`."""
        if optional and not await request.text():
            dry = request.query.getall("dryRun", [])
            if any(d != "All" for d in dry):
                raise _Reply(400, "BadRequest", f"Invalid dry run value: {dry}")
            return None, bool(dry)
        return await self._read_patch(request)


_POLICIES = "networkpolicies.networking.k8s.io"


def _validate_policy(name: str, policy: Obj) -> None:
    """What the API server checks of the fields the executor sends."""
    spec = policy.get("spec")
    problems = []
    if not isinstance(spec, dict) or not isinstance(spec.get("podSelector"), dict):
        problems.append("spec.podSelector: Required value")
    else:
        kinds = spec.get("policyTypes", ["Ingress"])
        if not isinstance(kinds, list) or any(k not in ("Ingress", "Egress") for k in kinds):
            problems.append('spec.policyTypes: Unsupported value: must be "Ingress" or "Egress"')
        if not isinstance(spec.get("ingress", []), list):
            problems.append("spec.ingress: Invalid value: must be a list")
    if problems:
        raise _Reply(
            422,
            "Invalid",
            f'NetworkPolicy.networking.k8s.io "{name}" is invalid: ' + "; ".join(problems),
        )
