"""Running an incident from its channel: severity, status, updates, roles, notes, checklist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from emulator.models import Channel
from storage.models import ChecklistItem, Event, Incident
from tests.harness import ALICE, BOB, CAROL, Harness


async def declared(slack: Harness, text: str = "declare P2 checkout errors") -> Channel:
    await slack.command(text)
    return slack.only_incident_channel()


async def incident_row(slack: Harness) -> Incident:
    def query(session):  # type: ignore[no-untyped-def]
        return session.scalars(select(Incident)).one()

    return await slack.app.services.db.run(query)


async def events(slack: Harness) -> list[tuple[str, str, dict[str, Any]]]:
    def query(session):  # type: ignore[no-untyped-def]
        return [
            (e.type, e.actor, e.payload) for e in session.scalars(select(Event).order_by(Event.id))
        ]

    return await slack.app.services.db.run(query)


async def test_full_lifecycle(slack: Harness) -> None:
    channel = await declared(slack)
    before = len(await slack.app.services.db.run(lambda s: list(s.scalars(select(ChecklistItem)))))

    await slack.command("severity SEV1", channel=channel.id)
    await slack.command("assign commander <@U0BOB|bob>", channel=channel.id)
    await slack.command("comms <@U0CAROL>", channel=channel.id)
    await slack.command("status identified", channel=channel.id)
    await slack.command("update Rolled back to v1.2.3 <!channel>", channel=channel.id)
    await slack.command("note DB connections spiked at 14:02", channel=channel.id)
    await slack.command("resolve Bad config rolled back", channel=channel.id)

    incident = await incident_row(slack)
    assert (incident.severity, incident.status) == ("P0", "resolved")
    assert incident.resolution_summary == "Bad config rolled back" and incident.resolved_at
    assert incident.role("commander") == BOB and incident.role("comms") == CAROL
    assert BOB in channel.members and CAROL in channel.members
    assert channel.topic["value"] == f"P0 · resolved · IC <@{BOB}> · checkout errors"

    texts = slack.texts(channel.id)
    assert any(
        "changed the severity from *P2* to *P0*" in t and "checklist items added" in t
        for t in texts
    )
    assert any(f"<@{BOB}> is now the *commander*" in t for t in texts)
    assert any("set the status to *identified*" in t for t in texts)
    update = next(t for t in texts if "Rolled back to v1.2.3" in t)
    assert "<!channel>" not in update and "&lt;!channel&gt;" in update
    assert any("DB connections spiked" in t for t in texts)
    assert any("*Resolved:*" in t and "Bad config rolled back" in t for t in texts)

    broadcast = slack.texts(slack.announce)
    assert len(broadcast) == 4  # declared, escalated to P0, the update, resolved
    assert "Escalated to P0" in broadcast[1] and "Rolled back" in broadcast[2]
    assert "*Resolved:*" in broadcast[3]

    after = len(await slack.app.services.db.run(lambda s: list(s.scalars(select(ChecklistItem)))))
    assert after > before
    checklist = next(
        m for m in slack.workspace.messages(channel.id) if m["ts"] == channel.pins[0]["ts"]
    )
    options = sum(
        len(e["options"])
        for b in checklist["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )
    assert options == after  # the pinned message shows the added items

    kinds = [(kind, actor) for kind, actor, _ in await events(slack)]
    assert kinds == [
        ("declared", ALICE),
        ("scenario_guessed", "firebreak"),
        ("channel_created", "firebreak"),
        ("severity", ALICE),
        ("role", ALICE),
        ("role", ALICE),
        ("status", ALICE),
        ("update", ALICE),
        ("note", ALICE),
        ("resolved", ALICE),
    ]


async def test_checkbox_tick_is_saved_and_shown(slack: Harness) -> None:
    channel = await declared(slack)
    ts = channel.pins[0]["ts"]
    await slack.driver.toggle_checkbox(BOB, channel.id, ts, "checklist:0:0", ["triage.acknowledge"])
    await slack.settle()

    item = await slack.app.services.db.run(
        lambda s: s.scalars(
            select(ChecklistItem).where(ChecklistItem.key == "triage.acknowledge")
        ).one()
    )
    assert item.checked and item.checked_by == BOB and item.checked_at is not None
    message = next(m for m in slack.workspace.messages(channel.id) if m["ts"] == ts)
    element = message["blocks"][2]["elements"][0]
    assert [o["value"] for o in element["initial_options"]] == ["triage.acknowledge"]
    assert f"<@{BOB}>" in element["initial_options"][0]["description"]["text"]
    assert "(1/7)" in message["blocks"][1]["text"]["text"]

    await slack.driver.toggle_checkbox(BOB, channel.id, ts, "checklist:0:0", [])
    await slack.settle()
    message = next(m for m in slack.workspace.messages(channel.id) if m["ts"] == ts)
    assert "initial_options" not in message["blocks"][2]["elements"][0]
    kinds = [kind for kind, _, _ in await events(slack)]
    assert kinds[-2:] == ["checklist_checked", "checklist_unchecked"]


async def test_channel_commands_outside_an_incident_channel(slack: Harness) -> None:
    await slack.command("severity P0")
    [reply] = slack.ephemeral_texts(ALICE)
    assert "only works in an incident channel" in reply and "/incident list" in reply


async def test_unknown_subcommand_and_bad_severity_answer_at_once(slack: Harness) -> None:
    channel = await declared(slack)
    unknown = await slack.command("frobnicate", channel=channel.id)
    assert "Unknown subcommand `frobnicate`" in str(unknown.body)
    assert "/incident declare <severity> <title>" in str(unknown.body)
    bad = await slack.command("severity P9", channel=channel.id)
    assert "Unknown severity `P9`. Use P0–P3 or SEV1–SEV4." in str(bad.body)
    assert (await incident_row(slack)).severity == "P2"


async def test_list_and_help(slack: Harness) -> None:
    assert "No open incidents" in "".join(await _list(slack))
    channel = await declared(slack, "declare P1 payments failing")
    listing = (await _list(slack))[-1]
    assert "*P1*" in listing and f"<#{channel.id}>" in listing and "payments failing" in listing
    help_reply = await slack.command("help")
    assert "/incident assign <role> <@user>" in str(help_reply.body)


async def _list(slack: Harness) -> list[str]:
    await slack.command("list")
    return [t for t in slack.ephemeral_texts(ALICE) if "incidents" in t.lower()]


async def test_duplicate_update_is_posted_once(slack: Harness) -> None:
    channel = await declared(slack)
    from urllib.parse import urlencode

    from emulator import payloads

    form = payloads.slash_command(
        slack.workspace, ALICE, channel.id, "update all good", "/incident"
    )
    for retry in ("", "1"):
        await slack.driver.post(
            urlencode(form), headers={"X-Slack-Retry-Num": retry} if retry else {}
        )
    await slack.settle()
    assert sum("all good" in t for t in slack.texts(channel.id)) == 1
    assert sum(kind == "update" for kind, _, _ in await events(slack)) == 1


async def test_update_survives_a_slack_outage(slack: Harness) -> None:
    channel = await declared(slack)
    slack.emulator.inject_fault("chat.postMessage", status=500, count=100)
    await slack.command("update mitigation in progress", channel=channel.id)
    assert any("Firebreak will retry" in t for t in slack.ephemeral_texts(ALICE))
    assert not any("mitigation in progress" in t for t in slack.texts(channel.id))

    slack.emulator.clear_faults()
    # The sweep retries once the backoff has passed; move past it instead of sleeping.
    await _sweep_after_backoff(slack)
    assert sum("mitigation in progress" in t for t in slack.texts(channel.id)) == 1
    assert sum("mitigation in progress" in t for t in slack.texts(slack.announce)) == 1


async def _sweep_after_backoff(slack: Harness) -> None:
    from storage.models import OutboxMessage

    def due_now(session):  # type: ignore[no-untyped-def]
        for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
        ):
            row.next_attempt_at = row.created_at

    await slack.app.services.db.run(due_now)
    await slack.app.services.incidents.resume_unfinished()
