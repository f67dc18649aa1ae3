"""BackgroundWork: the work after the ack runs after it, a few items at a time, and its
failures count."""

from __future__ import annotations

import asyncio

from bot import logs
from bot.errors import UserError
from bot.metrics import Metrics
from handlers.background import MAX_RUNNING, BackgroundWork
from tests.harness import ALICE, Harness


async def test_acks_do_not_wait_for_the_work_after_them(slack: Harness) -> None:
    """Declares whose work waits on Slack: every ack comes back at once, every slot is
    taken and the rest wait for one, and all of them finish once Slack answers.

    Each request's inbox claim is held by a task that does not take a slot: when it
    took one, 16 requests held every slot and their work waited forever for a 17th."""
    await slack.settle()  # the start-up sweep and warm-up
    count = MAX_RUNNING + 4
    holds = [slack.emulator.hold("conversations.create") for _ in range(count)]
    for n in range(count):
        response = await slack.driver.slash_command(ALICE, slack.general, f"declare P3 db {n}")
        assert response.status == 200 and response.acked_in_time, response.elapsed
    await asyncio.wait_for(asyncio.gather(*(h.arrived.wait() for h in holds[:MAX_RUNNING])), 10)
    assert not any(h.arrived.is_set() for h in holds[MAX_RUNNING:])
    for held in holds:
        held.release()
    await slack.settle()
    assert len(slack.incident_channels()) == count


async def test_work_keeps_the_callers_log_context() -> None:
    work = BackgroundWork()
    seen: list[object] = []

    async def record() -> None:
        seen.append(logs.user_id.get())

    logs.user_id.set("U0CALLER")
    work.spawn(record())
    await work.drain()
    await work.close()
    assert seen == ["U0CALLER"]


async def test_failures_are_counted_and_reported() -> None:
    metrics = Metrics()
    work = BackgroundWork(metrics)
    replies: list[str] = []

    async def reply(text: str) -> None:
        replies.append(text)

    async def refused() -> str:
        raise UserError("not in an incident channel")

    async def broken() -> str:
        raise RuntimeError("boom")

    work.answer(refused(), reply, name="status")
    work.answer(broken(), reply, name="status")
    await work.drain()
    await work.close()
    text = metrics.render().decode()
    assert 'firebreak_errors_total{where="status"} 1.0' in text  # the refusal is no failure
    assert 'firebreak_command_seconds_count{command="status"} 2.0' in text
    assert replies[0] == "not in an incident channel"
    assert "boom" not in replies[1] and replies[1]
