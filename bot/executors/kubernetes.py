"""Kubernetes diagnostics and mitigations for a service's Deployment.

Calls go through `KubernetesApi` (threads, timeouts, failures in words). Mitigations
follow kubectl's semantics (`rollout restart`, `rollout undo`, `scale`, `set resources
--limits=memory`) so an operator reading the audit log sees operations they know, and
each takes `dry_run`, which becomes a server-side dry run: the API server validates and
admits the change without persisting it. Secrets are never read. Nodes and one pod in
detail are read in `kubernetes_inspect`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from bot.durations import compact_duration
from bot.executors import evidence, isolation
from bot.executors import kubernetes_inspect as inspect
from bot.executors.base import (
    ExecutionResult,
    ExecutorError,
    KubernetesTarget,
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
from bot.executors.evidence import Evidence
from bot.executors.kubernetes_api import API_CALLS, KubernetesApi
from bot.executors.kubernetes_inspect import pod_status
from bot.executors.loglines import LogLine, Read, errors_result, logs_result, parse_stamped
from bot.quantities import format_memory

__all__ = ["API_CALLS", "OPERATION_CALLS", "RESTARTED_AT", "KubernetesExecutor", "api_calls_of"]

# The `API_CALLS` each operation (catalog.OPERATIONS["kubernetes"]) makes, so what the
# actions need can be checked before an incident (`firebreak check --live` asks the API
# server, SelfSubjectAccessReview, for exactly these). tests/test_executor_kubernetes.py
# runs every operation against the fake API server and compares with this table.
OPERATION_CALLS: dict[str, tuple[str, ...]] = {
    "pods": ("list_namespaced_pod",),
    "logs": ("list_namespaced_pod", "read_namespaced_pod_log"),
    "errors": ("list_namespaced_pod", "read_namespaced_pod_log"),
    "events": ("list_namespaced_event",),
    "deployment": ("read_namespaced_deployment",),
    "history": ("read_namespaced_deployment", "list_namespaced_replica_set"),
    "top": ("list_namespaced_custom_object",),
    "restart": ("read_namespaced_deployment", "patch_namespaced_deployment"),
    "rollback": (
        "read_namespaced_deployment",
        "list_namespaced_replica_set",
        "patch_namespaced_deployment",
    ),
    "scale": ("read_namespaced_deployment", "patch_namespaced_deployment_scale"),
    "isolate": (
        "list_namespaced_pod",
        "read_namespaced_network_policy",
        "create_namespaced_network_policy",
    ),
    "unisolate": ("read_namespaced_network_policy", "delete_namespaced_network_policy"),
    "nodes": (
        "list_namespaced_pod",
        "list_node",
        "list_pod_for_all_namespaces",
        "list_cluster_custom_object",
    ),
    "describe": ("list_namespaced_pod", "list_namespaced_event"),
    "set_memory": ("read_namespaced_deployment", "patch_namespaced_deployment"),
}


def api_calls_of(operations: Iterable[str]) -> list[str]:
    """The API calls a set of operations makes, each once, in `API_CALLS` order."""
    needed = {call for operation in operations for call in OPERATION_CALLS[operation]}
    return [call for call in API_CALLS if call in needed]


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
# Deployment annotations that `kubectl rollout undo` keeps instead of taking the RS's.
_KEEP_ON_ROLLBACK = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}
MAX_EVENTS = 20
# Log bytes read per action, shared by the pods (each gets at least LOG_MIN_BYTES): a day
# of a chatty service must not fill the bot's memory or the channel.
LOG_BUDGET_BYTES = 2 * 1024 * 1024
LOG_MIN_BYTES = 128 * 1024
DRY_RUN_NOTE = "\n(server-side dry run: nothing was changed)"
Pinned = dict[str, Any] | None
# A client model (V1Pod, CoreV1Event, …). Every field is Optional in the models; the API
# server fills the ones read here, so they are used without None checks.
Model = Any


def _revision(obj: dict[str, Any]) -> int:
    value = (obj["metadata"].get("annotations") or {}).get(REVISION, "0")
    return int(value) if value.isdigit() else 0


def _images(template: dict[str, Any]) -> str:
    return ", ".join(f"{c['name']}={c['image']}" for c in template["spec"]["containers"])


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """The pod template minus the controller's `pod-template-hash` label: the form in
    which a ReplicaSet's template goes back into its Deployment."""
    template = json.loads(json.dumps(template))
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return template


