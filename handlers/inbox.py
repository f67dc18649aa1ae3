"""The durable inbox: an acked request that hands over work is stored before it is answered.

Bolt's listeners stay where requests are handled. `acknowledge` dispatches a
request through the Bolt app with a `Handoff` current, so the work a listener
hands to `BackgroundWork` is collected instead of started. If there is any,
the raw request is written to the inbox table before the ack leaves:

- `firebreak serve` handling its own work (no worker processes) stores the
  row already claimed by itself, runs the collected work at once and deletes
  the row when it is done;
- with worker processes, the serve process discards the collected work and a
  worker claims the row and replays the stored body through the same Bolt
  app, whose listeners hand over the same work, which the worker then runs.

Either way a process that dies after the ack leaves the row behind with a
claim that lapses (it is renewed only while its holder lives), and any worker
replays it. The work is idempotent per request (services key it by trigger_id,
view id or action_ts), so a replay finishes what the dead process began.

A claim outlives the work it guards: it is renewed from the moment the row is
stored (or claimed) until the work has finished, not only once the work got a
slot to run in. And it is fenced: a holder that could not renew it before it
lapsed, or found it taken over, cancels its work, so a request never runs in
two places at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.clock import Clock, SystemClock
from handlers.background import HANDOFF, BackgroundWork, Handoff
from storage import inbox as store
from storage.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

# A claim lapses this long after its holder stopped renewing it (a crash, a pause).
CLAIM_TTL = timedelta(seconds=10)
RENEW_SECONDS = 3.0
# Requests replayed this often without finishing are dropped (and logged): a request
# that crashes every worker must not crash them forever.
MAX_ATTEMPTS = 5
MAX_RUNNING = 16  # requests a worker handles at once
# A worker's wait between empty polls: first, longest. `serve` doing its own work only
# looks for what dead processes left behind, so it polls less often.
POLL_SECONDS = (0.02, 0.2)
ORPHAN_POLL_SECONDS = (1.0, 2.0)
# Slack accepts posts to a command's response_url for 30 minutes.
RESPONSE_URL_TTL = timedelta(minutes=30)
# How long the ack waits for the inbox write: within Slack's 3 s, whatever the database.
STORE_SECONDS = 1.5
SOCKET_MODE = "application/x-socket-mode+json"  # content type of a stored Socket Mode payload

# When the request being replayed reached Firebreak (unset while acking: now).
RECEIVED_AT: ContextVar[datetime | None] = ContextVar("firebreak_received_at", default=None)


def received_at(clock: Clock) -> datetime:
    """When the request being handled reached Firebreak."""
    return RECEIVED_AT.get() or clock.now()


def replaying() -> bool:
    return RECEIVED_AT.get() is not None


class Inbox:
    def __init__(
        self,
        *,
        bolt: AsyncApp,
        db: Database,
        clock: Clock,
        background: BackgroundWork,
        owner: str,
        local: bool,
    ) -> None:
        self._bolt = bolt
        self._db = db
        self._clock = clock  # the requests' arrival times, which tests move
        # Claims measure how long a process has been silent: real time, always.
        self._claims = SystemClock()
        self._background = background
        self._owner = owner
        self._local = local  # this process runs the work of the requests it acks
        self._parent = os.getppid()
        self._arrivals = GroupCommit(self._store, STORE_SECONDS)

    async def _store(self, arrivals: list[store.Arrival], limit: float) -> list[store.Claimed]:
        return await self._db.run_within(
            limit,
            store.add,
            arrivals,
            owner=self._owner if self._local else None,
            claimed_until=self._claims.now() + CLAIM_TTL,
        )

    async def acknowledge(self, request: AsyncBoltRequest) -> BoltResponse:
        """Dispatch through Bolt for the ack; store the request if it handed over work."""
        handoff = Handoff()
        token = HANDOFF.set(handoff)
        try:
            response = await self._bolt.async_dispatch(request)
        finally:
            HANDOFF.reset(token)
        if not handoff.items:
            return response
        held_until = asyncio.get_running_loop().time() + CLAIM_TTL.total_seconds()
        try:
            stored = await self._arrivals.add(_arrival(request, self._clock.now()))
        except Exception as exc:
            # Not durable, but not silent: the work meets the same outage and tells the
            # requester so, as it did before the inbox.
            if isinstance(exc, DatabaseUnavailable):
                log.warning("could not store an acked request (%s); running it unstored", exc)
            else:
                log.exception("could not store an acked request; running it unstored")
            self._background.start(handoff)
            return response
        if self._local:
            self._background.supervise(self._complete(stored, handoff, held_until))
        else:
            handoff.discard()
        return response

    async def work(self, *, exit_with_parent: bool = False) -> None:
        """Claim stored requests and replay them, until cancelled.

        Every process that runs work runs this: a worker process for everything,
        `serve` without workers for what dead processes left behind.
        """
        running: set[asyncio.Task[None]] = set()
        first, longest = ORPHAN_POLL_SECONDS if self._local else POLL_SECONDS
        wait = first
        while True:
            if exit_with_parent and os.getppid() != self._parent:
                log.warning("the serve process is gone; this worker stops")
                os._exit(1)
            claimed: list[store.Claimed] = []
            held_until = asyncio.get_running_loop().time() + CLAIM_TTL.total_seconds()
            if len(running) < MAX_RUNNING:
                try:
                    claimed = await self._db.run(
                        store.claim,
                        self._owner,
                        self._claims.now(),
                        CLAIM_TTL,
                        MAX_RUNNING - len(running),
                    )
                except DatabaseUnavailable as exc:
                    log.warning("could not poll the inbox: %s", exc)
            for request in claimed:
                task = self._background.supervise(self._replay(request, held_until))
                running.add(task)
                task.add_done_callback(running.discard)
            if claimed:
                wait = first
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(wait)
                wait = min(wait * 2, longest)

    async def close(self) -> None:
        await self._db.close(dispose=False)  # the engine is the services' to dispose

    async def waiting(self) -> int:
        """Stored requests not yet handled (for tests and /readyz-style checks)."""
        return await self._db.run(store.waiting)

    async def _replay(self, request: store.Claimed, held_until: float) -> None:
        if request.attempts > MAX_ATTEMPTS:
            log.error("dropped a Slack request whose handling failed %d times", MAX_ATTEMPTS)
            await self._db.run(store.finish, request.id, request.token)
            return
        handoff = Handoff()
        token, arrival = HANDOFF.set(handoff), RECEIVED_AT.set(request.received_at)
        try:
            await self._bolt.async_dispatch(_bolt_request(request))
        except Exception:
            handoff.discard()
            log.exception("replaying a stored Slack request failed")
            return  # the claim lapses and the request is tried again
        finally:
            HANDOFF.reset(token)
            RECEIVED_AT.reset(arrival)
        await self._complete(request, handoff, held_until)

    async def _complete(self, request: store.Claimed, handoff: Handoff, held_until: float) -> None:
        """Run the request's work while keeping the claim; then delete the request.

        `held_until` (on the loop's clock) is when the claim lapses unless renewed. If
        it lapses, or another worker takes the request over, the work is cancelled:
        the other worker's replay runs it, and it must not run here as well.
        """
        working = asyncio.ensure_future(self._background.complete(handoff))
        renewing = asyncio.ensure_future(self._renew(request, held_until))
        try:
            await asyncio.wait({working, renewing}, return_when=asyncio.FIRST_COMPLETED)
            finished = working.done()
        finally:
            for task in (working, renewing):
                task.cancel()
            await asyncio.gather(working, renewing, return_exceptions=True)
        if not finished:
            log.warning("request %s: stopped its work, whose claim was lost", request.id)
            return
        try:
            if not await self._db.run(store.finish, request.id, request.token):
                log.warning("another worker took over request %s while it ran", request.id)
        except DatabaseUnavailable as exc:
            # The work is done; a replay after the claim lapses changes nothing.
            log.warning("could not mark request %s handled: %s", request.id, exc)

    async def _renew(self, request: store.Claimed, held_until: float) -> None:
        """Renew the claim until cancelled; return once it is lost: taken over by another
        worker, or lapsed (`held_until` passed) before a renewal got through."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(RENEW_SECONDS, max(held_until - loop.time(), 0.0)))
            attempted = loop.time()
            if attempted >= held_until:
                log.warning("the claim on request %s lapsed before it was renewed", request.id)
                return
            try:
                renewed = await self._db.run_within(
                    held_until - attempted,
                    store.renew,
                    request.id,
                    request.token,
                    self._claims.now(),
                    CLAIM_TTL,
                )
            except DatabaseUnavailable as exc:
                log.warning("could not renew the claim on request %s: %s", request.id, exc)
                continue
            if not renewed:
                log.warning("lost the claim on request %s to another worker", request.id)
                return
            held_until = attempted + CLAIM_TTL.total_seconds()


class GroupCommit:
    """Stores the requests acked meanwhile in one transaction: one commit for a burst.

    One write is in flight at a time; the acks arriving during it wait for the next,
    which takes all of them. At 200 concurrent requests a commit each queued the acks
    behind the database threads (docs/performance.md). Each ack waits at most
    `limit` seconds from its arrival, waiting for the write before its own included:
    a write is given up (and not committed) when its earliest ack's time is up.
    """

    def __init__(
        self,
        write: Callable[[list[store.Arrival], float], Awaitable[list[store.Claimed]]],
        limit: float,
    ) -> None:
        self._write = write
        self._limit = limit
        self._waiting: list[Waiting] = []
        self._writing = False
        self._writer: asyncio.Future[None] | None = None  # held so it is not collected

    async def add(self, arrival: store.Arrival) -> store.Claimed:
        loop = asyncio.get_running_loop()
        waiting = Waiting(arrival, loop.create_future(), loop.time() + self._limit)
        self._waiting.append(waiting)
        if not self._writing:
            self._writing = True
            self._writer = asyncio.ensure_future(self._write_all())
        return await waiting.stored

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                left = min(w.deadline for w in batch) - loop.time()
                try:
                    if left <= 0:
                        raise DatabaseUnavailable("the database did not take the request in time")
                    stored = await self._write([w.arrival for w in batch], left)
                except Exception as exc:
                    for w in batch:
                        if not w.stored.done():
                            w.stored.set_exception(exc)
                    continue
                for w, claimed in zip(batch, stored, strict=True):
                    if not w.stored.done():
                        w.stored.set_result(claimed)
        finally:
            self._writing = False


@dataclass
class Waiting:
    arrival: store.Arrival
    stored: asyncio.Future[store.Claimed]
    deadline: float  # on the loop's clock


def _arrival(request: AsyncBoltRequest, now: datetime) -> store.Arrival:
    if request.mode == "socket_mode":
        return store.Arrival(json.dumps(request.body), SOCKET_MODE, now)
    return store.Arrival(request.raw_body, request.content_type or "", now)


def _bolt_request(request: store.Claimed) -> AsyncBoltRequest:
    if request.content_type == SOCKET_MODE:
        return AsyncBoltRequest(body=json.loads(request.body), mode="socket_mode")
    return AsyncBoltRequest(body=request.body, headers={"content-type": request.content_type})
