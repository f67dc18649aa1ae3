"""Work done after the ack, on an event loop of its own, tracked so no exception disappears."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.errors import UserError
from bot.gateway import ChatError
from bot.metrics import Metrics
from handlers.replies import failure_text
from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], Awaitable[None]]
Reply = Callable[[str], Awaitable[object]]
T = TypeVar("T")

# Work items running at once; the rest wait their turn in order. Unbounded, a burst of
# commands would queue hundreds of database units behind the thread pool until they hit
# the database deadline and were reported as an outage.
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
    """Runs coroutines on a worker thread's event loop; logs and reports their failures.

    Slack wants an answer within 3 seconds, so listeners ack and hand the slow part
    here. It runs on a loop of its own because on the ack's loop a burst of commands
    fills the ready queue with their work, and every ack waits behind all of it
    (measured in bench/ack_latency.py: p50 1.9 s and acks over 3 s at 50 concurrent
    commands). On its own loop the work competes with the acks only for the GIL, which
    a waiting thread gets within the interpreter's switch interval.

    The coroutines handed over must not hold objects bound to the caller's loop; the
    services qualify (the database runs in threads, Slack clients open a session per
    call). Tests and shutdown call `drain()` to wait for everything handed over.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._tasks: set[asyncio.Task[Any]] = set()  # touched on the worker thread only
        self._kept: set[asyncio.Task[None]] = set()  # likewise
        self._loop = asyncio.new_event_loop()
        self._running = asyncio.Semaphore(MAX_RUNNING)  # used on the worker loop only
        self._thread = threading.Thread(target=self._serve, name="firebreak-work", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Cancel what is still running and let it unwind, as asyncio.run does: a task
            # dropped mid-call would leave its sockets open and its coroutine unfinished.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def spawn(self, work: Coroutine[Any, Any, Any], on_error: OnError | None = None) -> None:
        """Start `work` on the worker loop, with the caller's context (log fields).

        During a dispatch with a current `Handoff`, the work is collected there instead.
        """
        context = contextvars.copy_context()
        handoff = HANDOFF.get()
        if handoff is not None:
            context.run(HANDOFF.set, None)  # what the work itself spawns, it starts
            handoff.items.append((work, on_error, context))
            return

        self._loop.call_soon_threadsafe(self._start, work, on_error, context)

    def _start(
        self,
        work: Coroutine[Any, Any, Any],
        on_error: OnError | None,
        context: contextvars.Context,
    ) -> None:
        task = self._loop.create_task(self._guard(work, on_error), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the worker loop and return its result to the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _guard(self, work: Coroutine[Any, Any, Any], on_error: OnError | None) -> None:
        try:
            async with self._running:
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

        handoff = HANDOFF.get()
        if handoff is not None:
            handoff.wrapped.append(work)
        self.spawn(work_then_reply(), report)

    def keep(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a loop that never ends) until `stop_kept`; `drain` does not wait for it."""
        self._loop.call_soon_threadsafe(lambda: self._kept.add(self._loop.create_task(work)))

    async def stop_kept(self) -> None:
        """Cancel what `keep` runs."""

        async def cancel() -> None:
            for task in self._kept:
                task.cancel()
            await asyncio.gather(*self._kept, return_exceptions=True)
            self._kept.clear()

        if self._thread.is_alive():
            await self.run(cancel())

    def start(self, handoff: Handoff) -> None:
        """Start what a dispatch handed over, as `spawn` would have."""
        for work, on_error, context in handoff.items:
            self._loop.call_soon_threadsafe(self._start, work, on_error, context)
        handoff.items.clear()
        handoff.wrapped.clear()

    async def complete(self, handoff: Handoff) -> None:
        """Run what a dispatch handed over and wait for all of it (on the worker loop)."""
        tasks = [
            self._loop.create_task(self._guard(work, on_error), context=context)
            for work, on_error, context in handoff.items
        ]
        handoff.items.clear()
        handoff.wrapped.clear()
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until everything handed over so far, and what it started, has finished."""

        async def settle() -> None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

        if self._thread.is_alive():
            await self.run(settle())

    def close(self) -> None:
        """Stop the worker loop (after `drain()`); what is still running is cancelled."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
