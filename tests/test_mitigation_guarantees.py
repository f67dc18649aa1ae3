"""A confirmation authorises exactly what its dry run showed: once, while the incident is
open (issue 18). End to end: the real grammar and ActionService, the Bolt button
listeners over signed HTTP, the Slack emulator, the real kubernetes client against
emulator/kubernetes.py, on SQLite and Postgres."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from bot.actions import ledger
from bot.actions.params import resolve
from bot.errors import UserError
from bot.executors import ExecutionResult
from storage.models import PendingAction
from tests.action_rig import (  # noqa: F401
    NEW,
    Rig,
    engine_fixture,
    health_fixture,
    kube_fixture,
    rig_fixture,
)
from tests.harness import ALICE, BOB, CAROL

DAVE = "U0DAVE"  # in the workspace, not in the incident channel
HOTFIX = "registry.example.com/checkout:1.4.3"


# 1. A newer proposal for the same action and target supersedes the older ones.


async def test_a_newer_proposal_supersedes_the_older_one(rig: Rig) -> None:
    await rig.mitigate("scale checkout 6")
    await rig.mitigate("scale checkout 7", user=CAROL)
    first = await rig.proposal(1)
    assert not first["buttons"]
    assert (
        "Superseded by a newer proposal from <@U0CAROL>: `scale checkout replicas=7`"
        in (first["shown"])
    )
    assert (await rig.proposal(2))["buttons"]
    await rig.click(BOB, pending=2)
    assert rig.deployment()["spec"]["replicas"] == 7
    # Alice's client still shows the old buttons; her click changes nothing.
    reply = await rig.actions.decide(1, True, rig.request(BOB))
    assert reply == (
        "`scale checkout replicas=6` was superseded by a newer proposal; "
        "only the newest can be confirmed."
    )
    assert rig.deployment()["spec"]["replicas"] == 7 and len(rig.real_patches()) == 1
    [(_, actor, superseded)] = await rig.events("mitigation_superseded")
    assert actor == CAROL and superseded["action_id"] == 1 and superseded["by_action_id"] == 2
    assert (await rig.status(1), await rig.status(2)) == ("superseded", "executed")


async def test_two_restart_proposals_restart_once(rig: Rig) -> None:
    await rig.mitigate("restart checkout")
    await rig.mitigate("restart checkout")
    await rig.actions.decide(1, True, rig.request(BOB))
    await rig.click(BOB, pending=2)
    assert len(rig.real_patches()) == 1
    # A different action on the same service is a different proposal: not superseded.
    await rig.mitigate("scale checkout 5")
    assert await rig.status(3) == "pending"


# 2. The confirmed run does what the dry run resolved, or refuses if the state changed.


async def test_a_rollback_refuses_when_a_rollout_landed_after_its_dry_run(rig: Rig) -> None:
    await rig.mitigate("rollback checkout")
    assert "from revision 2 to 1" in (await rig.proposal(1))["shown"]
    rig.kube.rollout("shop", "checkout", HOTFIX)  # revision 3 lands before the click
    await rig.click(BOB)
    shown = (await rig.proposal(1))["shown"]
    assert "checkout changed since this dry run; propose again. Nothing was run." in shown
    assert rig.real_patches() == []
    assert rig.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == HOTFIX
    [(_, _, executed)] = await rig.events("mitigation_executed")
    assert (executed["ok"], executed["outcome"]) == (False, "changed")
    assert await rig.status(1) == "changed"
    # Proposing again shows, and then runs, what is true now.
    await rig.mitigate("rollback checkout")
    assert "from revision 3 to 2" in (await rig.proposal(2))["shown"]
    await rig.click(BOB, pending=2)
    assert rig.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == NEW


async def test_a_scale_refuses_when_the_replicas_changed_after_its_dry_run(rig: Rig) -> None:
    await rig.mitigate("scale checkout 8")
    rig.kube.rollout("shop", "checkout", HOTFIX)
    await rig.click(BOB)
    assert rig.real_patches() == []
    assert rig.deployment()["spec"]["replicas"] == 3
    assert "changed since this dry run" in (await rig.proposal(1))["shown"]


# 3. Nothing runs after close; after resolve, mitigations still run and are recorded.


async def test_close_retires_open_proposals_and_refuses_new_ones(rig: Rig) -> None:
    await rig.mitigate("scale checkout 6")
    await rig.slack.command("resolve rolled forward", channel=rig.channel.id)
    await rig.mitigate("restart checkout")  # watching after resolve can need one
    await rig.click(BOB, pending=2)
    assert len(rig.real_patches()) == 1
    await rig.slack.command("close", channel=rig.channel.id)
    retired = await rig.proposal(1)
    assert not retired["buttons"]
    assert "Retired: the incident is closed. Nothing was run." in retired["shown"]
    reply = await rig.actions.decide(1, True, rig.request(BOB))
    assert (
        reply
        == "`scale checkout replicas=6` was retired when the incident closed; nothing was run."
    )
    assert rig.deployment()["spec"]["replicas"] == 3
    assert "was closed on" in (await rig.mitigate("scale checkout 2"))
    assert len(rig.kube.patches) == 3  # two dry runs and the restart; none after close
    kinds = [kind for kind, _, _ in await rig.events("mitigation_")]
    assert kinds.count("mitigation_executed") == 1 and "mitigation_retired" in kinds
    postmortem = await rig.slack.app.services.postmortems.render(rig.channel.name, "md")
    assert "Bob Example confirmed restart checkout" in postmortem
    assert "retired scale checkout replicas=6" in postmortem


# 5. The action trail in the post-mortem: one complete sentence per event.


async def test_every_action_event_is_a_complete_sentence_in_the_postmortem(rig: Rig) -> None:
    await rig.diag("pods checkout", user=ALICE)
    await rig.mitigate("rollback checkout 9", user=CAROL)  # a failed dry run
    await rig.mitigate("scale checkout 6", user=CAROL)
    await rig.click(CAROL)  # refused: not a mitigator
    await rig.click(CAROL, confirm=False)  # the requester withdraws it
    await rig.mitigate("scale checkout 5")
    await rig.mitigate("scale checkout 4")  # supersedes the 5
    await rig.click(BOB, pending=3)
    markdown = await rig.slack.app.services.postmortems.render(rig.channel.name, "md")
    trail = [
        line.split(" — ", 1)[1]
        for line in markdown.splitlines()
        if "**Diagnostic" in line or "**Mitigation" in line
    ]
    assert trail == [
        f"**{label}** · {sentence} _({who} Example)_"
        for label, sentence, who in [
            ("Diagnostic", "Alice Example asked for the diagnostic pods checkout.", "Alice"),
            (
                "Diagnostic",
                "Alice Example ran pods checkout: 2 pods: 1 Running, 1 CrashLoopBackOff "
                "(7 restarts, 1 OOMKilled).",
                "Alice",
            ),
            ("Mitigation", "Carol Example proposed rollback checkout revision=9.", "Carol"),
            (
                "Mitigation",
                "The dry run of rollback checkout revision=9 for Carol Example failed: "
                "revision 9 not found for checkout (have: 1, 2); nothing was proposed.",
                "Carol",
            ),
            ("Mitigation", "Carol Example proposed scale checkout replicas=6.", "Carol"),
            (
                "Mitigation",
                "The dry run of scale checkout replicas=6 for Carol Example showed: would "
                "have scaled checkout in shop from 3 to 6 replicas.",
                "Carol",
            ),
            (
                "Mitigation",
                "Carol Example's confirmation of scale checkout replicas=6 was refused: not "
                "a mitigator or the incident commander.",
                "Carol",
            ),
            (
                "Mitigation",
                "Carol Example cancelled scale checkout replicas=6 (requested by Carol "
                "Example); nothing was run.",
                "Carol",
            ),
            ("Mitigation", "Alice Example proposed scale checkout replicas=5.", "Alice"),
            (
                "Mitigation",
                "The dry run of scale checkout replicas=5 for Alice Example showed: would "
                "have scaled checkout in shop from 3 to 5 replicas.",
                "Alice",
            ),
            ("Mitigation", "Alice Example proposed scale checkout replicas=4.", "Alice"),
            (
                "Mitigation",
                "The dry run of scale checkout replicas=4 for Alice Example showed: would "
                "have scaled checkout in shop from 3 to 4 replicas.",
                "Alice",
            ),
            (
                "Mitigation",
                "Alice Example's newer proposal scale checkout replicas=4 superseded scale "
                "checkout replicas=5; nothing was run.",
                "Alice",
            ),
            (
                "Mitigation",
                "Bob Example confirmed scale checkout replicas=4 (requested by Alice Example).",
                "Bob",
            ),
            (
                "Mitigation",
                "scale checkout replicas=4, confirmed by Bob Example, succeeded: scaled "
                "checkout in shop from 3 to 4 replicas.",
                "Bob",
            ),
        ]
    ]


# 6. A write that times out is unknown, not failed: read back and recorded.


async def test_a_write_that_answers_late_is_read_back_and_recorded_as_landed(rig: Rig) -> None:
    await rig.mitigate("scale checkout 6")
    rig.kube.write_delay = 3  # applied at once, answered after the 1 s timeout
    await rig.click(BOB)
    assert rig.deployment()["spec"]["replicas"] == 6
    shown = (await rig.proposal(1))["shown"]
    assert ":white_check_mark: Confirmed by <@U0BOB>: scaled checkout in shop from 3 to 6" in shown
    assert "answered too late, but reading checkout back shows it landed" in shown
    [(_, _, executed)] = await rig.events("mitigation_executed")
    assert (executed["ok"], executed["outcome"]) == (True, "ok")
    assert await rig.status(1) == "executed"


async def test_a_write_with_no_answer_and_no_trace_is_unknown(rig: Rig) -> None:
    await rig.mitigate("scale checkout 6")
    rig.kube.write_delay, rig.kube.apply_late = 3, True  # held before it is applied
    await rig.click(BOB)
    shown = (await rig.proposal(1))["shown"]
    assert ":hourglass: Confirmed by <@U0BOB>; the outcome is not known yet:" in shown
    assert "it may still complete; read back at once, checkout does not show it yet" in shown
    assert ":x:" not in shown and "failed" not in shown
    [(_, _, executed)] = await rig.events("mitigation_executed")
    assert (executed["ok"], executed["outcome"]) == (False, "unknown")
    assert await rig.status(1) == "unknown"
    markdown = await rig.slack.app.services.postmortems.render(rig.channel.name, "md")
    assert "confirmed by Bob Example, has an unknown outcome: " in markdown


# 7. A refused click by someone outside the channel is answered through response_url.


async def test_a_click_from_outside_the_channel_is_answered(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig.slack.workspace.add_user(DAVE, "dave", real_name="Dave Example")
    await rig.mitigate("scale checkout 6")
    await rig.click(DAVE)
    [answer] = rig.slack.workspace.ephemerals(DAVE)
    assert answer["via"] == "response_url"
    assert answer["text"].startswith("You may not confirm `scale checkout replicas=6`.")
    assert "could not report" not in caplog.text
    assert rig.real_patches() == []


# 8. Connection refused is not a timeout.


async def test_connection_refused_and_timeout_are_told_apart(rig: Rig) -> None:
    await rig.kube.stop()
    reply = await rig.mitigate("scale checkout 6")
    assert "Kubernetes API unreachable (connection refused)" in reply
    await rig.kube.start()
    rig.kube.delay = 3
    reply = await rig.mitigate("scale checkout 6")
    assert "Kubernetes API unreachable (timeout after 1s)" in reply


# 9. No restart for a deployment scaled to 0.


async def test_restart_is_refused_for_a_deployment_scaled_to_zero(rig: Rig) -> None:
    rig.deployment()["spec"]["replicas"] = 0
    reply = await rig.mitigate("restart checkout")
    assert "checkout in shop is scaled to 0: there are no pods to restart" in reply
    assert rig.kube.patches == []


# 10. A refusal says who can act now, and how to become commander.


async def test_a_refusal_names_who_can_act_now(rig: Rig) -> None:
    await rig.mitigate("scale checkout 6")
    await rig.click(CAROL)
    assert rig.last_ephemeral(CAROL) == (
        "You may not confirm `scale checkout replicas=6`. Who can now: <@U0BOB> or members "
        "of <!subteam^S0SRE>. There is no incident commander yet: anyone here can take the "
        "role with `/incident commander @yourself`, and the commander may confirm."
    )
    await rig.slack.command("severity P0", channel=rig.channel.id)
    await rig.slack.command("commander <@U0ALICE>", channel=rig.channel.id)
    await rig.mitigate("scale checkout 5", user=BOB)
    await rig.click(BOB, pending=2)
    assert rig.last_ephemeral(BOB).endswith(
        "must confirm `scale checkout replicas=5`. Who can now: members of <!subteam^S0SRE> "
        "or the incident commander, <@U0ALICE>."
    )
    assert rig.real_patches() == []


async def test_a_proposal_whose_dry_run_outlived_the_incident_is_refused(rig: Rig) -> None:
    """Close can land while a dry run is under way: the proposal it would have made is
    refused in the same transaction that checks the incident, not left confirmable."""
    catalog = rig.actions._catalog  # the one the service validates against
    invocation = resolve(catalog, "mitigation", "restart", "checkout", [])
    dry = ExecutionResult(True, "dry run: would have restarted checkout", "", {"pinned": {}})
    await rig.slack.command("resolve done", channel=rig.channel.id)
    await rig.slack.command("close", channel=rig.channel.id)
    with pytest.raises(UserError, match="The incident is closed"):
        await rig.db(lambda s: ledger.add_pending(s, rig.clock.now(), 1, invocation, ALICE, dry))
    assert await rig.db(lambda s: s.scalars(select(PendingAction)).all()) == []
