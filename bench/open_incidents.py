"""Many open incidents: 1,000 P1 incidents with 15-minute cadences, idle and nudging.

The incidents are written straight into a fresh database (SQLAlchemy models:
incident rows fully set up, with their P1 checklist items and a `declared`
event), each with its own channel in the Slack emulator, their next update
due in 15 minutes. Then `firebreak serve` starts and, in steady state (nothing
due), the bench reads its resident memory and CPU time from /proc over an
idle minute-part. Then the due times are moved, in the database, so that all
1,000 nudges fall due within `--window` seconds (spread evenly, starting 10 s
later), as if 1,000 cadences had come round together; the scheduler picks the
change up at its next sync (every 2 s). Each nudge's timing error is the
emulator's message ts minus the due time stored for it. After the wave, idle
CPU and memory are read again.

The wave is far denser than real life (1,000 incidents on a 15-minute
cadence make about 1.1 nudges a second; the default window makes 16 a
second), so it also shows the headroom.

    .venv/bin/python bench/open_incidents.py                  # SQLite and Postgres, ~4 minutes
    .venv/bin/python bench/open_incidents.py --db postgres --incidents 1000 --window 60
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from common import (
    ALICE,
    emulator,
    fresh_database,
    git_revision,
    machine,
    ms,
    parse_list,
    percentile,
    proc_stats,
    serve_process,
    table,
    wait_for_quiet,
)
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from bot.runbooks import load_runbooks
from emulator import Workspace
from runbooks import BUNDLED
from storage.migrate import upgrade_database
from storage.models import ChecklistItem, Event, Incident

NUDGE_TEXT = "a status update is due"
IDLE_SECONDS = 20.0
CADENCE = timedelta(minutes=15)


@dataclass
class Idle:
    cpu_percent: float  # of one CPU
    rss_mib: float
    slack_calls: int


async def idle(pid: int, workspace: Workspace, seconds: float = IDLE_SECONDS) -> Idle:
    calls = len(workspace.call_log)
    before = proc_stats(pid)
    await asyncio.sleep(seconds)
    after = proc_stats(pid)
    return Idle(
        100 * (after.cpu_seconds - before.cpu_seconds) / seconds,
        after.rss_mib,
        len(workspace.call_log) - calls,
    )


def seed(database_url: str, workspace: Workspace, count: int) -> None:
    """`count` open P1 incidents, set up, next update due a cadence from now."""
    runbooks = load_runbooks(BUNDLED)
    items = runbooks.severities.checklist_for(runbooks.severities.levels["P1"])
    now = datetime.now(UTC)
    engine = create_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            for n in range(count):
                name = f"incident-{now:%Y%m%d}-open-{n:04d}"
                channel = workspace.add_channel(name, members=[ALICE, workspace.bot_user_id])
                incident = Incident(
                    request_key=f"bench:{n}",
                    title=f"open {n:04d}",
                    description="",
                    severity="P1",
                    status="investigating",
                    declared_by=ALICE,
                    declared_at=now - timedelta(minutes=5),
                    channel_name=name,
                    channel_id=channel.id,
                    invited=True,
                    topic=None,
                    checklist_ts=f"{int(now.timestamp())}.{n:06d}",
                    checklist_pinned=True,
                    next_update_due_at=now + CADENCE,
                    nudges_missed=0,
                )
                incident.checklist = [
                    ChecklistItem(key=i.key, phase=i.phase, text=i.text, position=p)
                    for p, i in enumerate(items)
                ]
                session.add(incident)
                session.flush()
                session.add(
                    Event(
                        incident_id=incident.id,
                        type="declared",
                        actor=ALICE,
                        at=now - timedelta(minutes=5),
                        payload={"title": incident.title, "severity": "P1"},
                    )
                )
    finally:
        engine.dispose()


def bring_due(database_url: str, count: int, start: datetime, window: float) -> dict[str, float]:
    """Spread the due times evenly over `window` seconds from `start`; channel -> due (epoch)."""
    engine = create_engine(database_url)
    due: dict[str, float] = {}
    try:
        with Session(engine) as session, session.begin():
            query = (
                select(Incident.id, Incident.channel_id)
                .where(Incident.channel_id.is_not(None))
                .order_by(Incident.id)
            )
            rows = session.execute(query).all()
            for n, (incident_id, channel_id) in enumerate(rows):
                at = start + timedelta(seconds=window * n / max(1, count - 1))
                session.execute(
                    update(Incident).where(Incident.id == incident_id).values(next_update_due_at=at)
                )
                due[str(channel_id)] = at.timestamp()
    finally:
        engine.dispose()
    return due


def nudges(workspace: Workspace, channels: list[str]) -> dict[str, list[float]]:
    """Channel -> ts (epoch seconds) of each nudge posted there."""
    found: dict[str, list[float]] = {}
    for channel_id in channels:
        messages = workspace.channels[channel_id].messages.values()
        found[channel_id] = [
            float(Decimal(m["ts"])) for m in messages if NUDGE_TEXT in str(m.get("text", ""))
        ]
    return found


async def run(db: str, count: int, window: float, folder: Path) -> list[list[object]]:
    with fresh_database(db, folder) as database_url:
        upgrade_database(database_url)
        async with emulator() as (slack, _, _):
            workspace = slack.workspace
            seeded = time.perf_counter()
            seed(database_url, workspace, count)
            seeded = time.perf_counter() - seeded
            serve = serve_process(api_url=slack.api_url, database_url=database_url, folder=folder)
            ready = await serve.start()
            try:
                await asyncio.sleep(5.0)  # the start-up sweep and first syncs
                await wait_for_quiet(limit=30)
                before = await idle(serve.pid, workspace)
                start = datetime.now(UTC) + timedelta(seconds=10)
                due = bring_due(database_url, count, start, window)
                cpu_wave = proc_stats(serve.pid).cpu_seconds
                deadline = time.time() + 10 + window + 60
                posted = nudges(workspace, list(due))
                while time.time() < deadline and sum(1 for v in posted.values() if v) < count:
                    await asyncio.sleep(1.0)
                    posted = nudges(workspace, list(due))
                wave_seconds = 10 + window
                cpu_wave = proc_stats(serve.pid).cpu_seconds - cpu_wave
                await asyncio.sleep(3.0)
                after = await idle(serve.pid, workspace)
                posted = nudges(workspace, list(due))
            finally:
                await serve.stop()
    errors = [ts[0] - due[channel] for channel, ts in posted.items() if ts]
    doubled = sum(1 for ts in posted.values() if len(ts) > 1)
    late = [e for e in errors if e > 5.0]
    print(
        f"{db}: seeded {count} incidents in {seeded:.1f} s; serve ready in {ready:.1f} s; "
        f"idle Slack calls {before.slack_calls} before, {after.slack_calls} after; "
        f"CPU during the wave {100 * cpu_wave / wave_seconds:.0f}% of one CPU",
        flush=True,
    )
    return [
        [
            db,
            count,
            sum(1 for ts in posted.values() if ts),
            doubled,
            ms(percentile(errors, 50)),
            ms(percentile(errors, 99)),
            ms(max(errors, default=float("nan"))),
            len(late),
            f"{before.cpu_percent:.1f}%",
            f"{before.rss_mib:.0f}",
            f"{after.cpu_percent:.1f}%",
            f"{after.rss_mib:.0f}",
        ]
    ]


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; firebreak {git_revision()}")
    print(
        f"# {args.incidents} open P1 incidents; nudges due over {args.window:.0f} s; "
        f"idle figures over {IDLE_SECONDS:.0f} s\n",
        flush=True,
    )
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        for db in parse_list(args.db):
            rows += await run(db, args.incidents, args.window, Path(tmp))
    print()
    print(
        table(
            [
                "db",
                "incidents",
                "nudged",
                "twice",
                "error p50 ms",
                "p99 ms",
                "max ms",
                "> 5 s",
                "idle CPU",
                "RSS MiB",
                "idle CPU after",
                "RSS after",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the nudges span")
    asyncio.run(main(parser.parse_args()))
