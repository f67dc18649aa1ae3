"""Declaring an incident end to end: signed HTTP in, Slack emulator state and DB rows out."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from storage.models import ChecklistItem, Event, Incident
from tests.harness import ALICE, BOB, Harness


def today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


async def incidents(slack: Harness) -> list[Incident]:
    def query(session):  # type: ignore[no-untyped-def]
        return list(session.scalars(select(Incident).order_by(Incident.id)))

    return await slack.app.services.db.run(query)


async def event_types(slack: Harness, incident_id: int) -> list[str]:
    def query(session):  # type: ignore[no-untyped-def]
        return list(
            session.scalars(
                select(Event.type).where(Event.incident_id == incident_id).order_by(Event.id)
            )
        )

    return await slack.app.services.db.run(query)


async def test_declare_creates_channel_topic_checklist_and_announcement(slack: Harness) -> None:
    response = await slack.command("declare P1 checkout API returning 502s")

    assert response.status == 200
    assert "Declaring" in str(response.body)
    assert response.elapsed < 3
    channel = slack.only_incident_channel()
    assert channel.name == f"incident-{today()}-checkout-api-returning-502s"
    assert ALICE in channel.members and slack.workspace.bot_user_id in channel.members
    assert (
        channel.topic["value"] == "P1 · investigating · IC unassigned · checkout API returning 502s"
    )

    # The checklist is posted, pinned, grouped by phase, at most 10 boxes per element.
    assert len(channel.pins) == 1
    checklist = next(
        m for m in slack.workspace.messages(channel.id) if m["ts"] == channel.pins[0]["ts"]
    )
    elements = [e for b in checklist["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert all(e["type"] == "checkboxes" and len(e["options"]) <= 10 for e in elements)
    option_count = sum(len(e["options"]) for e in elements)
    phases = [
        b["text"]["text"]
        for b in checklist["blocks"]
        if b["block_id"].startswith("checklist-phase")
    ]
    assert phases[0].startswith("*Detection &amp; Triage*") and phases[-1].startswith(
        "*Post-incident*"
    )
    # Investigation has 12 items, so it spans two elements.
    assert sum(1 for e in elements if e["action_id"].startswith("checklist:1:")) == 2

    # Announced in #incidents (the bot joined it) with a link to the channel.
    announcement = slack.texts(slack.announce)
    assert len(announcement) == 1 and f"<#{channel.id}>" in announcement[0]
    assert slack.workspace.bot_user_id in slack.workspace.channels[slack.announce].members

    # The declarer hears back, ephemerally.
    assert any(f"<#{channel.id}>" in t for t in slack.ephemeral_texts(ALICE))

    [incident] = await incidents(slack)
    assert (incident.severity, incident.status, incident.channel_id) == (
        "P1",
        "investigating",
        channel.id,
    )
    assert incident.setup_complete and incident.setup_error is None
    # "502s" and "checkout": the triage guessed, ran its diagnostics and posted them.
    assert await event_types(slack, incident.id) == [
        "declared",
        "scenario_guessed",
        "channel_created",
        *["diagnostic"] * 3,
        "triage_digest",
    ]

    def items(session):  # type: ignore[no-untyped-def]
        return session.scalar(select(func.count()).select_from(ChecklistItem))

    assert await slack.app.services.db.run(items) == option_count


async def test_duplicate_delivery_declares_once(slack: Harness) -> None:
    first = await slack.driver.slash_command(ALICE, slack.general, "declare P2 search is slow")
    # Slack redelivers the same request (same trigger_id), marked as a retry.
    from urllib.parse import urlencode

    from emulator import payloads

    form = payloads.slash_command(
        slack.workspace, ALICE, slack.general, "declare P2 search is slow", "/incident"
    )
    form["trigger_id"] = str(first.trigger_id)
    form["response_url"] = str(first.response_url)
    again = await slack.driver.post(urlencode(form), headers={"X-Slack-Retry-Num": "1"})
    assert again.status == 200
    await slack.settle()

    assert len(slack.incident_channels()) == 1
    assert len(await incidents(slack)) == 1
    assert slack.workspace.count("conversations.create") == 1
    assert len(slack.texts(slack.announce)) == 1


async def test_name_taken_picks_the_next_suffix(slack: Harness) -> None:
    taken = f"incident-{today()}-payments-down"
    slack.workspace.add_channel(taken, members=[BOB], creator=BOB)
    await slack.command("declare P1 payments down")
    names = sorted(c.name for c in slack.incident_channels())
    assert names == [taken, f"{taken}-2"]
    [incident] = await incidents(slack)
    assert incident.channel_name == f"{taken}-2"


async def test_long_unicode_title_makes_a_valid_name(slack: Harness) -> None:
    title = "Ünïcode ✨ " + "very long words " * 8
    await slack.command(f"declare P3 {title}")
    channel = slack.only_incident_channel()
    assert len(channel.name) <= 80
    assert channel.name.startswith(f"incident-{today()}-n-code-very-long-words")


async def test_rate_limited_step_is_retried_not_lost(slack: Harness) -> None:
    slack.emulator.inject_fault("pins.add", status=429, retry_after=1, count=1)
    started = time.monotonic()
    await slack.command("declare P1 login failing")
    channel = slack.only_incident_channel()
    assert len(channel.pins) == 1
    assert time.monotonic() - started >= 1  # Retry-After was honoured
    [incident] = await incidents(slack)
    assert incident.setup_complete


async def test_failed_step_is_repaired_without_duplicates(slack: Harness) -> None:
    # Slack keeps failing the checklist post: the incident and channel exist anyway.
    slack.emulator.inject_fault("chat.postMessage", status=500, count=50)
    await slack.command("declare P1 queue backlog")
    channel = slack.only_incident_channel()
    [incident] = await incidents(slack)
    assert not incident.setup_complete and "posting the checklist" in str(incident.setup_error)
    assert any("recorded, but Slack failed" in t for t in slack.ephemeral_texts(ALICE))
    assert "setup_failed" in await event_types(slack, incident.id)

    slack.emulator.clear_faults()
    await slack.app.services.incidents.resume_unfinished()
    await slack.app.services.incidents.resume_unfinished()

    [incident] = await incidents(slack)
    assert incident.setup_complete
    assert slack.incident_channels() == [channel]
    assert len(channel.pins) == 1
    checklists = slack.checklists(channel.id)
    assert len(checklists) == 1
    assert len(slack.texts(slack.announce)) == 1


async def test_checklist_post_accepted_but_unrecorded_is_adopted(slack: Harness) -> None:
    """Slack took the post but the answer was lost: resume finds it instead of posting twice."""
    slack.emulator.inject_fault("pins.add", status=500, count=50)
    await slack.command("declare P2 cache misses")
    [incident] = await incidents(slack)

    def forget_ts(session):  # type: ignore[no-untyped-def]
        session.get(Incident, incident.id).checklist_ts = "pending"

    await slack.app.services.db.run(forget_ts)
    slack.emulator.clear_faults()
    await slack.app.services.incidents.resume_unfinished()
    channel = slack.only_incident_channel()
    checklists = slack.checklists(channel.id)
    assert len(checklists) == 1 and len(channel.pins) == 1


async def test_modal_declare(slack: Harness) -> None:
    response = await slack.command("")
    assert response.status == 200
    [view] = slack.workspace.open_views(ALICE)
    submitted = await slack.driver.submit_view(
        ALICE,
        view["id"],
        {
            "title": {"title": {"type": "plain_text_input", "value": "Checkout <!channel> down"}},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P0"}}},
            "description": {
                "description": {"type": "plain_text_input", "value": "502s everywhere"}
            },
            "commander": {"commander": {"type": "users_select", "selected_user": BOB}},
        },
    )
    assert submitted.status == 200
    await slack.settle()
    channel = slack.only_incident_channel()
    assert BOB in channel.members
    assert channel.topic["value"].startswith(f"P0 · investigating · IC <@{BOB}>")
    assert "&lt;!channel&gt;" in channel.topic["value"]
    [incident] = await incidents(slack)
    assert incident.role("commander") == BOB and incident.description == "502s everywhere"


async def test_modal_rejects_a_missing_title(slack: Harness) -> None:
    await slack.command("declare")
    [view] = slack.workspace.open_views(ALICE)
    response = await slack.driver.submit_view(
        ALICE,
        view["id"],
        {"title": "   ", "severity": "P1"},
    )
    assert response.body["response_action"] == "errors"
    assert "title" in response.body["errors"]
    await slack.settle()
    assert slack.incident_channels() == []


async def test_bad_signature_and_stale_timestamp_are_rejected(slack: Harness) -> None:
    forged = await slack.driver.slash_command(ALICE, slack.general, "declare P1 x", secret="wrong")
    stale = await slack.driver.slash_command(
        ALICE, slack.general, "declare P1 y", timestamp=int(time.time()) - 600
    )
    await slack.settle()
    assert forged.status == 401 and stale.status == 401
    assert slack.incident_channels() == []
    assert await incidents(slack) == []
