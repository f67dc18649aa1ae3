"""Work done after the ack, as tasks on the process's one event loop, tracked so no
exception disappears and shutdown can unwind it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bot.errors import UserError
from bot.gateway import ChatError
from bot.metrics import Metrics
from handlers.replies import failure_text
from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], Awaitable[None]]
Reply = Callable[[str], Awaitable[object]]

# Work items running at once; the rest wait their turn in order. Unbounded, a burst of
# commands would queue hundreds of database units behind the thread pool until they hit
# the database deadline and were reported as an outage, and every ack would wait behind
# all of their steps on the loop.
MAX_RUNNING = 16


@dataclass
class Handoff:
    """The work listeners handed over while one request was dispatched.

    While a handoff is current (`HANDOFF`), `BackgroundWork` collects work
    instead of starting it, so the inbox can store the request before its work
    runs (handlers/inbox.py): then the work runs here, or the request is
    replayed by a worker and this copy is discarded.
    """

    items: list[tuple[Coroutine[Any, Any, Any], OnError | None, contextvars.Context]] = field(
        default_factory=list
    )
    # Coroutines an item wraps: discarding the item must close them too.
    wrapped: list[Coroutine[Any, Any, Any]] = field(default_factory=list)

    def discard(self) -> None:
        for work, _, _ in self.items:
            work.close()
        for work in self.wrapped:
            work.close()
        self.items.clear()
        self.wrapped.clear()


HANDOFF: contextvars.ContextVar[Handoff | None] = contextvars.ContextVar(
    "firebreak_handoff", default=None
)


class BackgroundWork:
    """Runs coroutines as tasks on the app's event loop; logs and reports their failures.

    Slack wants an answer within 3 seconds, so listeners ack and hand the slow part
    here. It runs on the same loop as the acks, the one loop of the process, so every
    client (the Slack client's shared HTTP session, the paging clients) belongs to one
    loop. What keeps the acks fast is that at most `MAX_RUNNING` items run at once:
    the rest wait for a slot, parked on a semaphore instead of in the loop's ready
    queue, so an ack waits behind at most that many steps of work (an earlier version
    let every item run and acks queued behind all of them: docs/performance.md).

    Every task is tracked: tests and shutdown call `drain()` to wait for everything
    handed over, and `close()` cancels what is left and lets it unwind.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._kept: set[asyncio.Task[None]] = set()
        self._running = asyncio.Semaphore(MAX_RUNNING)  # bound to the loop on first use

    def spawn(self, work: Coroutine[Any, Any, Any], on_error: OnError | None = None) -> None:
        """Start `work` when a slot is free, with the caller's context (log fields).

        During a dispatch with a current `Handoff`, the work is collected there instead.
        """
        context = contextvars.copy_context()
        handoff = HANDOFF.get()
        if handoff is not None:
            context.run(HANDOFF.set, None)  # what the work itself spawns, it starts
            handoff.items.append((work, on_error, context))
            return
        self._track(self._guard(work, on_error), context)

    def supervise(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start `work`, which oversees other work (it holds the inbox claim that work
        runs under), at once: waiting for a slot, it would hold its claim unrenewed, or
        hold a slot that the work it oversees needs."""
        return self._track(self._guard(work, None, queued=False))

    def _track(
        self, work: Coroutine[Any, Any, None], context: contextvars.Context | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(
        self, work: Coroutine[Any, Any, Any], on_error: OnError | None, *, queued: bool = True
    ) -> None:
        try:
            if queued:
                async with self._running:
                    await work
            else:
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
        finally:
            work.close()  # a no-op once it ran; closes it if cancelled before it started

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

        handoff = HANDOFF.get()
        if handoff is not None:
            handoff.wrapped.append(work)
        self.spawn(work_then_reply(), report)

    def keep(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a loop that never ends) until `stop_kept`; `drain` does not wait for it."""
        self._kept.add(asyncio.get_running_loop().create_task(work))

    async def stop_kept(self) -> None:
        """Cancel what `keep` runs, and let it unwind."""
        for task in self._kept:
            task.cancel()
        await asyncio.gather(*self._kept, return_exceptions=True)
        self._kept.clear()

    def start(self, handoff: Handoff) -> None:
        """Start what a dispatch handed over, as `spawn` would have."""
        for work, on_error, context in handoff.items:
            self._track(self._guard(work, on_error), context)
        handoff.items.clear()
        handoff.wrapped.clear()

    async def complete(self, handoff: Handoff) -> None:
        """Run what a dispatch handed over and wait for all of it.

        Cancelled, it cancels that work and returns once the work has unwound."""
        tasks = [
            self._track(self._guard(work, on_error), context)
            for work, on_error, context in handoff.items
        ]
        handoff.items.clear()
        handoff.wrapped.clear()
        # Cancelling a gather cancels each task, and it returns once they have unwound.
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until everything handed over so far, and what it started, has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is still running (after `drain()`) and let it unwind, as
        `asyncio.run` does: a task dropped mid-call would leave its sockets open."""
        await self.stop_kept()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
