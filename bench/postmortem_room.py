"""Compiling a post-mortem from the recorded room: 1k, 10k and 50k messages in the log.

The channel's messages are `room.*` events in the event log (as handlers/room.py
records them: about 9 % thread replies, an edit every 50th, a deletion every 200th,
a 📌 every 500th), on SQLite and on the local Postgres, and Firebreak listened the whole
time, so no history is read. The time is what `/incident close` spends before the
export: loading the incident, its log and its listening spans, compiling the document
(names from the fake Slack over loopback HTTP, a permalink per key moment) and
rendering the Markdown. Target: 50k messages in 2 s or less.

    .venv/bin/python bench/postmortem_room.py                  # sqlite,postgres; 1k 10k 50k
    .venv/bin/python bench/postmortem_room.py sqlite 2000      # a database, any sizes
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import fresh_database, machine, parse_list
from sqlalchemy import insert

from bot.postmortem import records
from bot.postmortem.compiler import compile_document
from bot.postmortem.history import ts_of
from bot.postmortem.render import PostmortemTemplate
from emulator import SlackEmulator, Workspace
from handlers.slack_gateway import SlackGateway, make_client
from runbooks import BUNDLED
from storage.db import Database, make_engine
from storage.migrate import upgrade
from storage.models import Event, Incident, Listener

TOKEN = "xoxb-bench"
PEOPLE = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE")
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
THREAD_EVERY, REPLIES = 40, 4


def room_events(messages: int, incident_id: int) -> list[dict[str, Any]]:
    """The rows handlers/room.py would have written for a busy channel."""
    rows: list[dict[str, Any]] = []
    people = itertools.cycle(PEOPLE)
    moments = (START + timedelta(seconds=1 + n / 10) for n in itertools.count())

    def add(kind: str, actor: str, **payload: Any) -> str:
        at = next(moments)
        row = {"incident_id": incident_id, "type": f"room.{kind}", "actor": actor, "at": at}
        rows.append({**row, "payload": {"ts": ts_of(at), **payload}})
        return ts_of(at)

    posted, n = 0, 0
    while posted < messages:
        who = next(people)
        text = f"message {n}: " + "the checkout latency is still climbing " * (n % 3 + 1)
        ts = add("message", who, text=text)
        posted, n = posted + 1, n + 1
        if n % 50 == 0:
            rows.append({**rows[-1], "type": "room.edited", "payload": {"ts": ts, "text": "ed"}})
        if n % 200 == 0:
            rows.append({**rows[-1], "type": "room.deleted", "payload": {"ts": ts}})
        if n % 500 == 0:
            rows.append({**rows[-1], "type": "room.reaction", "actor": PEOPLE[0],
                         "payload": {"ts": ts, "reaction": "pushpin"}})  # fmt: skip
        for r in range(REPLIES if n % THREAD_EVERY == 0 else 0):
            if posted < messages:
                add("message", next(people), text=f"reply {r}", thread_ts=ts)
                posted += 1
    return rows


@dataclass
class Timing:
    load: float  # the incident, its log, its recorded room and listening spans
    compile: float  # the document
    render: float  # the Markdown
    cpu: float  # CPU seconds of this process (all threads) for load and compile

    @property
    def total(self) -> float:
        return self.load + self.compile + self.render


async def compile_once(
    database: Database, incident_id: int, api_url: str, template: PostmortemTemplate
) -> tuple[Timing, int]:
    gateway = SlackGateway(make_client(TOKEN, api_url))
    started, cpu_started = time.perf_counter(), time.process_time()
    incident, events, _ = await database.run(records.load, incident_id)
    now = incident.closed_at
    assert now is not None
    listening = await database.run(records.listening, incident_id, now)
    loaded = time.perf_counter()
    document = await compile_document(
        gateway, incident, events, generated_at=now, latest=ts_of(now), listening=listening
    )
    compiled, cpu = time.perf_counter(), time.process_time() - cpu_started
    assert template.markdown(document)
    rendered = time.perf_counter()
    timing = Timing(loaded - started, compiled - loaded, rendered - compiled, cpu)
    return timing, len(document["timeline"])


async def measure(kind: str, messages: int, folder: Path) -> tuple[Timing, int, int]:
    workspace = Workspace(clock=lambda: START.timestamp())
    channel = workspace.add_channel("incident-bench", members=[workspace.bot_user_id])
    assert channel.id == "C00000001"
    for user in PEOPLE:
        workspace.add_user(user, user[2:].lower())
    with fresh_database(kind, folder) as url:
        engine = make_engine(url)
        upgrade(engine)
        database = Database(engine, timeout=120)
        incident_id = await database.run(seed_rows, messages)
        template = PostmortemTemplate(BUNDLED / "templates")  # built once, at start-up
        async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as slack:
            seconds, lines = await compile_once(database, incident_id, slack.api_url, template)
        crawls = workspace.count("conversations.history")
        await database.close()
    return seconds, lines, crawls


def seed_rows(session: Any, messages: int) -> int:
    incident = Incident(
        request_key="bench",
        title="bench",
        severity="P1",
        status="resolved",
        declared_by=PEOPLE[0],
        declared_at=START,
        channel_id="C00000001",
        channel_name="incident-bench",
        resolution_summary="rolled back",
        closed_at=START + timedelta(days=1),
    )
    session.add(incident)
    session.flush()
    session.add(
        Listener(owner="bench", started_at=START - timedelta(hours=1), seen_at=incident.closed_at)
    )
    session.execute(insert(Event), room_events(messages, incident.id))
    return incident.id


def main(argv: list[str]) -> None:
    kinds = parse_list(argv[0]) if argv and not argv[0].isdigit() else ["sqlite", "postgres"]
    sizes = [int(a) for a in argv if a.isdigit()] or [1_000, 10_000, 50_000]
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.1f} (other processes share the CPUs)")
    print(
        "database  messages    load  compile  markdown   total  cpu(load+compile)"
        "  timeline  history calls"
    )
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for size in sizes:
                t, lines, crawls = asyncio.run(measure(kind, size, Path(folder)))
                verdict = ""
                if size == 50_000:
                    verdict = "  met" if t.load + t.compile <= 2 else "  MISSED"
                print(
                    f"{kind:<9} {size:>8,}  {t.load:>5.2f}s  {t.compile:>6.2f}s  {t.render:>7.2f}s"
                    f"  {t.total:>5.2f}s  {t.cpu:>16.2f}s  {lines:>8,}  {crawls:>13}{verdict}"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
