"""Work done after the ack, tracked so no exception disappears silently."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.errors import UserError
from bot.gateway import ChatError
from bot.metrics import Metrics
from handlers.replies import failure_text
from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], Awaitable[None]]
Reply = Callable[[str], Awaitable[object]]


class BackgroundWork:
    """Runs coroutines as tasks; logs and reports their failures; can be drained.

    Slack wants an answer within 3 seconds, so listeners ack and hand the slow
    part here. Tests and shutdown call `drain()` to wait for it.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._metrics = metrics or Metrics()

    def spawn(self, work: Coroutine[Any, Any, Any], on_error: OnError | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work, on_error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, Any], on_error: OnError | None) -> None:
        try:
            await work
        except Exception as exc:
            if isinstance(exc, UserError):  # an answer for the user, not a failure
                log.info("background work refused: %s", exc)
            elif isinstance(exc, DatabaseUnavailable | ChatError):  # outages, reported as such
                log.warning("background work failed: %s", exc)
            else:
                log.exception("background work failed")
            if on_error is not None:
                try:
                    await on_error(exc)
                except ChatError as chat_error:  # e.g. a channel from a forged payload
                    log.warning("could not report a background failure: %s", chat_error)
                except Exception:
                    log.exception("could not report a background failure to the user")

    def answer(self, work: Coroutine[Any, Any, str], reply: Reply, *, name: str) -> None:
        """Run `work` and send what it returns, or what went wrong, through `reply`.

        `name` (a bounded label: a subcommand or a form) times the work in
        `firebreak_command_seconds` and counts its failures in `firebreak_errors_total`.
        """

        async def work_then_reply() -> None:
            started = time.perf_counter()
            try:
                text = await work
            finally:
                self._metrics.command_seconds.labels(name).observe(time.perf_counter() - started)
            if text:
                await reply(text)

        async def report(exc: BaseException) -> None:
            if not isinstance(exc, UserError):
                self._metrics.errors.labels(name).inc()
            await reply(failure_text(exc))

        self.spawn(work_then_reply(), report)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