def _pod_row(pod: Model) -> list[Any]:
    """NAME READY STATUS RESTARTS LAST-TERMINATION AGE NODE for one pod."""
    statuses = pod.status.container_statuses or []
    terminated = [cs.last_state.terminated for cs in statuses if cs.last_state]
    last = ",".join(sorted({t.reason for t in terminated if t and t.reason}))
    ready = f"{sum(cs.ready for cs in statuses)}/{len(pod.spec.containers)}"
    restarts = sum(cs.restart_count for cs in statuses)
    age = age_of(pod.metadata.creation_timestamp)
    return [pod.metadata.name, ready, pod_status(pod), restarts, last, age, pod.spec.node_name]


def _mitigation(
    dry_run: bool, action: str, output: str, late: str | None, **details: object
) -> ExecutionResult:
    """`late` says how a write that went unanswered was found to have landed."""
    action += f" ({late})" if late else ""
    return mitigation_result(dry_run, action, output, note=DRY_RUN_NOTE, **details)


def _generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("generation") or 0)


def _check_pinned(pinned: Pinned, dep: dict[str, Any], name: str) -> None:
    """Refuse when the Deployment's spec changed since the dry run that was confirmed.

    `generation` moves with every spec change (a rollout, a scale, a restart) and not
    with status churn, so it is exactly "what the dry run computed from"."""
    if pinned is not None and pinned.get("generation") != _generation(dep):
        raise StateChanged(f"{name} changed since this dry run; propose again")


