"""Runbook actions end to end: the real grammar, ActionService, the Bolt button listeners
over signed HTTP, the Slack emulator, the real kubernetes client against
emulator/kubernetes.py, a local aiohttp health endpoint and the real Postgres."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from sqlalchemy import select

from bot.actions.views import CONFIRM_ACTION
from bot.messages import Button, Buttons, Card, Section
from storage.models import PendingAction
from tests.action_rig import (  # noqa: F401
    Rig,
    engine_fixture,
    health_fixture,
    kube_fixture,
    rig_fixture,
)
from tests.databases import postgres_or_skip
from tests.harness import ALICE, BOB, CAROL

# -- diagnostics ----------------------------------------------------------------------


async def test_diag_lists_then_runs_with_the_output_in_the_thread(rig: Rig) -> None:
    listing = await rig.diag("")
    assert "`pods <service>`" in listing and "`health <service> [<which>]`" in listing
    assert "`restart <service>`" not in listing
    assert "`checkout` (kubernetes, postgres, http)" in listing

    assert await rig.diag("pods checkout") == ""
    summary, output = rig.messages()[-2:]
    assert "`pods checkout` found: 2 pods: 1 Running, 1 CrashLoopBackOff" in summary["text"]
    assert output["thread_ts"] == summary["ts"]
    table = output["blocks"][0]["text"]["text"]
    assert table.startswith("```") and "checkout-b" in table and "OOMKilled" in table
    assert await rig.events("diagnostic") == [
        (
            "diagnostic_requested",
            ALICE,
            {"action": "pods", "service": "checkout", "command": "pods checkout", "args": {}},
        ),
        (
            "diagnostic",
            ALICE,
            {
                "action": "pods",
                "service": "checkout",
                "command": "pods checkout",
                "ok": True,
                "summary": "2 pods: 1 Running, 1 CrashLoopBackOff (7 restarts, 1 OOMKilled)",
                "thread_ts": summary["ts"],
            },
        ),
    ]


async def test_long_output_is_cut_to_fit_and_attached_whole(rig: Rig) -> None:
    lines = [f"{i:04d} GET /cart 200 <!channel>" for i in range(400)]
    lines[10] = "boot DATABASE_URL=postgres://app:hunter2@db/app"
    rig.kube.set_log("shop", "checkout-b", "\n".join(lines))
    assert await rig.diag("logs checkout 400 pod=checkout-b") == ""
    summary, reply, upload = rig.messages()[-3:]
    assert "last 400 log lines of checkout-b (1 source" in summary["text"]
    text = reply["blocks"][0]["text"]["text"]
    assert len(text) <= 3000 and "full output is attached" in text
    assert "<!channel>" not in text and "hunter2" not in text
    assert upload["thread_ts"] == summary["ts"]
    [stored] = rig.slack.workspace.files.values()
    assert stored.name.startswith("logs-checkout-") and stored.data is not None
    full = stored.data.decode()
    assert "0399 GET /cart" in full and "hunter2" not in full and "postgres://app:***@db" in full


async def test_db_and_http_diagnostics(rig: Rig) -> None:
    await rig.diag("health checkout")
    assert (
        ":mag: `health checkout which=health` found: health: 200 OK" in rig.messages()[-2]["text"]
    )
    await rig.diag("health checkout readiness")
    readiness = rig.messages()[-2]["text"]
    assert readiness.startswith(":warning:") and "readiness: 503" in readiness
    postgres_or_skip()
    await rig.diag("db-activity checkout")
    assert "`db-activity checkout min_seconds=60` found:" in rig.messages()[-2]["text"]
    oks = [p["ok"] for kind, _, p in await rig.events("diagnostic") if kind == "diagnostic"]
    assert oks == [True, False, True]


async def test_forbidden_slow_and_unreachable_clusters_get_a_clear_message(rig: Rig) -> None:
    rig.kube.forbid("list", "pods")
    await rig.diag("pods checkout")
    assert rig.messages()[-1]["text"] == (
        ":x: `pods checkout` could not run: forbidden: "
        "the service account may not list pods in shop"
    )
    rig.kube.delay = 3
    await rig.diag("deployment checkout")
    assert (
        "could not run: Kubernetes API unreachable (timeout after 1s)" in rig.messages()[-1]["text"]
    )
    rig.kube.delay = 0
    await rig.kube.stop()
    await rig.diag("history checkout")
    assert "could not run: Kubernetes API unreachable" in rig.messages()[-1]["text"]
    results = [p for kind, _, p in await rig.events("diagnostic") if kind == "diagnostic"]
    assert [p["ok"] for p in results] == [False, False, False]
    assert all(p["thread_ts"] for p in results)


# -- mitigations ----------------------------------------------------------------------


async def test_a_dry_run_then_a_double_click_executes_once(rig: Rig) -> None:
    assert await rig.mitigate("scale checkout 6") == ""
    [dry] = rig.kube.patches
    assert dry.dry_run and dry.body == {"spec": {"replicas": 6}}
    proposal = rig.messages()[-1]
    shown = "\n".join(b["text"]["text"] for b in proposal["blocks"] if b["type"] == "section")
    assert "`scale checkout replicas=6`" in shown
    assert "dry run: would have scaled checkout in shop from 3 to 6 replicas" in shown
    assert rig.kube.get("Deployment", "shop", "checkout")["spec"]["replicas"] == 3

    clicks = await asyncio.gather(rig.click(BOB), rig.click(BOB))
    await rig.slack.settle()
    assert all(r.status == 200 and r.acked_in_time for r in clicks)
    assert len(rig.real_patches()) == 1
    assert rig.kube.get("Deployment", "shop", "checkout")["spec"]["replicas"] == 6
    updated = rig.message(proposal["ts"])
    assert not [b for b in updated["blocks"] if b["type"] == "actions"]
    assert "Confirmed by <@U0BOB>: scaled checkout in shop from 3 to 6" in str(updated["blocks"])
    result = rig.messages()[-1]
    assert result["thread_ts"] == proposal["ts"] and "spec.replicas: 3 -&gt; 6" in result["text"]
    # The second click lands while the first runs, or after: either way it is refused.
    assert re.fullmatch(
        r"`scale checkout replicas=6` was already (confirmed|executed) by <@U0BOB>; "
        r"a decision counts once\.",
        rig.last_ephemeral(BOB),
    )

    kinds = [(kind, actor) for kind, actor, _ in await rig.events("mitigation")]
    assert sorted(kinds) == sorted(
        [
            ("mitigation_requested", ALICE),
            ("mitigation_dry_run", ALICE),
            ("mitigation_confirmed", BOB),
            ("mitigation_refused", BOB),
            ("mitigation_executed", BOB),
        ]
    )
    executed = next(p for kind, _, p in await rig.events("mitigation_executed"))
    assert executed["ok"] and executed["action_id"] == 1
    row = await rig.db(lambda s: s.get(PendingAction, 1))
    assert (row.status, row.decided_by, row.params) == ("executed", BOB, {"replicas": 6})


async def test_an_unauthorised_confirm_is_refused_and_logged(rig: Rig) -> None:
    await rig.mitigate("restart checkout")
    await rig.click(CAROL)
    await rig.click(CAROL, confirm=False)
    refusal = rig.last_ephemeral(CAROL)
    assert refusal.startswith(
        "You may not cancel `restart checkout`. "
        "Who can now: <@U0BOB> or members of <!subteam^S0SRE>."
    )
    assert rig.real_patches() == []
    refused = [p for _, actor, p in await rig.events("mitigation_refused") if actor == CAROL]
    assert [(p["reason"], p["confirm"]) for p in refused] == [
        ("not_authorised", True),
        ("not_authorised", False),
    ]
    assert await rig.db(lambda s: s.get(PendingAction, 1).status) == "pending"
    await rig.click(BOB)  # a refusal does not use the confirmation up
    assert len(rig.real_patches()) == 1


async def test_user_group_members_and_the_commander_may_confirm(rig: Rig) -> None:
    rig.slack.workspace.add_usergroup("S0SRE", "sre", [CAROL])
    await rig.mitigate("restart checkout")
    rig.kube.delay = 0.4  # a slow cluster: the click is still acked at once
    response = await rig.click(CAROL)
    assert response.elapsed < 0.4 and len(rig.real_patches()) == 1
    rig.kube.delay = 0
    await rig.slack.command("commander <@U0ALICE>", channel=rig.channel.id)
    await rig.mitigate("rollback checkout")
    await rig.click(ALICE, pending=2)  # the commander confirms her own request (P2)
    assert [p.body[0]["path"] for p in rig.real_patches()[1:]] == ["/spec/template"]
    executed = [(a, p["action"]) for _, a, p in await rig.events("mitigation_executed")]
    assert executed == [(CAROL, "restart"), (ALICE, "rollback")]


async def test_p0_needs_a_confirmer_other_than_the_requester(rig: Rig) -> None:
    await rig.slack.command("severity P0", channel=rig.channel.id)
    await rig.mitigate("scale checkout 8", user=BOB)
    await rig.click(BOB)
    assert "someone other than the requester (<@U0BOB>) must confirm" in rig.last_ephemeral(BOB)
    assert rig.real_patches() == []
    await rig.slack.command("commander <@U0CAROL>", channel=rig.channel.id)
    await rig.click(CAROL)
    assert rig.kube.get("Deployment", "shop", "checkout")["spec"]["replicas"] == 8
    reasons = [p["reason"] for _, _, p in await rig.events("mitigation_refused")]
    assert reasons == ["distinct_confirmer_required"]


async def test_an_expired_confirmation_is_refused(rig: Rig) -> None:
    await rig.mitigate("scale checkout 2")
    rig.clock.advance(timedelta(minutes=10, seconds=1))
    await rig.click(BOB)
    assert "This confirmation expired" in rig.last_ephemeral(BOB)
    assert rig.real_patches() == []
    proposal = rig.message(await rig.db(lambda s: s.get(PendingAction, 1).message_ts))
    assert "Expired unconfirmed" in str(proposal["blocks"])
    assert not [b for b in proposal["blocks"] if b["type"] == "actions"]
    [(_, _, refused)] = await rig.events("mitigation_refused")
    assert refused["reason"] == "expired"
    assert await rig.db(lambda s: s.get(PendingAction, 1).status) == "expired"


async def test_the_requester_may_cancel(rig: Rig) -> None:
    await rig.mitigate("rollback checkout 1")
    await rig.click(ALICE, confirm=False)
    proposal = rig.message(await rig.db(lambda s: s.get(PendingAction, 1).message_ts))
    assert "Cancelled by <@U0ALICE>. Nothing was run." in str(proposal["blocks"])
    stale = await rig.actions.decide(1, True, rig.request(BOB))  # a client showing old buttons
    assert (
        stale == "`rollback checkout revision=1` was already cancelled by <@U0ALICE>; "
        "a decision counts once."
    )
    assert rig.real_patches() == []
    kinds = [kind for kind, _, _ in await rig.events("mitigation")]
    assert kinds[-2:] == ["mitigation_cancelled", "mitigation_refused"]


async def test_a_failed_dry_run_proposes_nothing(rig: Rig) -> None:
    reply = await rig.mitigate("rollback checkout 9")
    assert reply.startswith(":x: The dry run of `rollback checkout revision=9` failed:")
    assert "revision 9 not found for checkout (have: 1, 2)" in reply
    assert await rig.db(lambda s: list(s.scalars(select(PendingAction)))) == []
    [(_, _, dry)] = await rig.events("mitigation_dry_run")
    assert dry["ok"] is False


BAD_INPUT = [
    ("diag", "logs checkout pod=Checkout_B", "`pod` must be an RFC 1123 name"),
    ("diag", "logs checkout pod=../../secrets", "`pod` must be an RFC 1123 name"),
    ("diag", "logs checkout 10;cat", "`tail` must be a whole number; got `10;cat`"),
    ("diag", "zap checkout", "Unknown diagnostic `zap`"),
    ("diag", "pods nowhere", "Unknown service `nowhere`. Configured: checkout, billing"),
    ("diag", "pods billing", "`billing` has no kubernetes section"),
    ("diag", "restart checkout", "`restart` is a mitigation"),
    ("diag", "pods checkout <!channel>", "Unexpected argument `&lt;!channel&gt;`"),
    ("mitigate", "scale checkout 9", "`replicas` must be from 0 to 8 (8 is checkout's"),
    ("mitigate", "scale checkout 51", "`replicas` must be from 0 to 8"),
    ("mitigate", "scale checkout", "`replicas` is missing"),
    ("mitigate", "scale checkout 6;kubectl delete ns shop", "`replicas` must be a whole number"),
    ("mitigate", "terminate-query checkout 1';DROP TABLE events;--", "`pid` must be a whole"),
    ("mitigate", "terminate-query checkout pg_sleep(10)", "`pid` must be a whole number"),
    ("mitigate", "rollback checkout revision=$(id)", "`revision` must be a whole number"),
    ("mitigate", "restart checkout;id", "Unknown service `checkout;id`"),
    ("mitigate", "nuke checkout", "Unknown mitigation `nuke`"),
]


async def test_bad_input_gets_a_clear_answer_and_runs_nothing(rig: Rig) -> None:
    before = len(rig.messages())
    for verb, text, message in BAD_INPUT:
        run = rig.diag if verb == "diag" else rig.mitigate
        reply = await run(text)
        assert message in reply, (text, reply)
        assert "<!channel>" not in reply
    assert rig.kube.requests == []
    assert len(rig.messages()) == before
    assert await rig.events("diagnostic", "mitigation") == []


async def test_stale_buttons_get_a_clear_answer(rig: Rig) -> None:
    chat = rig.slack.app.services.chat

    def old(value: str) -> Card:
        return Card.of(Section("old"), Buttons((Button(value, CONFIRM_ACTION, value),)))

    ts = await chat.post(rig.channel.id, old("x"))
    await rig.slack.driver.click_button(BOB, rig.channel.id, ts, CONFIRM_ACTION)
    ts = await chat.post(rig.channel.id, old("99"))
    await rig.slack.driver.click_button(BOB, rig.channel.id, ts, CONFIRM_ACTION)
    await rig.slack.settle()
    assert rig.slack.ephemeral_texts(BOB)[-2:] == [
        "That button is no longer valid; ask again with `/incident mitigate`.",
        "That mitigation no longer exists.",
    ]
