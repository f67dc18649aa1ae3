"""Evidence from Kubernetes for a security incident: what a service's pods logged, what
happened to its objects, and its rollout history, exactly as the API server has them.

Unlike every other executor output this is NOT redacted: a forensic copy that masked
the attacker's token would be useless. So it never goes through `build_result` and
never to Slack; `bot/actions/evidence.py` writes it into an archive on disk.

Bounded: at most `MAX_PODS` pods, `LOG_BYTES` per container log (the API server cuts
it, `limitBytes`), and `total_bytes` in all; what was cut or could not be read is
listed in the archive's manifest, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.executors.base import ExecutorError, KubernetesTarget
from bot.executors.kubernetes_api import KubernetesApi

MAX_PODS = 50
LOG_BYTES = 8 * 1024 * 1024
TOTAL_BYTES = 128 * 1024 * 1024


@dataclass
class Evidence:
    """Files for the archive (path inside it → bytes), and what is missing from them."""

    files: dict[str, bytes] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, path: str, data: bytes, budget: int) -> bool:
        """Add a file if it fits the budget; False (and a gap noted) when it does not."""
        if self.size + len(data) > budget:
            self.gaps.append(f"{path}: left out, the archive reached its {budget} byte limit")
            return False
        self.files[path] = data
        self.size += len(data)
        return True


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


async def collect(
    api: KubernetesApi,
    target: KubernetesTarget,
    deployment: dict[str, Any],
    replicasets: list[dict[str, Any]],
    *,
    since_seconds: int,
    total_bytes: int = TOTAL_BYTES,
) -> Evidence:
    """Pods (all of them, with every container's log since `since_seconds`), the events
    about the service's objects, and its Deployment and ReplicaSets (the history)."""
    ns = target.namespace
    evidence = Evidence()
    pods = await api.call(
        target, "list_namespaced_pod", ns, label_selector=target.selector, raw=True
    )
    items = sorted(pods["items"], key=lambda p: p["metadata"]["name"])
    if len(items) > MAX_PODS:
        evidence.gaps.append(f"{len(items)} pods match; the logs of the first {MAX_PODS} only")
    evidence.add("kubernetes/pods.json", _json(pods), total_bytes)
    evidence.add("kubernetes/deployment.json", _json(deployment), total_bytes)
    evidence.add("kubernetes/replicasets.json", _json(replicasets), total_bytes)
    names = {deployment["metadata"]["name"]}
    names |= {o["metadata"]["name"] for o in [*items, *replicasets]}
    events = await api.call(target, "list_namespaced_event", ns, raw=True)
    mine = [e for e in events["items"] if e.get("involvedObject", {}).get("name") in names]
    evidence.add("kubernetes/events.json", _json(mine), total_bytes)
    for pod in items[:MAX_PODS]:
        await _pod_logs(api, target, pod, since_seconds, evidence, total_bytes)
    return evidence


async def _pod_logs(
    api: KubernetesApi,
    target: KubernetesTarget,
    pod: dict[str, Any],
    since_seconds: int,
    evidence: Evidence,
    total_bytes: int,
) -> None:
    """Every container's log, and the previous container's too where it restarted."""
    name = pod["metadata"]["name"]
    restarted = {
        s["name"]
        for s in pod.get("status", {}).get("containerStatuses") or []
        if s.get("restartCount")
    }
    containers = [c["name"] for c in pod["spec"].get("initContainers") or []]
    containers += [c["name"] for c in pod["spec"]["containers"]]
    for container in containers:
        for previous in (False, True) if container in restarted else (False,):
            path = f"logs/{name}/{container}{'.previous' if previous else ''}.log"
            try:
                text = await api.call(
                    target,
                    "read_namespaced_pod_log",
                    name,
                    target.namespace,
                    container=container,
                    previous=previous,
                    since_seconds=since_seconds,
                    timestamps=True,
                    limit_bytes=LOG_BYTES,
                )
            except ExecutorError as exc:
                evidence.gaps.append(f"{path}: could not be read ({exc})")
                continue
            data = str(text).encode()
            if len(data) >= LOG_BYTES:
                evidence.gaps.append(f"{path}: cut at {LOG_BYTES} bytes by the API server")
            evidence.add(path, data, total_bytes)
