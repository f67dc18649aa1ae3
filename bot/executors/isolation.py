"""Network isolation of a service's pods: a deny-all-ingress NetworkPolicy, and its removal.

Seed 003 (security): contain a compromised workload without destroying the
evidence in it. Deleting or restarting its pods would; cutting its ingress does
not. The policy selects the pods with the service's own selector from targets.yml,
allows no ingress rule (so nothing may connect in) and leaves egress alone, which
`policyTypes: [Ingress]` says explicitly. It is named after the Deployment and
labelled as Firebreak's, so `unisolate` removes exactly the policy `isolate` made
and never one a person wrote.

Both follow the executor's rules: a server-side dry run first, a confirmed run that
refuses when the state moved since that dry run (`StateChanged`), and a write whose
answer never came is read back before being called done or unknown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.executors.base import (
    ExecutorError,
    KubernetesTarget,
    OutcomeUnknown,
    StateChanged,
    Unanswered,
)
from bot.executors.kubernetes_api import KubernetesApi, NotFound

PREFIX = "firebreak-isolate-"
MANAGED_BY = ("app.kubernetes.io/managed-by", "firebreak")
_TERM = re.compile(r"^\s*([^!=\s]+)\s*(!=|==|=)\s*(\S*)\s*$")
Pinned = dict[str, Any] | None


@dataclass(frozen=True)
class Change:
    """What a run did (or, dry, would do): the executor turns it into a result."""

    action: str
    output: str
    late: str | None
    details: dict[str, object] = field(default_factory=dict)


def policy_name(target: KubernetesTarget) -> str:
    """`firebreak-isolate-<deployment>`, cut to the 253 characters a name may have."""
    return (PREFIX + target.deployment)[:253].rstrip("-.")


def pod_selector(selector: str) -> dict[str, Any]:
    """The targets.yml selector (`k=v[,k!=v…]`, validated by the catalog) as the
    LabelSelector a NetworkPolicy takes: equalities in matchLabels, `!=` as NotIn."""
    labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for term in selector.split(","):
        match = _TERM.match(term)
        if match is None:
            raise ExecutorError(f"selector term {term!r} is not key=value or key!=value")
        key, op, value = match.groups()
        if op == "!=":
            expressions.append({"key": key, "operator": "NotIn", "values": [value]})
        else:
            labels[key] = value
    result: dict[str, Any] = {"matchLabels": labels}
    if expressions:
        result["matchExpressions"] = expressions
    return result


def policy(target: KubernetesTarget) -> dict[str, Any]:
    """The networking.k8s.io/v1 NetworkPolicy that denies all ingress to the pods."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy_name(target),
            "namespace": target.namespace,
            "labels": {MANAGED_BY[0]: MANAGED_BY[1]},
            "annotations": {
                "firebreak.io/purpose": "incident isolation: deny all ingress; "
                "`/incident mitigate unisolate` removes it"
            },
        },
        "spec": {
            "podSelector": pod_selector(target.selector),
            "policyTypes": ["Ingress"],
            "ingress": [],
        },
    }


async def _read(api: KubernetesApi, target: KubernetesTarget) -> dict[str, Any] | None:
    """The policy as stored, or None when there is none."""
    try:
        found: dict[str, Any] = await api.call(
            target,
            "read_namespaced_network_policy",
            policy_name(target),
            target.namespace,
            raw=True,
        )
    except NotFound:
        return None
    return found


def _ours(found: dict[str, Any]) -> bool:
    labels = found["metadata"].get("labels") or {}
    return bool(labels.get(MANAGED_BY[0]) == MANAGED_BY[1])


async def _pod_names(api: KubernetesApi, target: KubernetesTarget) -> list[str]:
    pods = await api.call(
        target, "list_namespaced_pod", target.namespace, label_selector=target.selector
    )
    return sorted(p.metadata.name for p in pods.items)


async def isolate(
    api: KubernetesApi, target: KubernetesTarget, dry_run: bool, pinned: Pinned
) -> Change:
    """Create the policy (with `dry_run`, admitted by the API server, not stored)."""
    name, ns = policy_name(target), target.namespace
    found = await _read(api, target)
    if found is not None:
        if pinned is not None:
            raise StateChanged(f"networkpolicy {name} appeared since this dry run; propose again")
        whose = "Firebreak's" if _ours(found) else "not Firebreak's, so it is left alone"
        raise ExecutorError(
            f"{target.deployment} in {ns} already has networkpolicy {name} ({whose})"
        )
    pods = await _pod_names(api, target)
    body = policy(target)
    late = None
    try:
        await api.call(
            target,
            "create_namespaced_network_policy",
            ns,
            body,
            dry_run="All" if dry_run else None,
            raw=True,
        )
    except Unanswered as exc:
        if dry_run:
            raise
        now = await _read_back(api, target, f"{exc}; it may still complete")
        if now is None or not _ours(now):
            raise OutcomeUnknown(f"{exc}; read back at once, {name} is not there yet") from None
        late = f"the API server answered too late, but {name} is there"
    where = f"{len(pods)} pods" if pods else "no pods yet (it applies to new ones too)"
    action = (
        f"isolated {target.deployment} in {ns}: networkpolicy {name} denies all ingress to "
        f"{where} matching {target.selector}"
    )
    output = f"networkpolicy {name} in {ns}\n{json.dumps(body['spec'], indent=2)}"
    if pods:
        output += "\npods: " + ", ".join(pods)
    return Change(action, output, late, {"policy": name, "pods": pods, "pinned": {"absent": True}})


async def unisolate(
    api: KubernetesApi, target: KubernetesTarget, dry_run: bool, pinned: Pinned
) -> Change:
    """Delete the policy `isolate` made, the very one the dry run saw (UID precondition)."""
    name, ns = policy_name(target), target.namespace
    found = await _read(api, target)
    if found is None:
        if pinned is not None:
            raise StateChanged(f"networkpolicy {name} is gone since this dry run; nothing to undo")
        raise ExecutorError(f"{target.deployment} in {ns} is not isolated: no networkpolicy {name}")
    if not _ours(found):
        raise ExecutorError(f"networkpolicy {name} in {ns} is not Firebreak's; remove it by hand")
    uid = found["metadata"]["uid"]
    if pinned is not None and pinned.get("uid") != uid:
        raise StateChanged(f"networkpolicy {name} was replaced since this dry run; propose again")
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
    late = None
    try:
        await api.call(
            target,
            "delete_namespaced_network_policy",
            name,
            ns,
            body=options,
            dry_run="All" if dry_run else None,
            raw=True,
        )
    except Unanswered as exc:
        if dry_run:
            raise
        if await _read_back(api, target, f"{exc}; it may still complete") is not None:
            raise OutcomeUnknown(f"{exc}; read back at once, {name} is still there") from None
        late = f"the API server answered too late, but {name} is gone"
    action = f"removed networkpolicy {name}: {target.deployment} in {ns} takes ingress again"
    output = f"deleted networkpolicy {name} in {ns} (uid {uid})"
    return Change(action, output, late, {"policy": name, "pinned": {"uid": uid}})


async def _read_back(
    api: KubernetesApi, target: KubernetesTarget, unanswered: str
) -> dict[str, Any] | None:
    try:
        return await _read(api, target)
    except ExecutorError as exc:
        raise OutcomeUnknown(f"{unanswered}, and reading it back failed ({exc})") from None
