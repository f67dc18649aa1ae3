"""`nodes`, `describe`, `db-slow` and `set-memory` end to end: the real grammar, the Bolt
app over signed HTTP with the Slack emulator, the real kubernetes client against
emulator/kubernetes.py and the real Postgres (tests/action_rig.py)."""

from __future__ import annotations

from emulator.kubernetes import node, node_metrics
from tests.action_rig import Rig, engine_fixture, health_fixture, kube_fixture, rig_fixture  # noqa: F401
from tests.databases import postgres_or_skip
from tests.harness import ALICE, BOB


def limit(rig: Rig) -> str:
    (container,) = rig.deployment()["spec"]["template"]["spec"]["containers"]
    return str(container["resources"]["limits"]["memory"])


async def test_nodes_and_describe_post_their_summaries_and_tables(rig: Rig) -> None:
    rig.kube.add(
        node("node-1", memory="4Gi", pressure=("MemoryPressure",)),
        node_metrics("node-1", "900m", "3500Mi"),
    )
    assert "`nodes <service>`" in await rig.diag("")
    await rig.diag("nodes checkout")
    summary, table = rig.messages()[-2:]
    assert "`nodes checkout` found: 1 nodes: 1 Ready; MemoryPressure on node-1" in summary["text"]
    assert "node-1*" in table["blocks"][0]["text"]["text"]

    await rig.diag("describe checkout")
    summary, detail = rig.messages()[-2:]
    assert (
        "`describe checkout` found: checkout-b: CrashLoopBackOff, 0/1 ready, 7 restarts, "
        "last terminated OOMKilled" in summary["text"]
    )
    assert "Terminated: OOMKilled (exit 137" in detail["blocks"][0]["text"]["text"]
    await rig.diag("describe checkout pod=checkout-zzz")
    assert rig.messages()[-1]["text"] == (
        ":x: `describe checkout pod=checkout-zzz` could not run: "
        "pod checkout-zzz is not one of app=checkout in shop"
    )


async def test_db_slow_says_what_the_database_lacks(rig: Rig) -> None:
    postgres_or_skip()
    await rig.diag("db-slow checkout")
    text = rig.messages()[-1]["text"]
    assert text.startswith(":x: `db-slow checkout` could not run: pg_stat_statements is ")
    assert "shared_preload_libraries" in text


async def test_set_memory_dry_run_confirm_and_audit(rig: Rig) -> None:
    assert await rig.mitigate("set-memory checkout 1024Mi") == ""
    [dry] = rig.kube.patches
    assert dry.dry_run and dry.content_type == "application/json-patch+json"
    shown = (await rig.proposal(1))["shown"]
    assert "`set-memory checkout limit=1Gi`" in shown
    assert "would have raised the memory limit of checkout/app in shop from 256Mi to 1Gi" in shown
    assert limit(rig) == "256Mi"

    await rig.click(BOB)
    assert limit(rig) == "1Gi" and len(rig.real_patches()) == 1
    after = await rig.proposal(1)
    assert "Confirmed by <@U0BOB>: raised the memory limit" in after["shown"]
    assert not after["buttons"]
    [(_, actor, executed)] = await rig.events("mitigation_executed")
    assert actor == BOB and executed["ok"]
    assert await rig.status(1) == "executed"


async def test_set_memory_refusals_run_nothing(rig: Rig) -> None:
    above = await rig.mitigate("set-memory checkout 3Gi")
    assert "`limit` must be from 64Mi to 2Gi (2Gi is checkout's kubernetes.max_memory)" in above
    assert "must be a memory size like 512Mi" in await rig.mitigate("set-memory checkout 2Gb")
    assert "got `-1Mi`" in await rig.mitigate("set-memory checkout -1Mi")
    lower = await rig.mitigate("set-memory checkout 128Mi")
    assert "128Mi would lower the 256Mi memory limit of checkout/app" in lower
    assert rig.kube.patches == []
    assert [kind for kind, _, _ in await rig.events("mitigation_dry_run")] == ["mitigation_dry_run"]


async def test_set_memory_refuses_when_a_rollout_landed_after_its_dry_run(rig: Rig) -> None:
    await rig.mitigate("set-memory checkout 1Gi", user=ALICE)
    rig.kube.rollout("shop", "checkout", "registry.example.com/checkout:1.4.3")
    await rig.click(BOB)
    assert "checkout changed since this dry run; propose again" in (await rig.proposal(1))["shown"]
    assert rig.real_patches() == [] and limit(rig) == "256Mi"
    assert await rig.status(1) == "changed"
