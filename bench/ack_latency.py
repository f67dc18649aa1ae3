"""Ack latency of `/incident` under load: `firebreak serve` against two references.

Signed slash commands (`declare`, `update`, `list`, `diag`, in turn) are sent
to a real `firebreak serve` process, `concurrency` at a time in a closed loop
(each of `concurrency` workers sends its next request when the previous one is
answered). The time measured is the one Slack's 3-second deadline applies to:
from writing the request to having read the whole HTTP answer, on loopback.

- The load generator (aiohttp) runs in a child process of its own, so that
  its timings never wait on another server's event loop ("gen lag" is its
  largest event-loop lag during a cell: it cannot time more finely than that).
- The Slack emulator runs in this process and answers the bot's Web API calls
  after `--delays` (0 ms and 200 ms). The work each command does after its ack
  (channels, posts, replies) therefore runs in the bot while later requests
  are being acked, as it would in production.
- Every cell gets a fresh database (SQLite file or Postgres schema), a fresh
  emulator and a fresh `firebreak serve`, with 4 incidents declared beforehand
  for `update` and `diag` to address, and 20 warm-up commands.
- After the load the bench waits (at most `--settle` seconds) for every declare
  to have its channel with the checklist pinned and for the bot to stop calling
  Slack: "settled" is the time from the end of the load to its last Slack call,
  "not yet" if the declares were not all done by then.
- "CPU bench/pg/others" is the share of the machine's CPUs used during the load
  by this bench's processes (the bot included), by Postgres, and by anything
  else running on the machine (a shared machine makes the figures noisy).

Two references get the same load, in their own processes:
- floor: a plain aiohttp handler that checks the Slack signature
  (slack_sdk's SignatureVerifier) and answers 200;
- Bolt default: a bare Bolt AsyncApp on Bolt's own aiohttp server whose
  /incident listener only acks, with default settings (its runner polls for
  the ack every 10 ms); "Bolt pbr" is the same with process_before_response.

    .venv/bin/python bench/ack_latency.py                     # Postgres, about 5 minutes
    .venv/bin/python bench/ack_latency.py --db sqlite --refs ''
    .venv/bin/python bench/ack_latency.py --delays 0.2 --concurrency 1,200 --requests 2000
    .venv/bin/python bench/ack_latency.py --mix help --refs ''   # the ack path alone
    .venv/bin/python bench/ack_latency.py --mix declare,update,diag   # without `list`
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from common import (
    ALICE,
    LoadResult,
    MachineLoad,
    Process,
    emulator,
    fresh_database,
    git_revision,
    load,
    machine,
    ms,
    parse_list,
    percentile,
    pinned_channels,
    reference_process,
    serve_process,
    settle,
    table,
    wait_for_pins,
    wait_for_quiet,
)
from common import driver as slack_driver

from bot.errors import DATABASE_DOWN
from emulator import Workspace, payloads

KINDS = ("declare", "update", "list", "diag")
DEFAULT_REQUESTS = {1: 200, 50: 400, 200: 800}
TARGET_INCIDENTS = 4  # incidents declared beforehand, for `update` and `diag`
WARMUP = 20
REFERENCES = {"floor": "floor", "bolt": "Bolt default", "bolt-pbr": "Bolt pbr"}
HEADERS = [
    "server",
    "db",
    "Slack delay",
    "conc",
    "requests",
    "p50 ms",
    "p99 ms",
    "max ms",
    "not 200",
    ">3 s",
    "gen lag ms",
    "CPU bench/pg/others",
    "settled s",
]


@dataclass
class Cell:
    server: str
    db: str
    delay: float | None
    concurrency: int
    result: LoadResult
    kinds: list[str] = field(default_factory=list)  # the command of each request
    settled: float | None = None
    check: str = ""  # declares -> channels, for Firebreak
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # MachineLoad.shares() during the load

    def row(self) -> list[object]:
        r = self.result
        return [
            self.server,
            self.db,
            "-" if self.delay is None else f"{self.delay * 1000:.0f} ms",
            self.concurrency,
            len(r.samples),
            ms(r.p(50)),
            ms(r.p(99)),
            ms(max(r.latencies, default=float("nan"))),
            r.not_ok,
            r.over_3s,
            ms(r.max_loop_lag),
            "/".join(f"{100 * x:.0f}%" for x in self.cpu),
            self.settled_text(),
        ]

    def settled_text(self) -> str:
        if self.server != "Firebreak":
            return "-"
        return "not yet" if self.settled is None else f"{self.settled:.1f}"

    def by_kind(self) -> list[object]:
        row: list[object] = [self.db, f"{(self.delay or 0) * 1000:.0f} ms", self.concurrency]
        for kind in KINDS:
            samples = [
                s for s, k in zip(self.result.samples, self.kinds, strict=True) if k == kind and s
            ]
            row.append(f"{ms(percentile(samples, 50))} / {ms(percentile(samples, 99))}")
        return row


def command_bodies(
    workspace: Workspace,
    general: str,
    targets: list[str],
    count: int,
    tag: str,
    kinds: Sequence[str] = KINDS,
) -> tuple[list[bytes], list[str]]:
    """`count` slash commands cycling through `kinds`, each with its own trigger_id."""
    bodies, sent = [], []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        target = targets[(i // len(kinds)) % len(targets)]
        channel, text = {
            "declare": (general, f"declare P1 bench {tag}-{i} checkout returning 502s"),
            "update": (target, f"update still investigating ({tag}-{i})"),
            "list": (general, "list"),
            "diag": (target, "diag"),
            "help": (general, "help"),
        }[kind]
        form = payloads.slash_command(workspace, ALICE, channel, text, "/incident")
        bodies.append(urlencode(form).encode())
        sent.append(kind)
    return bodies, sent


def progress(cell: Cell) -> None:
    print("  ".join(str(c) for c in cell.row()), file=sys.stderr, flush=True)


async def measure_references(
    kinds: list[str], concurrencies: list[int], requests: dict[int, int], folder: Path
) -> list[Cell]:
    cells = []
    async with emulator() as (slack, general, _):
        for kind in kinds:
            server = reference_process(kind, api_url=slack.api_url, folder=folder)
            await server.start()
            try:
                url = f"{server.url}/slack/events"
                warmup, _ = command_bodies(slack.workspace, general, [general], 50, "warmup")
                await load(url, warmup, 1, folder)
                for concurrency in concurrencies:
                    bodies, sent = command_bodies(
                        slack.workspace, general, [general], requests[concurrency], kind
                    )
                    await wait_for_quiet()
                    cpu = MachineLoad()
                    result = await load(url, bodies, concurrency, folder)
                    cell = Cell(REFERENCES[kind], "-", None, concurrency, result, sent)
                    cell.cpu = cpu.shares()
                    cells.append(cell)
                    progress(cell)
            finally:
                await server.stop()
    return cells


async def measure_firebreak(
    db: str,
    delay: float,
    concurrency: int,
    count: int,
    kinds: Sequence[str],
    folder: Path,
    settle_limit: float = 45.0,
    workers: int | None = None,
) -> Cell:
    """One cell, from a fresh database, emulator and `firebreak serve`."""
    with fresh_database(db, folder) as database_url:
        async with emulator(latency=delay) as (slack, general, _):
            workspace = slack.workspace
            serve = serve_process(
                api_url=slack.api_url, database_url=database_url, folder=folder, workers=workers
            )
            await serve.start()
            try:
                targets = await declare_targets(serve, workspace, general)
                url = f"{serve.url}/slack/events"
                warmup, _ = command_bodies(workspace, general, targets, WARMUP, "w", kinds)
                await load(url, warmup, 1, folder)
                await settle(workspace)
                tag = f"{db[0]}{int(delay * 1000)}c{concurrency}"
                bodies, sent = command_bodies(workspace, general, targets, count, tag, kinds)
                declares = TARGET_INCIDENTS + count_declares(kinds, WARMUP) + sent.count("declare")
                await wait_for_quiet()
                machine_load = MachineLoad()
                result = await load(url, bodies, concurrency, folder)
                cpu = machine_load.shares()
                loaded = time.monotonic()
                done = await wait_for_pins(workspace, declares, stall=20, limit=settle_limit)
                remaining = settle_limit - (time.monotonic() - loaded)
                last = await settle(workspace, quiet=1.5 + 2 * delay, limit=max(2.0, remaining))
                settled = last - loaded if done >= declares else None
            finally:
                await serve.stop(grace=5)
            calls, connections = len(slack.peers), len(set(slack.peers))
    channels = [c for c in workspace.channels.values() if c.name.startswith("incident-")]
    pinned = sum(1 for c in channels if c.pins)
    texts = [str(e.get("text")) for e in workspace.ephemeral_messages]
    replies = Counter(reply_kind(text) for text in texts)
    failures = Counter(text[:90] for text in texts if reply_kind(text) != "ok")
    check = (
        f"{db}, {delay * 1000:.0f} ms, concurrency {concurrency}: {declares} declares -> "
        f"{len(channels)} incident channels, {pinned} with the checklist pinned "
        f"(after waiting at most {settle_limit:.0f} s); replies saying the database is "
        f"unavailable: {replies['database']}, other errors: {replies['error']}, "
        f"warnings: {replies['warning']}; Slack requests: {calls} over {connections} "
        "TCP connections" + "".join(f"\n    {n} x {text}" for text, n in failures.most_common(3))
    )
    return Cell("Firebreak", db, delay, concurrency, result, sent, settled, check, cpu)


def reply_kind(reply: str) -> str:
    """database, error, warning or ok: how a reply reads (see handlers/replies.py)."""
    if reply == DATABASE_DOWN:
        return "database"
    if reply.startswith(":x:"):
        return "error"
    return "warning" if reply.startswith(":warning:") else "ok"


def count_declares(kinds: Sequence[str], count: int) -> int:
    return sum(1 for i in range(count) if kinds[i % len(kinds)] == "declare")


async def declare_targets(serve: Process, workspace: Workspace, general: str) -> list[str]:
    """Declare a few incidents to send `update` and `diag` to; wait for their checklists."""
    driver = slack_driver(serve, workspace)
    for n in range(TARGET_INCIDENTS):
        await driver.slash_command(ALICE, general, f"declare P1 bench target {n}")
    for _ in range(600):
        if len(pinned_channels(workspace)) >= TARGET_INCIDENTS:
            return pinned_channels(workspace)
        await asyncio.sleep(0.1)
    raise RuntimeError("the target incidents were not set up in 60 s")


def verdicts(cells: list[Cell]) -> list[str]:
    """The issue's targets, checked against this run's floor."""

    def find(server: str, concurrency: int, db: str | None = None) -> list[Cell]:
        return [
            c
            for c in cells
            if c.server == server and c.concurrency == concurrency and (db is None or c.db == db)
        ]

    lines = []
    floors1, floors200 = find("floor", 1), find("floor", 200)
    if floors1:
        limit = 1.5 * floors1[0].result.p(50)
        for cell in find("Firebreak", 1):
            p50 = cell.result.p(50)
            lines.append(
                f"p50 at concurrency 1, {cell.db}, {(cell.delay or 0) * 1000:.0f} ms: "
                f"{ms(p50)} ms, target 1.5 x floor = {ms(limit)} ms: "
                f"{'met' if p50 <= limit else 'MISSED'}"
            )
    if floors200:
        limit = 1.5 * floors200[0].result.p(99)
        for cell in find("Firebreak", 200, "postgres"):
            p99 = cell.result.p(99)
            lines.append(
                f"p99 at concurrency 200, postgres, {(cell.delay or 0) * 1000:.0f} ms: "
                f"{ms(p99)} ms, target 1.5 x floor = {ms(limit)} ms: "
                f"{'met' if p99 <= limit else 'MISSED'}"
            )
    late = sum(c.result.over_3s for c in cells if c.server == "Firebreak")
    lines.append(f"acks over 3 s (or none): {late}: {'met' if late == 0 else 'MISSED'}")
    return lines


async def main(args: argparse.Namespace) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    requests = {c: args.requests or DEFAULT_REQUESTS.get(c, max(300, 5 * c)) for c in concurrencies}
    refs = parse_list(args.refs, tuple(REFERENCES)) if args.refs else []
    kinds = parse_list(args.mix, (*KINDS, "help"))
    print(f"# {machine()}; firebreak {git_revision()}; mix {','.join(kinds)}", flush=True)
    print("  ".join(HEADERS), file=sys.stderr, flush=True)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        folder = Path(tmp)
        cells += await measure_references(refs, concurrencies, requests, folder)
        for db in parse_list(args.db):
            for delay in [float(d) for d in args.delays.split(",")]:
                for concurrency in concurrencies:
                    cell = await measure_firebreak(
                        db,
                        delay,
                        concurrency,
                        requests[concurrency],
                        kinds,
                        folder,
                        args.settle,
                        args.workers,
                    )
                    cells.append(cell)
                    progress(cell)
    print()
    print(table(HEADERS, [c.row() for c in cells]))
    firebreak = [c for c in cells if c.server == "Firebreak"]
    if firebreak and kinds == list(KINDS):
        print("\nFirebreak by command, p50 / p99 ms")
        print(table(["db", "Slack delay", "conc", *KINDS], [c.by_kind() for c in firebreak]))
    print()
    for line in [c.check for c in firebreak] + verdicts(cells):
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres", help="sqlite,postgres")
    parser.add_argument("--delays", default="0,0.2", help="Slack answer delays in seconds")
    parser.add_argument("--concurrency", default="1,50,200")
    parser.add_argument("--requests", type=int, default=0, help="requests per cell")
    parser.add_argument("--mix", default=",".join(KINDS), help="commands sent, in turn")
    parser.add_argument(
        "--settle", type=float, default=45.0, help="seconds to wait for the work after the acks"
    )
    parser.add_argument(
        "--refs", default="floor,bolt,bolt-pbr", help="reference servers ('' for none)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="serve's --workers (default: serve's own)"
    )
    asyncio.run(main(parser.parse_args()))
