"""Read-only inspection beyond the Deployment: the cluster's nodes (`kubectl describe
nodes` and `kubectl top nodes` in one table) and one pod in detail (`kubectl describe
pod`: conditions, container states and the pod's own events).

These are the seeds' questions when pods are OOMKilled or evicted: is the node under
memory or disk pressure, is it overcommitted (requests against allocatable), which
node is busiest, why did this container last stop. Specs are read but only names,
states, reasons and resource figures are shown: a pod's env can carry plain-text
values, so neither env nor args ever reach the output.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from bot.executors.base import (
    ExecutionResult,
    ExecutorError,
    KubernetesTarget,
    age_of,
    build_result,
    format_table,
    truncate,
)

Call = Callable[..., Awaitable[Any]]  # KubernetesApi.call
Model = Any  # a client model (V1Node, V1Pod, …); see bot/executors/kubernetes.py
MAX_NODES = 20  # nodes whose requests are summed (one pod list each); the service's first
MAX_POD_EVENTS = 20
PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")
_RUNNING = "status.phase!=Succeeded,status.phase!=Failed"  # pods that hold their requests
_MI = 2**20


def pod_status(pod: Model) -> str:
    """The STATUS column of `kubectl get pods`: a container's waiting or terminated
    reason wins over the phase, so `CrashLoopBackOff` shows instead of `Running`."""
    if pod.metadata.deletion_timestamp:
        return "Terminating"
    status = pod.status.reason or pod.status.phase or "Unknown"
    for cs in pod.status.container_statuses or []:
        if cs.state and cs.state.waiting and cs.state.waiting.reason:
            return cs.state.waiting.reason
        if cs.state and cs.state.terminated:
            status = cs.state.terminated.reason or f"ExitCode:{cs.state.terminated.exit_code}"
    return status


# -- nodes ----------------------------------------------------------------------------


def _quantity(resources: dict[str, str] | None, name: str) -> Decimal:
    return parse_quantity((resources or {}).get(name, "0"))


def pod_requests(pod: Model) -> tuple[Decimal, Decimal]:
    """(cpu cores, memory bytes) a pod reserves on its node, as the scheduler counts it:
    the larger of its containers' sum and its largest init container, plus overhead."""

    def requests(containers: Iterable[Model], name: str) -> list[Decimal]:
        return [_quantity(c.resources.requests if c.resources else None, name) for c in containers]

    def reserved(name: str) -> Decimal:
        main = sum(requests(pod.spec.containers, name), Decimal(0))
        init = max(requests(pod.spec.init_containers or [], name), default=Decimal(0))
        return max(main, init) + _quantity(pod.spec.overhead, name)

    return reserved("cpu"), reserved("memory")


def _condition(node: Model, kind: str) -> str:
    found = next((c for c in node.status.conditions or [] if c.type == kind), None)
    return found.status if found else "Unknown"


def _node_status(node: Model) -> str:
    ready = _condition(node, "Ready")
    status = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    return status + (",SchedulingDisabled" if node.spec and node.spec.unschedulable else "")


def _order(node: Model, ours: set[str]) -> tuple[bool, bool, str]:
    """The service's nodes first, then the troubled ones, so MAX_NODES never hides them."""
    troubled = _condition(node, "Ready") != "True" or any(
        _condition(node, p) == "True" for p in PRESSURES
    )
    return node.metadata.name not in ours, not troubled, node.metadata.name


def _share(used: Decimal, of: Decimal) -> str:
    return f"{int(used * 100 / of)}%" if of else "?"


def _cpu(cores: Decimal) -> str:
    return f"{int(cores * 1000)}m"


def _mem(amount: Decimal) -> str:
    return f"{int(amount / _MI)}Mi"


