"""Inbox claims outlive the work they guard, and a holder that loses its claim stops.

`firebreak serve` without worker processes stores each acked request already
claimed by itself, runs its work, and sweeps the inbox for requests whose claim
lapsed (their process died). Claims here last 1.5 s instead of 10 s, so the same
races play out within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from handlers import inbox
from handlers.background import MAX_RUNNING
from storage import inbox as store
from tests.harness import ALICE, Harness, running_firebreak
from tests.test_inbox import handled
from tests.test_observability import scrape

CLAIM_TTL = timedelta(seconds=1.5)


@pytest.fixture(autouse=True)
def short_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "CLAIM_TTL", CLAIM_TTL)
    monkeypatch.setattr(inbox, "RENEW_SECONDS", 0.3)
    monkeypatch.setattr(inbox, "ORPHAN_POLL_SECONDS", (0.1, 0.2))


async def declares_run(slack: Harness) -> float:
    """How many times a declare's work ran (each run is timed once)."""
    prefix = 'firebreak_command_seconds_count{command="declare"} '
    text = await scrape(slack)
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_request_waiting_for_a_slot_is_not_replayed_beside_itself(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every slot is busy with work waiting on Slack, so a declare acked now waits longer
    than its claim lasts. Its claim was renewed only once its work had a slot: the
    process's own sweep for orphans replayed it meanwhile, and the declare ran twice,
    once per copy (under load in CI, test_hostile_payloads' rig declared twice)."""
    caplog.set_level(logging.WARNING, logger="handlers.inbox")
    async with running_firebreak(database_url) as slack:
        await slack.settle()  # the start-up sweep and warm-up
        busy = [slack.emulator.hold("chat.postEphemeral", text="busy") for _ in range(MAX_RUNNING)]
        chat = slack.app.services.chat
        for n in range(MAX_RUNNING):
            slack.app.background.spawn(chat.post_ephemeral(slack.general, ALICE, f"busy {n}"))
        await asyncio.wait_for(asyncio.gather(*(h.arrived.wait() for h in busy)), 10)

        response = await slack.driver.slash_command(
            ALICE, slack.general, "declare P2 checkout errors"
        )
        assert response.acked_in_time
        await asyncio.sleep(3 * CLAIM_TTL.total_seconds())  # the sweep polled a dozen times
        assert slack.incident_channels() == []  # still waiting for a slot
        for held in busy:
            held.release()
        await handled(slack.app)

        slack.only_incident_channel()
        assert await declares_run(slack) == 1
        assert logged(caplog, "took over") == []


async def test_a_holder_that_lost_its_claim_stops_its_work(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another worker takes the request over while its work waits on Slack (this
    process stalled past the claim, say). The first holder stops instead of finishing
    beside the new one, and the request is done once, by the one holding the claim."""
    caplog.set_level(logging.WARNING, logger="handlers.inbox")
    async with running_firebreak(database_url) as slack:
        await slack.settle()
        creating = slack.emulator.hold("conversations.create")
        await slack.driver.slash_command(ALICE, slack.general, "declare P2 checkout errors")
        await asyncio.wait_for(creating.arrived.wait(), 10)

        taken: list[store.Claimed] = []
        while not taken:  # Postgres skips the row while a renewal has it locked
            later = datetime.now(UTC) + CLAIM_TTL + timedelta(seconds=1)
            taken = await slack.app.services.db.run(
                store.claim, "other-worker", later, CLAIM_TTL, 10
            )
        for _ in range(100):  # the holder's next renewal finds the claim gone
            if logged(caplog, "stopped its work"):
                break
            await asyncio.sleep(0.05)
        assert logged(caplog, "stopped its work"), "the first holder did not stop"
        creating.release()
        # The other worker never comes back: its claim lapses and the sweep replays it.
        await handled(slack.app)

        channel = slack.only_incident_channel()
        assert len(slack.checklists(channel.id)) == 1
        answers = [t for t in slack.ephemeral_texts(ALICE) if t.startswith("Declared *P2*")]
        assert len(answers) == 1, answers
        assert taken[0].token > 1
