"""`/incident mitigate isolate|unisolate <service>` end to end: the slash command and the
buttons over signed HTTP, the Slack emulator, the real kubernetes client against the
fake API server's NetworkPolicies; only the incident commander may confirm."""

from __future__ import annotations

import copy
import uuid

import pytest

from bot.executors.isolation import pod_selector
from tests.action_rig import Rig, engine_fixture, health_fixture, kube_fixture, rig_fixture  # noqa: F401
from tests.harness import ALICE, BOB, CAROL

POLICY = "firebreak-isolate-checkout"


async def mitigate(rig: Rig, text: str, user: str = ALICE) -> None:
    await rig.slack.command(f"mitigate {text}", user=user, channel=rig.channel.id)


def policies(rig: Rig) -> dict[tuple[str, str], dict[str, object]]:
    return rig.kube.objects.get("NetworkPolicy", {})


async def test_isolate_dry_runs_then_only_the_commander_confirms(rig: Rig) -> None:
    await mitigate(rig, "")
    listing = rig.last_ephemeral(ALICE)
    assert "`isolate`, `unisolate`: only the incident commander may confirm." in listing
    await mitigate(rig, "isolate checkout", user=BOB)
    [dry] = rig.kube.patches
    assert dry.dry_run and dry.path.endswith("/namespaces/shop/networkpolicies")
    assert policies(rig) == {}  # a dry run stores nothing
    shown = (await rig.proposal(1))["shown"]
    assert "dry run: would have isolated checkout in shop: networkpolicy " in shown
    assert "denies all ingress to 2 pods matching app=checkout" in shown

    await rig.click(BOB)  # a mitigator, but not the commander
    assert rig.last_ephemeral(BOB).startswith(
        "Only the incident commander may confirm `isolate checkout`. Nobody can right now. "
        "There is no incident commander yet"
    )
    await rig.slack.command(f"commander <@{CAROL}>", channel=rig.channel.id)
    await rig.click(BOB)
    assert "Who can now: the incident commander, <@U0CAROL>." in rig.last_ephemeral(BOB)
    assert policies(rig) == {}
    await rig.click(CAROL)
    stored = rig.kube.get("NetworkPolicy", "shop", POLICY)
    assert stored["apiVersion"] == "networking.k8s.io/v1"
    assert stored["spec"] == {
        "podSelector": {"matchLabels": {"app": "checkout"}},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "firebreak"}
    assert await rig.status(1) == "executed"
    refused = [(a, p["reason"]) for _, a, p in await rig.events("mitigation_refused")]
    assert refused == [(BOB, "commander_only"), (BOB, "commander_only")]
    executed = [(a, p["action"]) for _, a, p in await rig.events("mitigation_executed")]
    assert executed == [(CAROL, "isolate")]


async def test_unisolate_removes_exactly_the_policy_isolate_made(rig: Rig) -> None:
    await rig.slack.command(f"commander <@{ALICE}>", channel=rig.channel.id)
    await mitigate(rig, "unisolate checkout")
    assert "is not isolated: no networkpolicy firebreak-isolate-checkout" in (
        rig.last_ephemeral(ALICE)
    )
    await mitigate(rig, "isolate checkout")
    await rig.click(ALICE)
    await mitigate(rig, "isolate checkout")
    assert "already has networkpolicy firebreak-isolate-checkout (Firebreak's)" in (
        rig.last_ephemeral(ALICE)
    )
    await mitigate(rig, "unisolate checkout")
    assert policies(rig)  # the dry run deleted nothing
    await rig.click(ALICE, pending=2)
    assert policies(rig) == {}
    deletes = [p for p in rig.kube.patches if p.path.endswith(POLICY)]
    assert [p.dry_run for p in deletes] == [True, False]
    assert all(p.body["preconditions"]["uid"] for p in deletes)


async def test_a_policy_someone_else_wrote_is_left_alone(rig: Rig) -> None:
    await rig.slack.command(f"commander <@{ALICE}>", channel=rig.channel.id)
    theirs = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY, "namespace": "shop", "uid": "theirs"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    rig.kube.add(theirs)
    await mitigate(rig, "unisolate checkout")
    assert "is not Firebreak's; remove it by hand" in rig.last_ephemeral(ALICE)
    await mitigate(rig, "isolate checkout")
    assert "(not Firebreak's, so it is left alone)" in rig.last_ephemeral(ALICE)
    assert rig.kube.get("NetworkPolicy", "shop", POLICY) is theirs


async def test_a_confirmation_covers_only_what_its_dry_run_saw(rig: Rig) -> None:
    await rig.slack.command(f"commander <@{ALICE}>", channel=rig.channel.id)
    await mitigate(rig, "isolate checkout")
    await rig.click(ALICE)
    await mitigate(rig, "unisolate checkout")
    # Someone deletes and recreates it between the dry run and the click: a new UID.
    stored = rig.kube.get("NetworkPolicy", "shop", POLICY)
    replaced = copy.deepcopy(stored)
    replaced["metadata"]["uid"] = str(uuid.uuid4())
    rig.kube.add(replaced)
    await rig.click(ALICE, pending=2)
    assert "was replaced since this dry run; propose again" in str(rig.messages()[-1])
    assert rig.kube.get("NetworkPolicy", "shop", POLICY) is replaced
    assert [p.dry_run for p in rig.kube.patches if p.path.endswith(POLICY)] == [True]


async def test_an_isolation_made_meanwhile_is_not_made_again(rig: Rig) -> None:
    await rig.slack.command(f"commander <@{ALICE}>", channel=rig.channel.id)
    await mitigate(rig, "isolate checkout")
    by_hand = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY, "namespace": "shop", "uid": "by-hand"},
        "spec": {"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Ingress"]},
    }
    rig.kube.add(by_hand)  # someone isolated it by hand between the dry run and the click
    await rig.click(ALICE)
    assert "appeared since this dry run; propose again" in str(rig.messages()[-1])
    assert rig.kube.get("NetworkPolicy", "shop", POLICY) is by_hand
    assert [p.dry_run for p in rig.kube.patches] == [True]


async def test_an_rbac_refusal_gets_a_clear_answer(rig: Rig) -> None:
    await rig.slack.command(f"commander <@{ALICE}>", channel=rig.channel.id)
    rig.kube.forbid("create", "networkpolicies")
    await mitigate(rig, "isolate checkout")
    assert "forbidden: the service account may not create networkpolicies in shop" in (
        rig.last_ephemeral(ALICE)
    )
    assert policies(rig) == {}


async def test_a_down_cluster_gets_a_clear_answer(rig: Rig) -> None:
    await rig.kube.stop()
    await mitigate(rig, "isolate checkout")
    assert "Kubernetes API unreachable (connection refused)" in rig.last_ephemeral(ALICE)
    assert policies(rig) == {}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=checkout", {"matchLabels": {"app": "checkout"}}),
        (
            "app==payments-api, tier!=canary",
            {
                "matchLabels": {"app": "payments-api"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}],
            },
        ),
    ],
)
def test_the_targets_selector_becomes_the_policy_selector(
    selector: str, expected: dict[str, object]
) -> None:
    assert pod_selector(selector) == expected
