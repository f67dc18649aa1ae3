"""Declare storm: 50 incidents declared at once, under Slack's rate limits.

50 signed `/incident declare P1 …` commands, with distinct titles, are sent
to a real `firebreak serve` at the same moment. The Slack emulator (in this
process) enforces Tier 2 (20 calls a minute) on `conversations.create` and
`pins.add`, and one `chat.postMessage` a second per channel, answering 429
with Retry-After beyond that, as Slack does. The bench records every Web API
call with its time and waits for the last checklist to be pinned.

Reported: the acks; the time from sending the storm to the first, median and
last pinned checklist and to the last announcement in #incidents; and, per
rate-limited method, the calls Slack accepted, the 429s the bot drew, the
most calls accepted in any sliding minute (or any second, per channel), and
how soon after a 429 the bot called the method again for the same channel
(for conversations.create: the same name, i.e. the same request retried;
for chat.postMessage: any message to that channel). Then the checks: one
channel per incident (no duplicates, no strays), each with exactly one
checklist message, pinned, and the database agreeing.

    .venv/bin/python bench/declare_storm.py                 # Postgres, about 2.5 minutes
    .venv/bin/python bench/declare_storm.py --db sqlite,postgres --incidents 50
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import (
    ALICE,
    emulator,
    fresh_database,
    generate,
    git_revision,
    machine,
    ms,
    parse_list,
    percentile,
    serve_process,
    settle,
    table,
)
from sqlalchemy import create_engine, func, select

from emulator import Workspace, payloads
from storage.models import Incident

TIER_2 = 20  # calls a minute
LIMITED = ("conversations.create", "pins.add")
CHECKLIST_BLOCK = "checklist-intro"


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic()
    method: str
    channel: str
    ok: bool
    error: str | None


def record_calls(workspace: Workspace) -> list[Call]:
    """Timestamp every Web API call the emulator answers (429s included)."""
    calls: list[Call] = []
    original: Callable[..., None] = workspace.record_call

    def record(method: str, args: dict[str, Any], error: str | None = None) -> None:
        channel = str(args.get("channel") or args.get("name") or "")
        calls.append(Call(time.monotonic(), method, channel, error is None, error))
        original(method, args, error)

    workspace.record_call = record  # type: ignore[method-assign]
    return calls


def most_in_window(times: list[float], span: float) -> int:
    """The largest number of `times` within any `span` seconds."""
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


def retry_gaps(calls: list[Call], method: str) -> list[float]:
    """Seconds from each 429 to the next call of `method` for the same channel (or name)."""
    gaps = []
    of_method = [c for c in calls if c.method == method]
    for i, call in enumerate(of_method):
        if call.error == "ratelimited":
            again = next((c for c in of_method[i + 1 :] if c.channel == call.channel), None)
            if again is not None:
                gaps.append(again.at - call.at)
    return gaps


def announcements(calls: list[Call], announce: str) -> list[float]:
    return [
        c.at
        for c in calls
        if c.method == "chat.postMessage" and c.ok and c.channel in (announce, "incidents")
    ]


async def wait_for_announcements(
    calls: list[Call], announce: str, incidents: int, stall: float = 90.0
) -> None:
    """Until every incident is announced, or no announcement came for `stall` seconds."""
    count, since = -1, time.monotonic()
    while time.monotonic() - since < stall and count < incidents:
        now = len(announcements(calls, announce))
        if now != count:
            count, since = now, time.monotonic()
        await asyncio.sleep(0.2)


async def storm(db: str, incidents: int, delay: float, folder: Path) -> list[str]:
    lines: list[str] = [f"## {db}"]
    with fresh_database(db, folder) as database_url:
        async with emulator(latency=delay) as (slack, general, announce):
            workspace = slack.workspace
            for method in LIMITED:
                slack.set_rate_limit(method, TIER_2)
            slack.set_channel_post_limit(1)
            serve = serve_process(api_url=slack.api_url, database_url=database_url, folder=folder)
            await serve.start()
            calls = record_calls(workspace)
            try:
                bodies = [
                    urlencode(
                        payloads.slash_command(
                            workspace,
                            ALICE,
                            general,
                            f"declare P1 storm {n:02d} payments failing",
                            "/incident",
                        )
                    ).encode()
                    for n in range(incidents)
                ]
                started = time.monotonic()
                acks = await generate(f"{serve.url}/slack/events", bodies, incidents)
                pinned_at = await wait_for_pins(workspace, calls, incidents, started)
                await wait_for_announcements(calls, announce, incidents)
                await settle(workspace, quiet=3.0, limit=300)
            finally:
                await serve.stop()
            lines += report(workspace, calls, started, acks.latencies, pinned_at, announce)
            lines += database_checks(database_url, incidents)
    return lines


async def wait_for_pins(
    workspace: Workspace, calls: list[Call], incidents: int, started: float, limit: float = 600
) -> list[float]:
    """Seconds from the storm to each successful pins.add, once all are in (or the limit)."""
    while time.monotonic() - started < limit:
        pins = [c.at - started for c in calls if c.method == "pins.add" and c.ok]
        if len(pins) >= incidents:
            return sorted(pins)
        await asyncio.sleep(0.1)
    return sorted(c.at - started for c in calls if c.method == "pins.add" and c.ok)


def report(
    workspace: Workspace,
    calls: list[Call],
    started: float,
    acks: list[float],
    pinned_at: list[float],
    announce: str,
) -> list[str]:
    announce_posts = [at - started for at in announcements(calls, announce)]
    lines = [
        f"acks: p50 {ms(percentile(acks, 50))} ms, max {ms(max(acks, default=0))} ms, "
        f"{len(acks)} answered, {sum(1 for a in acks if a > 3)} over 3 s",
        f"checklists pinned: {len(pinned_at)}; first {pinned_at[0]:.1f} s, "
        f"median {percentile(pinned_at, 50):.1f} s, last {pinned_at[-1]:.1f} s"
        if pinned_at
        else "checklists pinned: none",
        f"announcements in #incidents: {len(announce_posts)}, last at "
        f"{max(announce_posts, default=0):.1f} s",
        "",
    ]
    rows = []
    for method in (*LIMITED, "chat.postMessage"):
        of_method = [c for c in calls if c.method == method]
        accepted = [c.at for c in of_method if c.ok]
        limited = [c for c in of_method if c.error == "ratelimited"]
        if method == "chat.postMessage":
            per_channel = defaultdict(list)
            for c in of_method:
                if c.ok:
                    per_channel[c.channel].append(c.at)
            busiest = max((most_in_window(t, 1.0) for t in per_channel.values()), default=0)
            limit, window = "1 / s / channel", f"{busiest} in 1 s (one channel)"
        else:
            limit, window = f"{TIER_2} / min", f"{most_in_window(accepted, 60.0)} in 60 s"
        gaps = retry_gaps(calls, method)
        rows.append(
            [
                method,
                limit,
                len(accepted),
                len(limited),
                window,
                f"{min(gaps):.1f} / {percentile(gaps, 50):.1f} s" if gaps else "-",
            ]
        )
    lines.append(
        table(
            [
                "method",
                "Slack limit",
                "accepted",
                "429s",
                "most accepted",
                "next call, same channel, after a 429: min / median",
            ],
            rows,
        )
    )
    lines.append("")
    lines += channel_checks(workspace, calls)
    return lines


def channel_checks(workspace: Workspace, calls: list[Call]) -> list[str]:
    channels = [c for c in workspace.channels.values() if c.name.startswith("incident-")]
    by_title: dict[str, list[str]] = defaultdict(list)
    for channel in channels:
        # incident-YYYYMMDD-storm-NN-payments-failing(-2 for a second one)
        by_title[channel.name.split("-")[3]].append(channel.name)
    doubled = [", ".join(names) for names in by_title.values() if len(names) > 1]
    checklists = [
        sum(
            1
            for m in c.messages.values()
            if any(b.get("block_id") == CHECKLIST_BLOCK for b in m.get("blocks", []))
        )
        for c in channels
    ]
    pinned = sum(1 for c in channels if any(p["message"].get("blocks") for p in c.pins))
    creates = sum(1 for c in calls if c.method == "conversations.create" and c.ok)
    return [
        f"incident channels: {len(channels)} for {len(by_title)} incidents; "
        f"conversations.create accepted {creates} times; "
        f"incidents with more than one channel: {len(doubled)}"
        + "".join(f"\n  - {names}" for names in doubled),
        f"checklist messages per channel: {sorted(set(checklists))}; channels with it pinned: "
        f"{pinned}",
    ]


def database_checks(database_url: str, incidents: int) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(Incident))
            complete = connection.scalar(
                select(func.count())
                .select_from(Incident)
                .where(
                    Incident.channel_id.is_not(None),
                    Incident.invited.is_(True),
                    Incident.checklist_pinned.is_(True),
                )
            )
            errors = connection.scalar(
                select(func.count()).select_from(Incident).where(Incident.setup_error.is_not(None))
            )
    finally:
        engine.dispose()
    verdict = "ok" if total == complete == incidents else "NOT OK"
    return [
        f"database: {total} incidents, {complete} fully set up, "
        f"{errors} with a setup error recorded on the way: {verdict}",
        "",
    ]


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; firebreak {git_revision()}")
    print(
        f"# {args.incidents} declares at once; Slack delay {args.delay * 1000:.0f} ms; "
        f"Tier 2 ({TIER_2}/min) on {', '.join(LIMITED)}; 1 post/s/channel\n"
    )
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        for db in parse_list(args.db):
            for line in await storm(db, args.incidents, args.delay, Path(tmp)):
                print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres", help="sqlite,postgres")
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.0, help="Slack answer delay, seconds")
    asyncio.run(main(parser.parse_args()))
