"""Shared pieces of the benchmarks: processes, databases, the load generator, tables.

The benchmarks measure a real `firebreak serve` process (``python -m firebreak.cli
serve``) talking to the Slack emulator, which runs in the benchmark process
and is reached through ``SLACK_API_URL``. Requests are signed exactly as Slack
signs them and sent with aiohttp (`generate`), from a child process of its own
when the timings must not wait on the emulator (`load`).

This file is also the entry point of the load generator and of the reference
servers of ``bench/ack_latency.py``, each run as its own process so that the
load generator never shares an event loop with a server (the emulator included):

    .venv/bin/python bench/common.py load URL CONCURRENCY REQUESTS.json

    .venv/bin/python bench/common.py floor PORT               # aiohttp + SignatureVerifier
    .venv/bin/python bench/common.py bolt PORT API_URL        # bare Bolt AsyncApp, defaults
    .venv/bin/python bench/common.py bolt-pbr PORT API_URL    # ... process_before_response
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from emulator import SlackDriver, SlackEmulator, Workspace

BOT_TOKEN = "xoxb-bench-token"
SIGNING_SECRET = "bench-signing-secret"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
POSTGRES_URL = os.environ.get(
    "FIREBREAK_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank: a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def ms(seconds: float) -> str:
    """Milliseconds, with a precision that suits the size."""
    value = seconds * 1000
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def machine() -> str:
    """One line describing where the figures come from."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for row in cpuinfo:
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        ram_kib = int(meminfo.readline().split()[1])
    return (
        f"{os.cpu_count()} CPUs ({model}), {ram_kib / 2**20:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


# ------------------------------------------------------------------ the workspace


def seeded_workspace() -> tuple[Workspace, str, str]:
    """Alice, Bob and Carol, #general and the broadcast channel #incidents."""
    workspace = Workspace()
    workspace.add_user(ALICE, "alice", real_name="Alice Example")
    workspace.add_user(BOB, "bob", real_name="Bob Example")
    workspace.add_user(CAROL, "carol", real_name="Carol Example")
    general = workspace.add_channel("general", members=[ALICE, BOB, CAROL, workspace.bot_user_id])
    announce = workspace.add_channel("incidents", members=[ALICE, BOB, workspace.bot_user_id])
    return workspace, general.id, announce.id


def pinned_channels(workspace: Workspace) -> list[str]:
    return [c.id for c in workspace.channels.values() if c.name.startswith("incident-") and c.pins]


async def settle(workspace: Workspace, *, quiet: float = 1.5, limit: float = 300.0) -> float:
    """Wait until the bot has stopped calling Slack for `quiet` seconds.

    Returns the time (``time.monotonic()``) of the last call seen, or of the
    start of the wait if there was none.
    """
    started = time.monotonic()

    def activity() -> tuple[int, int]:
        return len(workspace.call_log), len(workspace.ephemeral_messages)

    last, since = activity(), started
    while time.monotonic() - started < limit:
        await asyncio.sleep(0.1)
        now = activity()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return since


# ----------------------------------------------------------------------- databases


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new schema on the local Postgres."""
    if kind == "sqlite":
        path = folder / f"firebreak-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def parse_list(text: str, kinds: Sequence[str] = ("sqlite", "postgres")) -> list[str]:
    chosen = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in kinds]
    if unknown:
        raise SystemExit(f"unknown choice {unknown[0]!r}; pick from {', '.join(kinds)}")
    return chosen


# ----------------------------------------------------------------------- processes


@dataclass
class ProcStats:
    rss_mib: float
    cpu_seconds: float  # user + system since the process started


def proc_stats(pid: int) -> ProcStats:
    """Resident memory and CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return ProcStats(rss_pages * PAGE_SIZE / 2**20, (utime + stime) / CLOCK_TICKS)


class Process:
    """A child process serving HTTP on `port`, ready when `ready_path` answers 200."""

    def __init__(
        self, argv: list[str], *, port: int, env: dict[str, str], log: Path, cwd: Path
    ) -> None:
        self.argv, self.port, self.env, self.log, self.cwd = argv, port, env, log, cwd
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, ready_path: str = "/readyz", timeout: float = 60.0) -> float:
        """Start and wait until ready; returns seconds from spawn to the first 200."""
        started = time.perf_counter()
        with self.log.open("ab") as handle:  # the child keeps its own copy of the fd
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, cwd=self.cwd, stdout=handle, stderr=handle
            )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.perf_counter() - started < timeout:
                try:
                    async with session.get(self.url + ready_path) as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.argv} exited: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.005)
        await self.stop()
        tail = self.log.read_text()[-2000:]
        raise RuntimeError(f"{self.argv} not ready after {timeout}s: {tail}")

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after `grace` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class MachineLoad:
    """CPU used on the machine while measuring: this bench, Postgres, and everything else.

    The machine may be shared (other test suites, other benches). "ours" is
    this process tree (children reaped meanwhile included), "postgres" the
    Postgres processes alive at the end, "others" the rest of the machine's
    busy time. Call `shares()` before stopping the processes measured.
    Figures taken while others were busy are noisy.
    """

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._busy = self._machine_busy()
        self._procs = self._processes()

    @staticmethod
    def _machine_busy() -> float:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return (sum(fields[:8]) - idle) / CLOCK_TICKS

    @staticmethod
    def _processes() -> dict[int, tuple[int, str, float, float]]:
        """pid -> (parent, name, own CPU, reaped children's CPU)."""
        found: dict[int, tuple[int, str, float, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            f = text.rsplit(")", 1)[1].split()
            own = (int(f[11]) + int(f[12])) / CLOCK_TICKS
            reaped = (int(f[13]) + int(f[14])) / CLOCK_TICKS
            found[int(entry)] = (int(f[1]), name, own, reaped)
        return found

    def shares(self) -> tuple[float, float, float]:
        """(ours, postgres, others), each a fraction of all CPUs since construction."""
        procs = self._processes()
        capacity = (time.monotonic() - self._started) * (os.cpu_count() or 1)
        machine = self._machine_busy() - self._busy
        root = os.getpid()

        def in_tree(pid: int) -> bool:
            for _ in range(64):
                if pid == root:
                    return True
                if pid <= 1 or pid not in procs:
                    return False
                pid = procs[pid][0]
            return False

        ours = postgres = 0.0
        for pid, (_, name, own, reaped) in procs.items():
            before = self._procs.get(pid, (0, name, 0.0, 0.0))
            if in_tree(pid):
                ours += own - before[2]
                if pid == root:
                    ours += reaped - before[3]
            elif name == "postgres":
                postgres += own - before[2]
        others = max(0.0, machine - ours - postgres)
        return ours / capacity, postgres / capacity, others / capacity


async def wait_for_quiet(threshold: float = 0.15, limit: float = 20.0) -> float:
    """Wait (at most `limit` s) until others use under `threshold` of the CPUs for 2 s.

    Returns their share in the last 2 s, so a noisy measurement can say so.
    """
    deadline = time.monotonic() + limit
    while True:
        load = MachineLoad()
        await asyncio.sleep(2.0)
        others = load.shares()[2]
        if others < threshold or time.monotonic() > deadline:
            return others


async def wait_for_pins(
    workspace: Workspace, expected: int, *, stall: float = 60.0, limit: float = 600.0
) -> int:
    """Wait until `expected` incident channels have a pin; give up after `limit` s,
    or when none was added for `stall` s. Returns how many have one."""
    count, since, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - since < stall and time.monotonic() - started < limit:
        now = len(pinned_channels(workspace))
        if now >= expected:
            return now
        if now != count:
            count, since = now, time.monotonic()
        await asyncio.sleep(0.2)
    return count


def serve_process(
    *,
    api_url: str,
    database_url: str,
    folder: Path,
    runbooks: Path | None = None,
    workers: int | None = None,
) -> Process:
    """`firebreak serve` against the emulator, with its log in `folder`; `workers` as
    `--workers` (None: serve's default)."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": api_url,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "FIREBREAK_POSTMORTEM_DIR": str(folder / "postmortems"),
    }
    if runbooks is not None:
        env["FIREBREAK_RUNBOOKS"] = str(runbooks)
    return Process(
        [sys.executable, "-m", "firebreak.cli", "serve"]
        + ([] if workers is None else ["--workers", str(workers)]),
        port=port,
        env=env,
        log=folder / f"serve-{port}.log",
        cwd=folder,
    )


def reference_process(kind: str, *, api_url: str, folder: Path) -> Process:
    """One of the reference servers at the bottom of this file, in its own process."""
    port = free_port()
    return Process(
        [sys.executable, str(Path(__file__).resolve()), kind, str(port), api_url],
        port=port,
        env={"PATH": os.environ.get("PATH", "")},
        log=folder / f"{kind}-{port}.log",
        cwd=folder,
    )


@asynccontextmanager
async def emulator(latency: float = 0.0) -> AsyncIterator[tuple[SlackEmulator, str, str]]:
    """The Slack emulator on loopback, seeded; yields it with #general's and #incidents' IDs."""
    workspace, general, announce = seeded_workspace()
    async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as server:
        server.latency = latency
        yield server, general, announce


def driver(process: Process, workspace: Workspace) -> SlackDriver:
    return SlackDriver(f"{process.url}/slack/events", SIGNING_SECRET, workspace, timeout=30)


# -------------------------------------------------------------------- load generator


def signature_headers(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


@dataclass
class LoadResult:
    samples: list[float | None] = field(default_factory=list)  # seconds, by body; None = failed
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # transport errors by type
    wall: float = 0.0
    max_loop_lag: float = 0.0  # the load generator's own event-loop lag: a measurement floor

    @property
    def latencies(self) -> list[float]:
        return [s for s in self.samples if s is not None]

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def over_3s(self) -> int:
        """Answers later than Slack's deadline, or none at all."""
        return sum(1 for s in self.samples if s is None or s > 3.0)

    @property
    def not_ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + sum(
            self.failures.values()
        )


async def _watch_lag(result: LoadResult, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.005)
        result.max_loop_lag = max(result.max_loop_lag, loop.time() - before - 0.005)


async def generate(
    url: str, bodies: Sequence[bytes], concurrency: int, *, timeout: float = 30.0
) -> LoadResult:
    """POST every body, signed, `concurrency` at a time (a closed loop); time each answer.

    The clock runs from just before the request is written to just after the
    whole answer is read, over one keep-alive connection per worker.
    """
    result = LoadResult(samples=[None] * len(bodies))
    pending = iter(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def worker(session: aiohttp.ClientSession) -> None:
        for index, body in pending:
            headers = signature_headers(body)
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.failures[type(exc).__name__] += 1
                continue
            result.samples[index] = time.perf_counter() - started
            result.statuses[status] += 1

    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_lag(result, stop))
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    result.wall = time.perf_counter() - started
    stop.set()
    await watcher
    return result


async def load(url: str, bodies: Sequence[bytes], concurrency: int, folder: Path) -> LoadResult:
    """`generate` in a child process, so that its event loop serves nothing else.

    The emulator in this process may be busy answering the bot; timing requests
    on the same loop would add its delays to the bot's.
    """
    requests = folder / f"requests-{uuid.uuid4().hex[:8]}.json"
    requests.write_text(json.dumps([b.decode() for b in bodies]))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "load",
        url,
        str(concurrency),
        str(requests),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    requests.unlink()
    if child.returncode != 0:
        raise RuntimeError(f"the load generator failed ({child.returncode})")
    data = json.loads(out)
    return LoadResult(
        samples=data["samples"],
        statuses=Counter({int(k): v for k, v in data["statuses"].items()}),
        failures=Counter(data["failures"]),
        wall=data["wall"],
        max_loop_lag=data["max_loop_lag"],
    )


def _load_main(url: str, concurrency: int, requests: Path) -> None:
    bodies = [b.encode() for b in json.loads(requests.read_text())]
    result = asyncio.run(generate(url, bodies, concurrency))
    json.dump(
        {
            "samples": result.samples,
            "statuses": result.statuses,
            "failures": result.failures,
            "wall": result.wall,
            "max_loop_lag": result.max_loop_lag,
        },
        sys.stdout,
    )


# ----------------------------------------------------------------- reference servers


def _serve_floor(port: int) -> None:
    """The floor: aiohttp, the Slack signature checked, 200 with an empty body."""
    from aiohttp import web
    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(SIGNING_SECRET)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        return web.Response(status=200)

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _serve_bolt(port: int, api_url: str, process_before_response: bool) -> None:
    """A bare Bolt AsyncApp whose /incident listener only acks, served by aiohttp."""
    from aiohttp import web
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=process_before_response,
    )

    @bolt.command("/incident")
    async def incident(ack: AsyncAck) -> None:
        await ack()

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = bolt.web_app(path="/slack/events", port=port)  # Bolt's own aiohttp server
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "load":
        _load_main(argv[1], int(argv[2]), Path(argv[3]))
        return 0
    if len(argv) >= 2 and argv[0] == "floor":
        _serve_floor(int(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] in ("bolt", "bolt-pbr"):
        _serve_bolt(int(argv[1]), argv[2], process_before_response=argv[0] == "bolt-pbr")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


def git_revision() -> str:
    """The commit measured, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{head} + uncommitted changes to {len(dirty)} files" if dirty else head


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