class KubernetesExecutor:
    """Runs allow-listed operations against one or more clusters (see `KubernetesApi`
    for where they are found)."""

    def __init__(self, kubeconfig: str | None = None, timeout: float = 10.0) -> None:
        self._api = KubernetesApi(kubeconfig, timeout)
        self._call = self._api.call

    async def warm_up(self) -> None:
        await self._api.warm_up()

    async def can_i(self, target: KubernetesTarget, call: str) -> tuple[bool, str]:
        """Whether the API server would allow one of `API_CALLS` on the target, and why
        not (see `KubernetesApi.can_i`); nothing is read or changed."""
        return await self._api.can_i(target, call)

    def close(self) -> None:
        self._api.close()

    async def _pods(self, target: KubernetesTarget) -> list[Model]:
        ns, selector = target.namespace, target.selector
        pods = await self._call(target, "list_namespaced_pod", ns, label_selector=selector)
        return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)

    # -- diagnostics ----------------------------------------------------------------------

    async def pods(self, target: KubernetesTarget) -> ExecutionResult:
        """`kubectl get pods -l <selector>`, plus why each container last terminated."""
        rows = [_pod_row(p) for p in await self._pods(target)]
        if not rows:
            return build_result(True, f"no pods match {target.selector} in {target.namespace}", "")
        restarts, oom = sum(int(r[3]) for r in rows), sum("OOMKilled" in str(r[4]) for r in rows)
        summary = tally("pods", (str(r[2]) for r in rows), restarts, oom)
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "LAST TERMINATION", "AGE", "NODE"]
        pods = [{"name": r[0], "status": r[2], "restarts": r[3]} for r in rows]
        return build_result(True, summary, format_table(headers, rows), pods=pods)

    async def logs(
        self,
        target: KubernetesTarget,
        tail: int = 100,
        previous: bool = False,
        pod: str | None = None,
        since: int | None = None,
        grep: str | None = None,
    ) -> ExecutionResult:
        """The last `tail` log lines of every pod of the service (or of `pod`), merged by
        time and redacted. Only pods matching the service's selector can be read. `since`
        (seconds) is the API's own window; `grep` keeps the lines that contain that
        literal text, in any case: a user's text is never a pattern."""
        pods = await self._chosen_pods(target, pod)
        read = await self._read_logs(
            target, pods, previous=previous, since=since, tail=None if grep else tail
        )
        where = pods[0].metadata.name if pod else f"{target.selector} in {target.namespace}"
        where += " (previous containers)" if previous else ""
        return logs_result(read, tail=tail, grep=grep, where=where)

    async def errors(self, target: KubernetesTarget, since: int) -> ExecutionResult:
        """Error and warning lines of every pod in the last `since` seconds, grouped by
        message with what varies normalised away: the top 10 with count, first and last seen."""
        pods = await self._chosen_pods(target, None)
        read = await self._read_logs(target, pods, previous=False, since=since, tail=None)
        where = f"{target.selector} in {target.namespace}"
        return errors_result(read, where=where, window=compact_duration(since))

    async def _chosen_pods(self, target: KubernetesTarget, pod: str | None) -> list[Model]:
        pods, where = await self._pods(target), f"{target.selector} in {target.namespace}"
        if pod:
            pods = [p for p in pods if p.metadata.name == pod]
        if not pods:
            raise ExecutorError(
                f"pod {pod} is not one of {where}" if pod else f"no pods match {where}"
            )
        return pods

    async def _read_logs(
        self,
        target: KubernetesTarget,
        pods: list[Model],
        *,
        previous: bool,
        since: int | None,
        tail: int | None,
    ) -> Read:
        """Each pod's log with the API's timestamps, read concurrently, within a byte
        budget shared by the pods. A pod that fails is a note while another answered;
        when none answered, the first failure is the answer."""
        limit = max(LOG_MIN_BYTES, LOG_BUDGET_BYTES // len(pods))

        async def one(chosen: Model) -> tuple[list[LogLine], str | None]:
            name = chosen.metadata.name
            container = (chosen.metadata.annotations or {}).get(DEFAULT_CONTAINER)
            container = container or chosen.spec.containers[0].name
            window: dict[str, Any] = {"limit_bytes": limit, "timestamps": True}
            if tail is not None:
                window["tail_lines"] = tail
            if since:
                window["since_seconds"] = since
            text = await self._call(
                target,
                "read_namespaced_pod_log",
                name,
                target.namespace,
                container=container,
                previous=previous,
                **window,
            )
            cut = len(text.encode()) >= limit
            note = f"{name}: only the first {limit // 1024} KiB of its window; narrow since"
            return parse_stamped(text, name), note if cut else None

        answers = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        streams, notes, failures = [], [], []
        for chosen, answer in zip(pods, answers, strict=True):
            if isinstance(answer, ExecutorError):
                failures.append(answer)
                notes.append(f"{chosen.metadata.name}: {answer}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                streams.append(answer[0])
                notes += [answer[1]] if answer[1] else []
        if not streams:
            raise failures[0]
        return Read(streams, len(streams), notes)

    async def events(self, target: KubernetesTarget) -> ExecutionResult:
        """Recent Warning events in the namespace, newest first."""
        ns = target.namespace
        found = await self._call(target, "list_namespaced_event", ns, field_selector="type=Warning")

        def seen(ev: Model) -> datetime:
            return ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp

        events = sorted(found.items, key=seen, reverse=True)
        if not events:
            return build_result(True, f"no Warning events in {ns}", "")
        rows = [
            [
                age_of(seen(ev)),
                ev.reason,
                f"{(ev.involved_object.kind or '').lower()}/{ev.involved_object.name}",
                ev.count or 1,
                truncate(" ".join((ev.message or "").split()), 160),
            ]
            for ev in events[:MAX_EVENTS]
        ]
        summary = f"{len(events)} Warning events in {ns}; latest: {rows[0][1]} on {rows[0][2]}"
        output = format_table(["LAST SEEN", "REASON", "OBJECT", "COUNT", "MESSAGE"], rows)
        return build_result(True, summary, output, count=len(events))

    async def deployment(self, target: KubernetesTarget) -> ExecutionResult:
        """Replica counts, rollout conditions, images and whether the rollout is paused."""
        name, ns = target.deployment, target.namespace
        dep = await self._call(target, "read_namespaced_deployment", name, ns)
        spec, status, conditions = dep.spec, dep.status, dep.status.conditions or []
        counts = {
            "desired": spec.replicas or 0,
            "ready": status.ready_replicas or 0,
            "updated": status.updated_replicas or 0,
            "available": status.available_replicas or 0,
        }
        images = [f"{c.name}={c.image}" for c in spec.template.spec.containers]
        stuck = [c.reason for c in conditions if c.type == "Progressing" and c.status == "False"]
        desired, ready, updated, available = counts.values()
        summary = f"{name}: {ready}/{desired} ready, {updated} updated, {available} available"
        summary += ", rollout paused" if spec.paused else ""
        summary += f", rollout stuck ({stuck[0]})" if stuck else ""
        revision = (dep.metadata.annotations or {}).get(REVISION, "?")
        rows = [
            [c.type, c.status, c.reason, age_of(c.last_update_time), truncate(c.message or "", 120)]
            for c in conditions
        ]
        output = "\n".join(
            [
                f"deployment {name} in {ns}, revision {revision}",
                "replicas: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
                f"paused: {'yes' if spec.paused else 'no'}",
                f"images: {', '.join(images)}",
                "",
                format_table(["CONDITION", "STATUS", "REASON", "AGE", "MESSAGE"], rows),
            ]
        )
        details = {**counts, "paused": bool(spec.paused), "revision": revision, "images": images}
        return build_result(True, summary, output, **details)

    async def _history(
        self, target: KubernetesTarget
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The Deployment and the ReplicaSets it controls, oldest revision first, as raw
        JSON so a template can be copied back verbatim, including fields newer than
        this client's models."""
        name, ns = target.deployment, target.namespace
        dep = await self._call(target, "read_namespaced_deployment", name, ns, raw=True)
        match = dep["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in match.items())
        found = await self._call(
            target, "list_namespaced_replica_set", ns, label_selector=selector, raw=True
        )
        uid = dep["metadata"]["uid"]

        def owned(rs: dict[str, Any]) -> bool:
            refs = rs["metadata"].get("ownerReferences") or []
            return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)

        return dep, sorted(filter(owned, found["items"]), key=_revision)

    async def history(self, target: KubernetesTarget) -> ExecutionResult:
        """`kubectl rollout history` with age, readiness and images per revision."""
        dep, owned = await self._history(target)
        current, revisions = _revision(dep), [_revision(rs) for rs in owned]
        rows = [
            [
                f"{rev}{' *' if rev == current else ''}",
                age_of(rs["metadata"].get("creationTimestamp")),
                f"{rs['status'].get('readyReplicas', 0)}/{rs['spec'].get('replicas', 0)}",
                _images(rs["spec"]["template"]),
            ]
            for rev, rs in zip(revisions, owned, strict=True)
        ]
        older = [r for r in revisions if r < current]
        summary = f"{len(owned)} revisions of {target.deployment}, current {current}"
        summary += f", previous {older[-1]}" if older else ", no earlier revision"
        output = format_table(["REVISION", "AGE", "READY", "IMAGES"], rows) + "\n(* = current)"
        return build_result(True, summary, output, revisions=revisions, current=current)

    async def top(self, target: KubernetesTarget) -> ExecutionResult:
        """CPU and memory per pod from metrics.k8s.io (metrics-server), busiest first."""
        ns = target.namespace
        # The whole metrics.k8s.io group 404s when metrics-server isn't installed.
        absent = f"metrics-server is not available in namespace {ns}"
        found = await self._call(
            target,
            "list_namespaced_custom_object",
            "metrics.k8s.io",
            "v1beta1",
            ns,
            "pods",
            label_selector=target.selector,
            missing=absent,
        )
        usage = []
        for item in found.get("items", []):
            cpu = sum(parse_quantity(c["usage"]["cpu"]) for c in item["containers"])
            mem = sum(parse_quantity(c["usage"]["memory"]) for c in item["containers"])
            usage.append((item["metadata"]["name"], int(cpu * 1000), int(mem / 2**20)))
        if not usage:
            return build_result(True, f"no pod metrics for {target.selector} in {ns}", "")
        usage.sort(key=lambda u: u[1], reverse=True)
        (top_pod, top_cpu, top_mem), total_mem = usage[0], sum(u[2] for u in usage)
        summary = f"{len(usage)} pods use {sum(u[1] for u in usage)}m CPU and {total_mem}Mi memory"
        summary += f"; busiest {top_pod} ({top_cpu}m, {top_mem}Mi)"
        rows = [[pod, f"{cpu}m", f"{mem}Mi"] for pod, cpu, mem in usage]
        pods = {pod: {"cpu_m": cpu, "memory_mi": mem} for pod, cpu, mem in usage}
        return build_result(True, summary, format_table(["POD", "CPU", "MEMORY"], rows), pods=pods)

    async def nodes(self, target: KubernetesTarget) -> ExecutionResult:
        """Node conditions, requests against allocatable and usage (`kubectl describe
        nodes` + `kubectl top nodes`); see `kubernetes_inspect.nodes`."""
        return await inspect.nodes(self._call, target)

    async def describe(self, target: KubernetesTarget, pod: str | None = None) -> ExecutionResult:
        """`kubectl describe pod` for the named or the most troubled of the service's pods."""
        return await inspect.describe(self._call, target, pod)

    # -- mitigations ----------------------------------------------------------------------
    # Each takes `pinned`: what its dry run resolved (returned in `details["pinned"]`).
    # A confirmed run re-reads the Deployment, refuses if its generation moved, and does
    # what was pinned, never re-resolving "previous" or "current" on its own.

    async def _raw_deployment(self, target: KubernetesTarget) -> dict[str, Any]:
        name, ns = target.deployment, target.namespace
        dep: dict[str, Any] = await self._call(
            target, "read_namespaced_deployment", name, ns, raw=True
        )
        return dep

    async def _write(
        self,
        target: KubernetesTarget,
        method: str,
        body: object,
        dry_run: bool,
        landed: Callable[[dict[str, Any]], bool],
    ) -> str | None:
        """PATCH the Deployment (or its scale). A write whose answer never came is read
        back: None when answered, a note when the read-back shows it landed, and
        `OutcomeUnknown` when it does not (yet)."""
        name, ns, mode = target.deployment, target.namespace, "All" if dry_run else None
        try:
            await self._call(target, method, name, ns, body, dry_run=mode)
            return None
        except Unanswered as exc:
            if dry_run:
                raise
            unanswered = f"{exc}; it may still complete"
        try:
            dep = await self._raw_deployment(target)
        except ExecutorError as exc:
            raise OutcomeUnknown(f"{unanswered}, and reading {name} back failed ({exc})") from None
        if landed(dep):
            return f"the API server answered too late, but reading {name} back shows it landed"
        raise OutcomeUnknown(f"{unanswered}; read back at once, {name} does not show it yet")

    async def restart(
        self, target: KubernetesTarget, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """`kubectl rollout restart`: stamp the pod template so every pod is replaced
        by a rolling update. Refused while the rollout is paused, as kubectl does, and
        when it is scaled to 0, with no pods to restart."""
        name, ns = target.deployment, target.namespace
        dep = await self._raw_deployment(target)
        _check_pinned(pinned, dep, name)
        if dep["spec"].get("paused"):
            raise ExecutorError(
                f"can't restart paused deployment {name} (run rollout resume first)"
            )
        replicas = dep["spec"].get("replicas") or 0
        if not replicas:
            raise ExecutorError(f"{name} in {ns} is scaled to 0: there are no pods to restart")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}

        def landed(now: dict[str, Any]) -> bool:
            annotations = now["spec"]["template"]["metadata"].get("annotations") or {}
            return bool(annotations.get(RESTARTED_AT) == stamp)

        late = await self._write(target, "patch_namespaced_deployment", body, dry_run, landed)
        action = f"restarted {name} in {ns}: its {replicas} pods roll one by one"
        output = f"spec.template.metadata.annotations[{RESTARTED_AT}] = {stamp}"
        pin = {"generation": _generation(dep), "replicas": replicas}
        return _mitigation(dry_run, action, output, late, restarted_at=stamp, pinned=pin)

    async def rollback(
        self,
        target: KubernetesTarget,
        revision: int | None,
        dry_run: bool,
        pinned: Pinned = None,
    ) -> ExecutionResult:
        """`kubectl rollout undo [--to-revision]`: put an older ReplicaSet's pod template
        (minus its pod-template-hash label) back into the Deployment with a JSON patch."""
        dep, owned = await self._history(target)
        name, current = target.deployment, _revision(dep)
        _check_pinned(pinned, dep, name)
        if pinned is not None:
            revision = int(pinned["revision"])  # what the confirmer saw, not "previous" now
        if dep["spec"].get("paused"):
            raise ExecutorError(
                f"can't roll back paused deployment {name} (run rollout resume first)"
            )
        chosen: dict[str, Any] | None
        if revision is None:
            if len(owned) < 2:
                raise ExecutorError(f"no rollout history: {name} has no previous revision")
            chosen = owned[-2]
        else:
            chosen = next((rs for rs in owned if _revision(rs) == revision), None)
            if chosen is None:
                have = ", ".join(str(_revision(rs)) for rs in owned) or "none"
                raise ExecutorError(f"revision {revision} not found for {name} (have: {have})")
        to, template = _revision(chosen), _without_hash(chosen["spec"]["template"])
        if template == _without_hash(dep["spec"]["template"]):
            raise ExecutorError(f"revision {to} already matches the current template of {name}")
        kept = dep["metadata"].get("annotations") or {}
        copied = chosen["metadata"].get("annotations") or {}
        annotations = {k: v for k, v in kept.items() if k in _KEEP_ON_ROLLBACK} | {
            k: v for k, v in copied.items() if k not in _KEEP_ON_ROLLBACK
        }
        patch = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ]

        def landed(now: dict[str, Any]) -> bool:
            return bool(_without_hash(now["spec"]["template"]) == template)

        late = await self._write(target, "patch_namespaced_deployment", patch, dry_run, landed)
        action = f"rolled {name} back from revision {current} to {to} ({_images(template)})"
        # Images only: a full template could carry plain-text env values.
        output = f"revision {current} -> {to}\nimages: {_images(dep['spec']['template'])}"
        output += f" -> {_images(template)}"
        pin = {"generation": _generation(dep), "revision": to, "from_revision": current}
        return _mitigation(
            dry_run, action, output, late, revision=to, from_revision=current, pinned=pin
        )

    async def scale(
        self, target: KubernetesTarget, replicas: int, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """`kubectl scale` through the deployments/scale subresource."""
        if replicas < 0:
            raise ExecutorError("replicas must be zero or more")
        name, ns = target.deployment, target.namespace
        dep = await self._raw_deployment(target)
        _check_pinned(pinned, dep, name)
        before = dep["spec"].get("replicas") or 0
        body = {"spec": {"replicas": replicas}}

        def landed(now: dict[str, Any]) -> bool:
            return bool(now["spec"].get("replicas") == replicas)

        late = await self._write(target, "patch_namespaced_deployment_scale", body, dry_run, landed)
        action = f"scaled {name} in {ns} from {before} to {replicas} replicas"
        output = f"spec.replicas: {before} -> {replicas}"
        pin = {"generation": _generation(dep), "from": before, "to": replicas}
        return _mitigation(
            dry_run, action, output, late, **{"from": before, "to": replicas}, pinned=pin
        )

    async def isolate(
        self, target: KubernetesTarget, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """Deny all ingress to the service's pods with a NetworkPolicy (`isolation`)."""
        change = await isolation.isolate(self._api, target, dry_run, pinned)
        return _mitigation(dry_run, change.action, change.output, change.late, **change.details)

    async def unisolate(
        self, target: KubernetesTarget, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """Remove the NetworkPolicy `isolate` made (`isolation`)."""
        change = await isolation.unisolate(self._api, target, dry_run, pinned)
        return _mitigation(dry_run, change.action, change.output, change.late, **change.details)

    async def evidence(self, target: KubernetesTarget, since_seconds: int) -> Evidence:
        """Unredacted logs, events, pods and rollout history for the evidence archive;
        not an action (it is in no OPERATIONS list), only `/incident evidence` calls it."""
        dep, owned = await self._history(target)
        return await evidence.collect(self._api, target, dep, owned, since_seconds=since_seconds)

    async def set_memory(
        self, target: KubernetesTarget, limit: int, dry_run: bool, pinned: Pinned = None
    ) -> ExecutionResult:
        """Raise the memory limit of the Deployment's main container (the one named by
        its default-container annotation, else the first) to `limit` bytes: the seeds'
        answer to OOMKills while the leak is found. Only a raise: a lower limit during
        an incident turns pressure into more OOMKills, and a container without a limit
        has nothing to raise, so both are refused and left to a reviewed deploy. The
        JSON patch tests the container's name and old limit, so it applies to exactly
        what this run read."""
        name, ns = target.deployment, target.namespace
        dep = await self._raw_deployment(target)
        _check_pinned(pinned, dep, name)
        index, container, before = _memory_limit(dep)
        want = format_memory(limit)
        if before is None:
            raise ExecutorError(
                f"container {container} of {name} has no memory limit, so there is none to raise"
            )
        if limit <= before:
            now = f"the {format_memory(before)} memory limit of {name}/{container}"
            why = f"{now} is already {want}" if limit == before else f"{want} would lower {now}"
            raise ExecutorError(f"{why}; set-memory only raises it")
        path = f"/spec/template/spec/containers/{index}"
        old = dep["spec"]["template"]["spec"]["containers"][index]["resources"]["limits"]["memory"]
        patch = [
            {"op": "test", "path": f"{path}/name", "value": container},
            {"op": "test", "path": f"{path}/resources/limits/memory", "value": old},
            {"op": "replace", "path": f"{path}/resources/limits/memory", "value": want},
        ]

        def landed(now: dict[str, Any]) -> bool:
            spec = now["spec"]["template"]["spec"]["containers"][index]
            return bool(spec["resources"]["limits"].get("memory") == want)

        late = await self._write(target, "patch_namespaced_deployment", patch, dry_run, landed)
        shown = f"{format_memory(before)} to {want}"
        action = f"raised the memory limit of {name}/{container} in {ns} from {shown}"
        output = f"{container}.resources.limits.memory: {old} -> {want}\n"
        output += "the pods roll one by one to take the new limit"
        pin = {"generation": _generation(dep), "container": container, "from": before}
        details = {"container": container, "from": before, "to": limit}
        return _mitigation(dry_run, action, output, late, **details, pinned=pin)


def _memory_limit(dep: dict[str, Any]) -> tuple[int, str, int | None]:
    """(index, name, memory limit in bytes or None) of the Deployment's main container."""
    template = dep["spec"]["template"]
    containers = template["spec"]["containers"]
    wanted = ((template.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER)
    index = next((i for i, c in enumerate(containers) if c["name"] == wanted), 0)
    limits = (containers[index].get("resources") or {}).get("limits") or {}
    memory = limits.get("memory")
    return index, containers[index]["name"], None if memory is None else int(parse_quantity(memory))
