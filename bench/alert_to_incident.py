"""Alert to incident: from an Alertmanager delivery to the channel, the pinned checklist
and the on-call paged.

A real `firebreak serve` (its own process) gets Alertmanager webhook deliveries
(the bundled critical example, one distinct group each, so each declares an
incident) over loopback HTTP with the bearer token; the Slack emulator and the
PagerDuty fake run in this process and timestamp what they are asked. For each
alert: the answer (202) time, and the time from sending it to `conversations.create`
for its channel, to `pins.add` of its checklist and to the PagerDuty incident that
pages checkout's on-call (the alert is P1, and P1 pages).

Two runs per database: 50 alerts one after another (the next sent once the
previous one is pinned and paged), and 50 alerts sent at the same moment. Without
rate limits by
default (the bot's own latency); `--tier2` adds Slack's Tier 2 limit (20 a
minute) on conversations.create and pins.add, which then dominates.

    .venv/bin/python bench/alert_to_incident.py                  # Postgres
    .venv/bin/python bench/alert_to_incident.py --db sqlite,postgres --alerts 50
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    emulator,
    fresh_database,
    git_revision,
    machine,
    ms,
    parse_list,
    percentile,
    serve_process,
    table,
)

from emulator import Workspace
from emulator.alerts import example
from emulator.pagerduty import PagerDutyEmulator

TOKEN = "bench-alert-token"
TIER_2 = 20


@dataclass(frozen=True)
class Timing:
    answered: float  # seconds from sending the alert to its 202
    created: float  # … to conversations.create of its channel
    pinned: float  # … to pins.add of its checklist
    paged: float  # … to the PagerDuty incident for it


class SlackClock:
    """When the emulator answered conversations.create and pins.add, per channel name."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.created: dict[str, float] = {}  # channel name -> time
        self.pinned: dict[str, float] = {}  # channel id -> time
        original: Callable[..., None] = workspace.record_call

        def record(method: str, args: dict[str, Any], error: str | None = None) -> None:
            if error is None and method == "conversations.create":
                self.created.setdefault(str(args.get("name")), time.monotonic())
            elif error is None and method == "pins.add":
                self.pinned.setdefault(str(args.get("channel")), time.monotonic())
            original(method, args, error)

        workspace.record_call = record  # type: ignore[method-assign]

    def done(self, slug: str) -> tuple[float, float] | None:
        """(created, pinned) for the channel whose name ends with `slug`, once pinned."""
        for channel in self.workspace.channels.values():
            if channel.name.endswith(slug) and channel.id in self.pinned:
                return self.created[channel.name], self.pinned[channel.id]
        return None


class PagedClock(dict[str, Any]):
    """PagerDuty's incidents, noting when each was created, by title."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    def __setitem__(self, key: str, incident: Any) -> None:
        self.at.setdefault(str(incident["title"]), time.monotonic())
        super().__setitem__(key, incident)

    def paged(self, n: int, run: str) -> float | None:
        suffix = f"{run} {n:03d}"
        return next((at for title, at in self.at.items() if title.endswith(suffix)), None)


def alert(n: int, run: str) -> dict[str, Any]:
    body = example("checkout-5xx", datetime.now(UTC) - timedelta(minutes=2))
    body["groupKey"] = f"{body['groupKey']}:{run}:{n}"
    summary = f"Checkout 502s {run} {n:03d}"
    body["commonAnnotations"]["summary"] = summary
    body["alerts"][0]["annotations"]["summary"] = summary
    return body


def slug(n: int, run: str) -> str:
    return f"checkout-502s-{run}-{n:03d}"


async def send(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, float]:
    """(sent at, seconds to the answer)."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(url, json=body, headers=headers) as response:
        await response.read()
        if response.status != 202:
            raise RuntimeError(f"alert refused: HTTP {response.status}")
    return started, time.monotonic() - started


