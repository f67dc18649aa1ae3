"""A replica killed while posting: the survivor takes its message over within seconds.

Two real `firebreak serve` processes on one Postgres and the Slack emulator. Replica
A dies (kill -9) while Slack holds its post; replica B, asked for the next message,
waits for A's claim to lapse (seconds, since A no longer renews it), finds A's post
by its marker instead of doubling it, sends its own, and tells its author the truth.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from bot.incidents.outbox import CLAIM_TTL
from emulator import SlackDriver, SlackEmulator
from runbooks import BUNDLED
from storage.migrate import upgrade_database
from storage.models import OutboxMessage
from tests.databases import fresh_database
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import ServeProcess

pytestmark = pytest.mark.slow

HOLD = 3.0  # Slack answers the post this late; A is dead by then


async def wait_for(predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def outbox(url: str) -> list[tuple[str, str | None, bool]]:
    """(text, holder, settled) of every row."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    OutboxMessage.text,
                    OutboxMessage.claimed_by,
                    OutboxMessage.delivered_at.is_not(None) | OutboxMessage.failed_at.is_not(None),
                )
            )
            return [(text, holder, bool(settled)) for text, holder, settled in rows]
    finally:
        engine.dispose()


def claimed(url: str, text: str) -> bool:
    return any(text in row and holder for row, holder, _ in outbox(url))


async def test_a_replica_killed_while_posting_is_taken_over(tmp_path: Path) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE, workspace.bot_user_id])
    with fresh_database("postgres", tmp_path) as url:
        upgrade_database(url)
        async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as emulator:
            a, b = (
                ServeProcess(
                    api_url=emulator.api_url,
                    database_url=url,
                    runbooks=BUNDLED,
                    log=tmp_path / f"serve-{name}.log",
                )
                for name in "ab"
            )
            await asyncio.gather(a.start(), b.start())
            try:
                to_a = SlackDriver(f"{a.url}/slack/events", SIGNING_SECRET, workspace)
                to_b = SlackDriver(f"{b.url}/slack/events", SIGNING_SECRET, workspace)
                await to_a.slash_command(ALICE, general.id, "declare P1 checkout down")
                await wait_for(
                    lambda: any(c.pins for c in workspace.channels.values()), 20, "declared"
                )
                channel = next(c for c in workspace.channels.values() if c.pins)
                await wait_for(
                    lambda: all(settled for _, _, settled in outbox(url)), 20, "declare posted"
                )

                def shown(text: str) -> int:
                    return sum(text in str(m.get("text")) for m in workspace.messages(channel.id))

                emulator.inject_fault("chat.postMessage", delay=HOLD)
                await to_a.slash_command(ALICE, channel.id, "update failing over to eu-west")
                await wait_for(lambda: claimed(url, "failing over"), 10, "A claimed its post")
                await asyncio.sleep(0.3)  # the post leaves A and reaches Slack
                await a.kill()

                replies_before = len(workspace.ephemerals(ALICE))
                await to_b.slash_command(ALICE, channel.id, "note traffic drained")
                # Within A's short claim (and room for a loaded machine), not the 60 s of
                # before: B waits for the claim to lapse, then takes the row over.
                limit = CLAIM_TTL.total_seconds() + 15
                await wait_for(lambda: shown("traffic drained") == 1, limit, "B posted the note")
                await asyncio.sleep(1)  # room for a wrong second post, or B's answer, to show
            finally:
                await asyncio.gather(a.kill(), b.kill())

    assert shown("failing over to eu-west") == 1  # A's post landed; B found it, not doubled
    messages = [str(m.get("text")) for m in workspace.messages(channel.id)]
    assert [i for i, t in enumerate(messages) if "failing over" in t] < [
        i for i, t in enumerate(messages) if "traffic drained" in t
    ]
    answers = [str(e.get("text")) for e in workspace.ephemerals(ALICE)[replies_before:]]
    assert not [t for t in answers if "Slack did not take" in t or "queued" in t], answers
