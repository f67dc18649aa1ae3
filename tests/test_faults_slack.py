"""Slack answering 500, 429 or not at all for a while, in the middle of an incident.

The emulator misbehaves for a period (every Web API method, as when Slack's edge has
an incident of its own) while responders declare, post updates, change severity and
tick the checklist. Each command either completes or tells its requester clearly that
Slack failed and Firebreak will retry. After the period and a sweep, the event log and
Slack agree: every event that owes a message has it exactly once, the pinned checklist
shows the ticks the database holds, the topic is current, and nothing is left queued.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import select

from bot.incidents.views import CHECKLIST_MARKER
from emulator import SlackEmulator
from storage.models import ChecklistItem, Event, Incident, OutboxMessage
from tests.harness import ALICE, BOB, Harness, running_firebreak

OUTAGE = 4.0  # seconds: longer than the client's own retries of a 5xx (3 tries, jittered)


@pytest_asyncio.fixture
async def sqlite_slack(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_firebreak(f"sqlite:///{tmp_path / 'firebreak.db'}") as harness:
        yield harness


def slack_down(
    emulator: SlackEmulator, seconds: float, *, status: int = 500, retry_after: int = 1
) -> None:
    """Every Web API call fails with `status` for `seconds` (response_urls still work)."""
    emulator.inject_fault("*", status=status, retry_after=retry_after, count=100_000)
    asyncio.get_running_loop().call_later(seconds, emulator.clear_faults)


async def replies_to(slack: Harness, user: str, action: Awaitable[Any]) -> str:
    """Await `action` (a command not yet started) and return every ephemeral `user` got
    because of it."""
    before = len(slack.workspace.ephemerals(user))
    await action
    await slack.settle()
    return "\n".join(str(e.get("text")) for e in slack.workspace.ephemerals(user)[before:])


async def sweep_after_backoff(slack: Harness) -> None:
    """Make every queued message due now (instead of sleeping out the backoff) and sweep."""

    def due_now(session):  # type: ignore[no-untyped-def]
        for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
        ):
            row.next_attempt_at = row.created_at

    await slack.app.services.db.run(due_now)
    await slack.app.services.sweep()
    await slack.settle()  # the triages it started, as work of their own


async def assert_log_and_slack_agree(slack: Harness) -> None:
    """For every event that owes a message, the message exists exactly once."""

    def load(session):  # type: ignore[no-untyped-def]
        incidents = list(session.scalars(select(Incident).order_by(Incident.id)))
        events = list(session.scalars(select(Event).order_by(Event.id)))
        items = list(session.scalars(select(ChecklistItem)))
        queued = list(
            session.scalars(select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None)))
        )
        return incidents, events, items, queued

    incidents, events, items, queued = await slack.app.services.db.run(load)
    assert queued == [], [(q.kind, q.text[:40], q.last_error) for q in queued]
    broadcast = slack.texts(slack.announce)
    for incident in incidents:
        assert incident.setup_complete and incident.setup_error is None, incident.setup_error
        channel = slack.workspace.channels[incident.channel_id]
        texts = slack.texts(channel.id)
        mine = [e for e in events if e.incident_id == incident.id]

        checklists = [
            m
            for m in slack.workspace.messages(channel.id)
            if CHECKLIST_MARKER in [b.get("block_id") for b in m.get("blocks") or []]
        ]
        assert len(checklists) == 1, f"{len(checklists)} checklists"
        assert [p["ts"] for p in channel.pins] == [checklists[0]["ts"]]
        shown_ticked = {
            option["value"]
            for block in checklists[0]["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
            for option in element.get("initial_options", [])
        }
        ticked = {i.key for i in items if i.incident_id == incident.id and i.checked}
        assert shown_ticked == ticked
        assert channel.topic["value"] == incident.topic

        announced = [t for t in broadcast if f"<#{channel.id}>" in t and "incident declared" in t]
        assert len(announced) == 1, announced
        for event in mine:
            p = event.payload
            if event.type == "update":
                assert sum(p["text"] in t for t in texts) == 1, p["text"]
                assert sum(p["text"] in t for t in broadcast) == 1, p["text"]
            elif event.type == "note":
                assert sum(p["text"] in t for t in texts) == 1, p["text"]
        severity_changes = Counter(
            f"from *{e.payload['old']}* to *{e.payload['new']}*"
            for e in mine
            if e.type == "severity"
        )
        for change, n in severity_changes.items():
            assert sum(change in t for t in texts) == n, change
        status_changes = Counter(
            f"set the status to *{e.payload['new']}*" for e in mine if e.type == "status"
        )
        for change, n in status_changes.items():
            assert sum(change in t for t in texts) == n, change
        # The triage: its guess (when a scenario matched, or was switched to) and its
        # digest once each, and the digest's details in its thread.
        guesses = sum(
            e.type == "scenario_switched"
            or (e.type == "scenario_guessed" and e.payload["scenario"] is not None)
            for e in mine
        )
        digests = [
            m for m in slack.workspace.messages(channel.id) if m["text"].startswith("*Triage")
        ]
        assert len(digests) == sum(e.type == "triage_digest" for e in mine), digests
        details = [
            m
            for m in slack.workspace.messages(channel.id)
            if m.get("thread_ts") in {d["ts"] for d in digests} and m["ts"] != m["thread_ts"]
        ]
        # Nothing posted that the log does not account for.
        owed = 1 + sum(e.type in ("update", "note", "severity", "status") for e in mine)
        owed += guesses + len(digests) + len(details)
        assert len(texts) == owed, texts


async def test_a_period_of_500s(sqlite_slack: Harness) -> None:
    """Commands sent during the outage run concurrently and queue behind each other's
    retries: each requester still hears what became of their own command."""
    slack = sqlite_slack
    await slack.command("declare P1 checkout down")  # also Bolt's one token check: see below
    channel = slack.only_incident_channel()
    channel.members.append(BOB)
    ws = slack.workspace

    async def send(text: str, where: str) -> str:
        """Send a command (acked at once) and return the id of its response_url."""
        response = await slack.driver.slash_command(ALICE, where, text)
        assert response.status == 200 and response.acked_in_time
        return str(response.response_url).rsplit("/", 1)[-1]

    # Slack fails everything for longer than the client's own retries (3 tries, backoff
    # with jitter) while a second incident is declared and the first one is worked.
    slack_down(slack.emulator, OUTAGE)
    started = time.monotonic()
    before = len(ws.ephemerals(ALICE))
    declare = await send("declare P2 payments slow", slack.general)
    sent = {
        "rolling back 1.4.2": await send("update rolling back 1.4.2", channel.id),
        "changed the severity": await send("severity P0", channel.id),
        "pods OOMKilled": await send("note pods OOMKilled", channel.id),
    }
    await slack.driver.toggle_checkbox(
        BOB, channel.id, channel.pins[0]["ts"], "checklist:0:0", ["triage.acknowledge"]
    )
    await slack.settle()
    replies = [str(e.get("text")) for e in ws.ephemerals(ALICE)[before:]]
    assert not [r for r in replies if "Something went wrong" in r], replies
    assert ws.response_hooks[declare].uses == 1
    assert any("Slack failed while creating the channel" in r for r in replies), replies
    for needle, hook in sent.items():
        # Each shows in the channel, or its requester was told (the commands queue behind
        # each other's retries, so the last may run after Slack is back).
        shown = any(needle in t for t in slack.texts(channel.id))
        assert shown or ws.response_hooks[hook].uses == 1, needle
    assert any("Saved, but Slack did not take the message yet" in r for r in replies)

    await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))
    before = len(ws.ephemerals(ALICE))
    await slack.command("status monitoring", channel=channel.id)
    assert ws.ephemerals(ALICE)[before:] == []  # Slack is back: at once, no warning
    await sweep_after_backoff(slack)
    await assert_log_and_slack_agree(slack)


async def test_a_period_of_429s(sqlite_slack: Harness) -> None:
    """Rate limited with Retry-After: the commands wait it out and complete."""
    slack = sqlite_slack
    await slack.command("declare P2 search slow")
    channel = slack.only_incident_channel()
    slack_down(slack.emulator, 1.5, status=429, retry_after=1)
    for text in ("update reindexing", "severity P1", "note cache cold", "status identified"):
        reply = await replies_to(slack, ALICE, slack.command(text, channel=channel.id))
        assert "Something went wrong" not in reply
    await sweep_after_backoff(slack)
    await assert_log_and_slack_agree(slack)
    assert slack.workspace.count("chat.postMessage", ok=False) > 0  # the 429s did happen


async def test_a_post_that_times_out_but_lands_is_not_doubled(sqlite_slack: Harness) -> None:
    """Slack takes the update but answers after the client's 10 s timeout: the requester
    hears Slack did not confirm it, and the retry finds the post instead of repeating it."""
    slack = sqlite_slack
    await slack.command("declare P2 queue backlog")
    channel = slack.only_incident_channel()
    # Late, then carried out. aiohttp rounds a 10 s timeout up to the next whole second,
    # so only an answer after 11 s is sure to be too late.
    slack.emulator.inject_fault("chat.postMessage", delay=11.2)
    reply = await replies_to(
        slack, ALICE, slack.command("update draining the queue", channel=channel.id)
    )
    assert "request_timeout" in reply and "retry" in reply, reply
    await asyncio.sleep(1.5)  # the emulator finishes the late post
    assert sum("draining the queue" in t for t in slack.texts(channel.id)) == 1
    await sweep_after_backoff(slack)
    await assert_log_and_slack_agree(slack)


async def test_a_slow_post_does_not_strand_the_next_command(sqlite_slack: Harness) -> None:
    """Slack is slow on the note; an update made meanwhile finds the note's message
    being sent and leaves its own messages to that sender, which must then send them
    too rather than leave them for the sweep."""
    slack = sqlite_slack
    await slack.command("declare P2 search slow")
    channel = slack.only_incident_channel()
    slack.emulator.inject_fault("chat.postMessage", delay=1.0)
    note = asyncio.ensure_future(slack.driver.slash_command(ALICE, channel.id, "note first"))

    def claimed(session):  # type: ignore[no-untyped-def]
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.text.contains("first")))
        return any(r.claimed_by for r in row)

    while not await slack.app.services.db.run(claimed):
        await asyncio.sleep(0.02)
    await slack.driver.slash_command(ALICE, channel.id, "update second")
    await note
    await slack.settle()  # no sweep
    assert any("first" in t for t in slack.texts(channel.id))
    assert any("second" in t for t in slack.texts(channel.id))
    assert any("second" in t for t in slack.texts(slack.announce))


async def test_slack_down_for_every_step_of_a_declare(sqlite_slack: Harness) -> None:
    """Each declare step fails in turn (Slack's own `fatal_error`, which the client does
    not retry); the saga stops, says where, and the sweep resumes it where it stopped."""
    slack = sqlite_slack
    steps = ["conversations.create", "conversations.invite", "chat.postMessage", "pins.add"]
    for number, method in enumerate(steps):
        slack.emulator.inject_fault(method, error="fatal_error")
        reply = await replies_to(slack, ALICE, slack.command(f"declare P2 outage number {number}"))
        assert "Slack failed while" in reply and "nothing will be created twice" in reply, reply
        await sweep_after_backoff(slack)
    await sweep_after_backoff(slack)
    assert len(slack.incident_channels()) == len(steps)
    assert slack.workspace.count("conversations.create") == len(steps)
    await assert_log_and_slack_agree(slack)


async def test_the_first_command_after_a_start_during_a_slack_outage(
    sqlite_slack: Harness,
) -> None:
    """Bolt checks the bot token (auth.test) on the first request after a start; Slack
    failing that call must not make it tell the user to reinstall the app."""
    slack = sqlite_slack
    slack_down(slack.emulator, OUTAGE)
    reply = await replies_to(slack, ALICE, slack.command("declare P1 checkout down"))
    assert "reinstall" not in reply, reply
    assert "Slack" in reply, reply