async def nodes(call: Call, target: KubernetesTarget) -> ExecutionResult:
    """Every node's readiness and pressure conditions, its requests against allocatable
    (summed from the non-terminated pods on it, `spec.nodeName`), and its usage from
    metrics.k8s.io when metrics-server answers; nodes running the service's pods are
    marked `*` and listed first, then the nodes not Ready or under pressure."""
    found = await call(target, "list_node")
    service_pods = await call(
        target, "list_namespaced_pod", target.namespace, label_selector=target.selector
    )
    ours = {p.spec.node_name for p in service_pods.items if p.spec.node_name}
    listed = sorted(found.items, key=lambda n: _order(n, ours))
    if not listed:
        return build_result(True, "the cluster has no nodes", "")
    usage, note = await _node_usage(call, target)
    rows, details = [], {}
    for node in listed[:MAX_NODES]:
        name, alloc = node.metadata.name, node.status.allocatable or {}
        on_node = await call(
            target, "list_pod_for_all_namespaces", field_selector=f"spec.nodeName={name},{_RUNNING}"
        )
        reserved = [pod_requests(p) for p in on_node.items]
        cpu_req, mem_req = (sum((r[i] for r in reserved), Decimal(0)) for i in (0, 1))
        cpu_alloc, mem_alloc = _quantity(alloc, "cpu"), _quantity(alloc, "memory")
        pressure = [p for p in PRESSURES if _condition(node, p) == "True"]
        used = usage.get(name)
        rows.append(
            [
                name + ("*" if name in ours else ""),
                _node_status(node),
                ",".join(pressure),
                f"{_cpu(cpu_req)} ({_share(cpu_req, cpu_alloc)})",
                f"{_mem(mem_req)} ({_share(mem_req, mem_alloc)})",
                f"{_cpu(used[0])} ({_share(used[0], cpu_alloc)})" if used else "",
                f"{_mem(used[1])} ({_share(used[1], mem_alloc)})" if used else "",
                f"{len(on_node.items)}/{alloc.get('pods', '?')}",
            ]
        )
        details[name] = {
            "status": _node_status(node),
            "pressure": pressure,
            "memory_requested_pct": int(mem_req * 100 / mem_alloc) if mem_alloc else None,
            "memory_used_pct": int(used[1] * 100 / mem_alloc) if used and mem_alloc else None,
            "service_pods": name in ours,
        }
    headers = ["NODE", "STATUS", "PRESSURE", "CPU REQUESTS", "MEMORY REQUESTS"]
    headers += ["CPU USED", "MEMORY USED", "PODS"]
    output = format_table(headers, rows) + f"\n(* = runs {target.selector} in {target.namespace})"
    if len(listed) > MAX_NODES:
        output += f"\n({len(listed) - MAX_NODES} more nodes not shown)"
    output += f"\n{note}" if note else ""
    return build_result(True, _nodes_summary(listed, usage), output, nodes=details)


async def _node_usage(
    call: Call, target: KubernetesTarget
) -> tuple[dict[str, tuple[Decimal, Decimal]], str]:
    """Node name → (cpu cores, memory bytes) in use, or why there is none: the table
    is still worth showing without metrics-server."""
    try:
        found = await call(
            target,
            "list_cluster_custom_object",
            "metrics.k8s.io",
            "v1beta1",
            "nodes",
            missing="metrics-server is not installed",
        )
    except ExecutorError as exc:
        return {}, f"(no usage figures: {exc})"
    return {
        item["metadata"]["name"]: (
            parse_quantity(item["usage"]["cpu"]),
            parse_quantity(item["usage"]["memory"]),
        )
        for item in found.get("items", [])
    }, ""


def _nodes_summary(listed: list[Model], usage: dict[str, tuple[Decimal, Decimal]]) -> str:
    """Counts by status, every pressure, and the node using the largest share of its
    memory, over all nodes, shown or not."""
    statuses: dict[str, int] = {}
    for node in listed:
        key = _node_status(node).split(",")[0]
        statuses[key] = statuses.get(key, 0) + 1
    summary = f"{len(listed)} nodes: " + ", ".join(f"{n} {s}" for s, n in statuses.items())
    pressed = [
        f"{p} on {node.metadata.name}"
        for node in listed
        for p in PRESSURES
        if _condition(node, p) == "True"
    ]
    summary += f"; {', '.join(pressed)}" if pressed else "; no pressure"
    shares = {
        node.metadata.name: int(usage[node.metadata.name][1] * 100 / memory)
        for node in listed
        if node.metadata.name in usage and (memory := _quantity(node.status.allocatable, "memory"))
    }
    if shares:
        busiest = max(shares, key=lambda name: shares[name])
        summary += f"; busiest {busiest} ({shares[busiest]}% memory used)"
    return summary


# -- one pod --------------------------------------------------------------------------


def _state(state: Model | None) -> str:
    """A container state as `kubectl describe` words it, on one line."""
    if state is None:
        return ""
    if state.waiting:
        why = f" ({truncate(state.waiting.message, 100)})" if state.waiting.message else ""
        return f"Waiting: {state.waiting.reason or '?'}{why}"
    if state.running:
        return f"Running since {age_of(state.running.started_at)} ago"
    if state.terminated:
        t = state.terminated
        when = f", {age_of(t.finished_at)} ago" if t.finished_at else ""
        return f"Terminated: {t.reason or 'Error'} (exit {t.exit_code}{when})"
    return ""


