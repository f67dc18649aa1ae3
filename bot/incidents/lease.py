"""The incident's work lease: one task of one replica at a time, renewed while held, fenced.

The declare saga and the post-mortem export both take it; the triage takes one of its
own (the triage's row), so seconds of diagnostics hold up neither. It is short and
renewed in the background while the work waits on Slack, so a replica killed
mid-work blocks the incident for at most `ttl`, after which the sweep of any
replica takes over.

A holder can also stall without dying (a paused process, a long GC, a
partition) and wake up after another replica took over. So each acquisition
raises the incident's fencing token: the holder passes its token to every
write the lease guards (`storage.incidents.leased`), and a write with an old
token is refused with `LeaseLost`. A holder whose renewal fails marks its
lease `lost` and stops at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot.clock import Clock
from storage import incidents as store
from storage.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

TTL = timedelta(seconds=10)
RENEW_SECONDS = 3.0


@dataclass
class Lease:
    incident_id: int
    holder: str
    token: int  # the fencing token every guarded write carries
    lost: bool = False  # a renewal found another holder: stop, do not write

    def check(self) -> None:
        """Stop here if the lease was lost (the writes would be refused anyway)."""
        if self.lost:
            raise store.LeaseLost(self.incident_id)


class LeaseRows(Protocol):
    """Where a lease is kept: `storage.incidents` (the incident's) or `storage.triage`."""

    def acquire_lease(
        self, session: Session, incident_id: int, owner: str, now: datetime, ttl: timedelta
    ) -> int | None: ...

    def renew_lease(
        self, session: Session, incident_id: int, token: int, now: datetime, ttl: timedelta
    ) -> bool: ...

    def release_lease(self, session: Session, incident_id: int, token: int) -> None: ...


@contextlib.asynccontextmanager
async def incident_lease(
    db: Database,
    clock: Clock,
    incident_id: int,
    holder: str,
    *,
    rows: LeaseRows = store,
    ttl: timedelta = TTL,
    renew_seconds: float = RENEW_SECONDS,
) -> AsyncIterator[Lease | None]:
    """Yield the lease if `holder` got it (else None); while it is held, keep renewing it."""
    token = await db.run(rows.acquire_lease, incident_id, holder, clock.now(), ttl)
    if token is None:
        yield None
        return
    lease = Lease(incident_id, holder, token)

    async def renew() -> None:
        while True:
            await asyncio.sleep(renew_seconds)
            try:
                renewed = await db.run(rows.renew_lease, incident_id, token, clock.now(), ttl)
            except DatabaseUnavailable:
                log.warning("could not renew the lease on incident %s", incident_id)
                continue
            if not renewed:
                log.warning("lost the lease on incident %s to another holder", incident_id)
                lease.lost = True
                return

    renewing = asyncio.ensure_future(renew())
    try:
        yield lease
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await db.run(rows.release_lease, incident_id, token)
