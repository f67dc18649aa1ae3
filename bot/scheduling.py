"""APScheduler jobs: one wake-up per incident at its update due time, rebuilt from the database.

The database holds the due times; the scheduler only holds wake-ups. At
start-up and every few seconds the jobs are re-synced from the open
incidents, so a restart, or a change made by another replica, is picked up.
A wake-up that fires when nothing is due (another replica sent it, or the
time moved) is harmless: the claim in the database decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.incidents.reminders import ReminderService

log = logging.getLogger(__name__)

SYNC_SECONDS = 2
JOB_PREFIX = "nudge-"


class NudgeScheduler:
    def __init__(self, scheduler: AsyncIOScheduler, reminders: ReminderService) -> None:
        self._scheduler = scheduler
        self._reminders = reminders
        self._planned: dict[int, datetime] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def _tracked(self, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a job so that shutdown can wait for it (it may hold a DB connection)."""
        if self._closing:
            # APScheduler created this job's task before shutdown but it had not started:
            # starting now, it could post a nudge and be cancelled before recording it.
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await work(*args)
        finally:
            self._running.discard(task)

    def start(self, sweep: Callable[[], Awaitable[None]], sweep_seconds: int) -> None:
        self._scheduler.add_job(
            self._tracked,
            "interval",
            args=[sweep],
            seconds=sweep_seconds,
            id="sweep",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.add_job(
            self._tracked,
            "interval",
            args=[self.sync],
            seconds=SYNC_SECONDS,
            id="nudge-sync",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now().astimezone(),
        )
        self._scheduler.start()

    async def shutdown(self) -> None:
        """Stop waking up, and wait for the jobs already running to finish."""
        self._closing = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await asyncio.gather(*self._running, return_exceptions=True)

    async def sync(self) -> None:
        """Make the wake-ups match the due times in the database."""
        try:
            wanted = await self._reminders.schedule()
        except Exception:
            log.exception("could not read the reminder schedule; keeping the current one")
            return
        for incident_id in set(self._planned) - set(wanted):
            self._remove(incident_id)
        for incident_id, due in wanted.items():
            if self._planned.get(incident_id) != due:
                self._scheduler.add_job(
                    self._tracked,
                    "date",
                    run_date=due,
                    args=[self._reminders.send, incident_id],
                    id=f"{JOB_PREFIX}{incident_id}",
                    replace_existing=True,
                    # A wake-up missed while the loop was busy still runs, once.
                    misfire_grace_time=None,
                    coalesce=True,
                )
                self._planned[incident_id] = due
        # A due time already past (downtime, a missed wake-up) is sent now.
        await self._reminders.send_due()

    def _remove(self, incident_id: int) -> None:
        self._planned.pop(incident_id, None)
        job = self._scheduler.get_job(f"{JOB_PREFIX}{incident_id}")
        if job is not None:
            job.remove()