def _resources(container: Model) -> str:
    res = container.resources
    if res is None:
        return ""
    return " ".join(
        f"{kind}.{name}={value}"
        for kind, values in (("limits", res.limits), ("requests", res.requests))
        for name, value in sorted((values or {}).items())
    )


def _choose(pods: list[Model], name: str | None, where: str) -> Model:
    """The named pod, else the one most in need of a look: not ready, then the most
    restarts, then the newest."""
    if name:
        chosen = next((p for p in pods if p.metadata.name == name), None)
        if chosen is None:
            raise ExecutorError(f"pod {name} is not one of {where}")
        return chosen
    if not pods:
        raise ExecutorError(f"no pods match {where}")

    def trouble(p: Model) -> tuple[bool, int, Any]:
        statuses = p.status.container_statuses or []
        ready = bool(statuses) and all(cs.ready for cs in statuses)
        return (not ready, sum(cs.restart_count for cs in statuses), p.metadata.creation_timestamp)

    return max(pods, key=trouble)


async def describe(call: Call, target: KubernetesTarget, pod: str | None) -> ExecutionResult:
    """`kubectl describe pod` for one of the service's pods: where and since when, its
    conditions, each container's state, last state and resources, and the events about
    this very pod (by name and UID, so a namesake's old events don't show)."""
    ns, where = target.namespace, f"{target.selector} in {target.namespace}"
    found = await call(target, "list_namespaced_pod", ns, label_selector=target.selector)
    chosen = _choose(found.items, pod, where)
    meta, spec, status = chosen.metadata, chosen.spec, chosen.status
    selector = ",".join(
        f"involvedObject.{key}={value}"
        for key, value in (("kind", "Pod"), ("name", meta.name), ("uid", meta.uid))
    )
    events = await call(target, "list_namespaced_event", ns, field_selector=selector)

    def seen(ev: Model) -> Any:
        return ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp

    statuses = {cs.name: cs for cs in status.container_statuses or []}
    containers = [
        [
            c.name,
            statuses[c.name].ready if c.name in statuses else False,
            statuses[c.name].restart_count if c.name in statuses else 0,
            _state(statuses[c.name].state) if c.name in statuses else "not started",
            _state(statuses[c.name].last_state) if c.name in statuses else "",
            _resources(c),
        ]
        for c in spec.containers
    ]
    conditions = [
        [c.type, c.status, c.reason or "", age_of(c.last_transition_time), c.message or ""]
        for c in status.conditions or []
    ]
    recent = sorted(events.items, key=seen, reverse=True)[:MAX_POD_EVENTS]
    event_rows = [
        [
            age_of(seen(ev)),
            ev.type,
            ev.reason,
            ev.count or 1,
            truncate(" ".join((ev.message or "").split()), 160),
        ]
        for ev in recent
    ]
    output = "\n".join(
        [
            f"pod {meta.name} in {ns} on node {spec.node_name or '(unscheduled)'}, "
            f"created {age_of(meta.creation_timestamp)} ago, phase {status.phase}, "
            f"QoS {status.qos_class or '?'}",
            "",
            format_table(["CONDITION", "STATUS", "REASON", "AGE", "MESSAGE"], conditions),
            "",
            format_table(
                ["CONTAINER", "READY", "RESTARTS", "STATE", "LAST STATE", "RESOURCES"],
                containers,
            ),
            "",
            format_table(["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"], event_rows)
            if event_rows
            else "no events about this pod",
        ]
    )
    ready = sum(bool(row[1]) for row in containers)
    restarts = sum(int(row[2]) for row in containers)
    last = sorted(
        {
            cs.last_state.terminated.reason
            for cs in statuses.values()
            if cs.last_state and cs.last_state.terminated and cs.last_state.terminated.reason
        }
    )
    summary = f"{meta.name}: {pod_status(chosen)}, {ready}/{len(containers)} ready"
    summary += f", {restarts} restarts" if restarts else ""
    summary += f", last terminated {','.join(last)}" if last else ""
    warnings = sum(ev.type == "Warning" for ev in events.items)
    summary += f"; {len(events.items)} events ({warnings} Warning)"
    details = {"pod": meta.name, "status": pod_status(chosen), "restarts": restarts}
    return build_result(True, summary, output, **details, last_terminated=last)