async def until_done(
    clock: SlackClock, paging: PagedClock, run: str, numbers: list[int], limit: float = 600
) -> None:
    deadline = time.monotonic() + limit
    while any(clock.done(slug(n, run)) is None or paging.paged(n, run) is None for n in numbers):
        if time.monotonic() > deadline:
            raise RuntimeError("not every alert became an incident in time")
        await asyncio.sleep(0.01)


def timing(
    clock: SlackClock, paging: PagedClock, n: int, run: str, sent: float, answered: float
) -> Timing:
    created, pinned = clock.done(slug(n, run)) or (0.0, 0.0)
    paged = paging.paged(n, run) or 0.0
    return Timing(answered, created - sent, pinned - sent, paged - sent)


async def sequential(url: str, clock: SlackClock, paging: PagedClock, count: int) -> list[Timing]:
    timings = []
    async with aiohttp.ClientSession() as http:
        for n in range(count):
            sent, answered = await send(http, url, alert(n, "seq"))
            await until_done(clock, paging, "seq", [n])
            timings.append(timing(clock, paging, n, "seq", sent, answered))
    return timings


async def at_once(url: str, clock: SlackClock, paging: PagedClock, count: int) -> list[Timing]:
    async with aiohttp.ClientSession() as http:
        sent = await asyncio.gather(*(send(http, url, alert(n, "burst")) for n in range(count)))
        await until_done(clock, paging, "burst", list(range(count)))
    return [
        timing(clock, paging, n, "burst", at, answered) for n, (at, answered) in enumerate(sent)
    ]


def rows(name: str, timings: list[Timing]) -> list[list[object]]:
    def cell(values: list[float]) -> str:
        return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"

    return [
        [
            name,
            len(timings),
            cell([t.answered for t in timings]),
            cell([t.created for t in timings]),
            cell([t.pinned for t in timings]),
            cell([t.paged for t in timings]),
        ]
    ]


async def measure(db: str, count: int, tier2: bool, folder: Path) -> list[str]:
    with fresh_database(db, folder) as database_url:
        async with emulator() as (slack, _, _), PagerDutyEmulator() as pagerduty:
            paging = PagedClock()
            pagerduty.state.incidents = paging
            if tier2:
                for method in ("conversations.create", "pins.add"):
                    slack.set_rate_limit(method, TIER_2)
            clock = SlackClock(slack.workspace)
            serve = serve_process(api_url=slack.api_url, database_url=database_url, folder=folder)
            serve.env["FIREBREAK_ALERT_TOKEN"] = TOKEN
            serve.env["PAGERDUTY_API_TOKEN"] = pagerduty.state.token
            serve.env["PAGERDUTY_FROM_EMAIL"] = "alice@example.com"
            serve.env["PAGERDUTY_API_URL"] = pagerduty.api_url
            await serve.start()
            url = f"{serve.url}/alerts/alertmanager"
            try:
                found = rows(
                    f"{db}: {count} one after another",
                    await sequential(url, clock, paging, count),
                )
                found += rows(f"{db}: {count} at once", await at_once(url, clock, paging, count))
            finally:
                await serve.stop()
    return [
        table(
            [
                "run",
                "alerts",
                "answer p50 / p99 ms",
                "channel created",
                "checklist pinned",
                "on-call paged",
            ],
            found,
        )
    ]


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; firebreak {git_revision()}")
    limits = (
        f"Tier 2 ({TIER_2}/min) on conversations.create and pins.add"
        if args.tier2
        else ("no Slack rate limits")
    )
    print(f"# alert to incident, {limits}; times from sending the alert, p50 / p99 in ms\n")
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        for db in parse_list(args.db):
            for line in await measure(db, args.alerts, args.tier2, Path(tmp)):
                print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres", help="sqlite,postgres")
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--tier2", action="store_true", help="Slack's Tier 2 rate limits")
    asyncio.run(main(parser.parse_args()))
