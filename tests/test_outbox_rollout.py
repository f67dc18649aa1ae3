"""A rolling update across migration 0011 (cards instead of Slack's blocks in the
outbox) loses no message: rows an older replica queues as `post_blocks` go out as
they would have, cards it marks done without sending are sent by the next sweep,
and a kind this release does not know waits for a replica that does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.messages import Button, Buttons, Card, Note, Section
from storage import outbox as store
from storage.models import OutboxMessage
from tests import test_reminders
from tests.harness import Harness, running_firebreak
from tests.test_reminders import ManualClock

clock = test_reminders.clock

OLD_RELEASE_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Preview* of the update"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "drafted by <@U0ALICE>"}]},
    {
        "type": "actions",
        "block_id": "statuspage-7",
        "elements": [
            {
                "type": "button",
                "action_id": "statuspage_publish",
                "text": {"type": "plain_text", "text": "Publish"},
                "style": "primary",
                "value": "7",
            },
            {
                "type": "button",
                "action_id": "statuspage_cancel",
                "text": {"type": "plain_text", "text": "Cancel"},
                "value": "7",
            },
        ],
    },
]


@pytest.fixture
async def slack(database_url: str, clock: ManualClock) -> AsyncIterator[Harness]:
    async with running_firebreak(database_url, clock=clock) as harness:
        await harness.app.scheduler.shutdown()  # the test runs the sweep itself
        yield harness


async def incident_channel(slack: Harness) -> tuple[int, str]:
    await slack.command("declare P2 checkout errors")
    channel = slack.only_incident_channel()
    incident_id = await slack.app.services.db.run(
        lambda s: s.scalar(select(OutboxMessage.incident_id).limit(1))
    )
    return int(incident_id), channel.id


async def queue(slack: Harness, incident_id: int, channel: str, kind: str, text: str) -> int:
    def write(session: Any) -> int:
        row = store.enqueue(
            session, incident_id, kind, slack.app.services.clock.now(), channel=channel, text=text
        )
        session.flush()
        return int(row.id)

    return int(await slack.app.services.db.run(write))


def without_id(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "block_id"}


def posted(slack: Harness, channel: str, text: str) -> list[dict[str, Any]]:
    return [m for m in slack.workspace.messages(channel) if text in m.get("text", "")]


async def test_a_row_an_older_replica_queued_as_blocks_goes_out_as_it_would_have(
    slack: Harness,
) -> None:
    incident_id, channel = await incident_channel(slack)
    await queue(slack, incident_id, channel, "post_blocks", json.dumps(OLD_RELEASE_BLOCKS))
    await slack.app.services.outbox.deliver(incident_id)
    [message] = posted(slack, channel, "*Preview* of the update")
    sent = message["blocks"]
    assert sent[0]["block_id"].startswith("fb-out-")  # the marker a retry looks for
    # Slack names the blocks that came without an ID; compare the rest as sent.
    assert [without_id(b) for b in sent] == [without_id(b) for b in OLD_RELEASE_BLOCKS]
    assert sent[2]["block_id"] == "statuspage-7"


async def test_a_card_an_older_replica_marked_done_unsent_is_sent_by_the_sweep(
    slack: Harness, clock: ManualClock
) -> None:
    incident_id, channel = await incident_channel(slack)
    await slack.app.services.outbox.deliver(None)
    card = Card.of(
        Section("*Triage of Deployment failure*"),
        Note("output in the thread"),
        Buttons((Button("Propose rollback", "triage_offer:rollback", "rollback checkout"),)),
    )
    row_id = await queue(slack, incident_id, channel, "card", card.to_json())
    # What a replica of the release before 0011 does with a kind it does not know.
    await slack.app.services.db.run(store.delivered, row_id, None, clock.now())

    await slack.app.services.outbox.deliver(None)
    await slack.app.services.outbox.deliver(None)  # and again: it goes out once
    [message] = posted(slack, channel, "*Triage of Deployment failure*")
    assert message["blocks"][-1]["elements"][0]["action_id"] == "triage_offer:rollback"
    [row] = await slack.app.services.db.run(
        lambda s: list(s.scalars(select(OutboxMessage).where(OutboxMessage.id == row_id)))
    )
    assert row.delivered_ts == message["ts"]


async def test_a_card_dropped_long_ago_is_not_resent(slack: Harness, clock: ManualClock) -> None:
    """Only a rolling update's span back: an old card without a ts stays as it is."""
    incident_id, channel = await incident_channel(slack)
    row_id = await queue(slack, incident_id, channel, "card", Card.text("*old news*").to_json())
    await slack.app.services.db.run(store.delivered, row_id, None, clock.now())
    clock.advance(timedelta(hours=1))
    await slack.app.services.outbox.deliver(None)
    assert posted(slack, channel, "*old news*") == []


async def test_a_kind_from_a_newer_release_waits_instead_of_being_marked_done(
    slack: Harness,
) -> None:
    incident_id, channel = await incident_channel(slack)
    row_id = await queue(slack, incident_id, channel, "hologram", "{}")
    await slack.app.services.outbox.deliver(incident_id)
    [row] = await slack.app.services.db.run(
        lambda s: list(s.scalars(select(OutboxMessage).where(OutboxMessage.id == row_id)))
    )
    assert row.delivered_at is None and row.failed_at is None
    assert row.last_error == "unknown_kind"
