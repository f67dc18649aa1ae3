"""BackgroundWork: the work after the ack runs away from the acks, and its failures count."""

from __future__ import annotations

import threading
import time

from bot import logs
from bot.errors import UserError
from bot.metrics import Metrics
from handlers.background import BackgroundWork
from tests.harness import Harness


async def test_acks_do_not_wait_for_busy_background_work(slack: Harness) -> None:
    """Work that hogs its loop (here: blocks it for 2 s) must not hold up an ack."""
    released = threading.Event()

    async def hog() -> None:
        released.wait(timeout=2)  # blocks the worker loop, as CPU-heavy work would

    slack.app.background.spawn(hog())
    started = time.monotonic()
    response = await slack.driver.slash_command("U0ALICE", slack.general, "help")
    answered_while_blocked = not released.is_set() and time.monotonic() - started < 2
    released.set()
    await slack.settle()
    assert response.status == 200
    assert answered_while_blocked, f"the ack took {response.elapsed:.2f}s"


async def test_work_keeps_the_callers_log_context() -> None:
    work = BackgroundWork()
    seen: list[object] = []

    async def record() -> None:
        seen.append(logs.user_id.get())

    logs.user_id.set("U0CALLER")
    work.spawn(record())
    await work.drain()
    work.close()
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
    work.close()
    text = metrics.render().decode()
    assert 'firebreak_errors_total{where="status"} 1.0' in text  # the refusal is no failure
    assert 'firebreak_command_seconds_count{command="status"} 2.0' in text
    assert replies[0] == "not in an incident channel"
    assert "boom" not in replies[1] and replies[1]
