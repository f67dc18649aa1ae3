"""The incident's work lease: one task of one replica at a time, renewed while held.

The declare saga and the post-mortem export both take it. It is short and
renewed in the background while the work waits on Slack, so a replica killed
mid-work blocks the incident for at most `ttl`, after which the sweep of any
replica takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from bot.clock import Clock
from storage import incidents as store
from storage.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

TTL = timedelta(seconds=10)
RENEW_SECONDS = 3.0


@contextlib.asynccontextmanager
async def incident_lease(
    db: Database,
    clock: Clock,
    incident_id: int,
    holder: str,
    *,
    ttl: timedelta = TTL,
    renew_seconds: float = RENEW_SECONDS,
) -> AsyncIterator[bool]:
    """Yield whether `holder` got the lease; while it is held, keep renewing it."""
    if not await db.run(store.acquire_lease, incident_id, holder, clock.now(), ttl):
        yield False
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(renew_seconds)
            try:
                await db.run(store.acquire_lease, incident_id, holder, clock.now(), ttl)
            except DatabaseUnavailable:
                log.warning("could not renew the lease on incident %s", incident_id)

    renewing = asyncio.ensure_future(renew())
    try:
        yield True
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await db.run(store.release_lease, incident_id, holder)
