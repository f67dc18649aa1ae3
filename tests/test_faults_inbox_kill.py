"""`kill -9` after the ack loses no command, and the declarer is answered; a paused lease
holder that wakes up after another replica took over changes nothing.

Real `firebreak serve` processes (with `--workers`, their `firebreak worker` children)
against the Slack emulator. The scenarios run concurrently to keep the wall time near
that of the longest (a claim or lease lapses 10 s after its holder stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.incidents.views import CHECKLIST_MARKER
from emulator import SlackDriver, SlackEmulator, Workspace
from runbooks import BUNDLED
from storage.migrate import upgrade_database
from tests.databases import fresh_database, postgres_or_skip
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import ServeProcess
from tests.test_faults_declare_kill import (
    event_counts,
    finished,
    incident_channels,
    incident_rows,
    wait_until,
)

pytestmark = pytest.mark.slow

# Claim (10 s) and lease (10 s) lapse, a sweep (10 s), the work; and on a busy machine a
# worker process may take many seconds to start.
DEADLINE = 60.0


def answers(workspace: Workspace) -> list[str]:
    """What the declarer heard back after the ack, whichever way."""
    return [
        str(e.get("text"))
        for e in workspace.ephemerals(ALICE)
        if e.get("via") != "ack" and "Declared" in str(e.get("text"))
    ]


def assert_declared_once(url: str, workspace: Workspace, announce: str) -> None:
    """One incident, one channel, one checklist and pin, one announcement, one answer."""
    [row] = incident_rows(url)
    assert row.channel_id and row.invited and row.checklist_pinned and row.declarer_answered
    [channel] = incident_channels(workspace)
    assert workspace.count("conversations.create") == 1
    checklists = [
        m
        for m in workspace.messages(channel.id)
        if CHECKLIST_MARKER in [b.get("block_id") for b in m.get("blocks") or []]
    ]
    assert len(checklists) == 1 and [p["ts"] for p in channel.pins] == [checklists[0]["ts"]]
    assert len(workspace.messages(announce)) == 1
    counts = event_counts(url)
    assert counts.get("declared") == 1 and counts.get("channel_created") == 1, counts
    assert answers(workspace) == [f"Declared *P1* incident <#{channel.id}>."]


Scenario = Callable[[str, Path, SlackEmulator, Workspace, str, str], Awaitable[None]]


async def run(scenario: Scenario, url: str, folder: Path, running: asyncio.Semaphore) -> None:
    async with running:
        await run_alone(scenario, url, folder)


async def run_alone(scenario: Scenario, url: str, folder: Path) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    announce = workspace.add_channel("incidents", members=[ALICE])
    upgrade_database(url)
    async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as emulator:
        await scenario(url, folder, emulator, workspace, general.id, announce.id)
    assert_declared_once(url, workspace, announce.id)


def serve(emulator: SlackEmulator, url: str, folder: Path, name: str, workers: int) -> ServeProcess:
    return ServeProcess(
        api_url=emulator.api_url,
        database_url=url,
        runbooks=BUNDLED,
        log=folder / f"{name}.log",
        args=("--workers", str(workers)),
    )


async def warm_up(driver: SlackDriver, channel: str) -> None:
    """One command answered in the ack: Bolt checks the token (auth.test) on the first
    request, which on a loaded machine can take long enough to fail that request."""
    response = await driver.slash_command(ALICE, channel, "help")
    assert response.status == 200, response


async def worker_of(process: ServeProcess) -> int:
    for _ in range(100):
        if pids := process.worker_pids():
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError("serve started no worker")


def kill_worker_mid_declare(starting: asyncio.Semaphore) -> Scenario:
    """The worker dies while Slack creates the channel; its replacement finishes."""

    async def scenario(
        url: str,
        folder: Path,
        emulator: SlackEmulator,
        workspace: Workspace,
        general: str,
        announce: str,
    ) -> None:
        replica = serve(emulator, url, folder, "serve", workers=1)
        try:
            async with starting:
                await replica.start()
            emulator.inject_fault("conversations.create", delay=2.5)
            driver = SlackDriver(f"{replica.url}/slack/events", SIGNING_SECRET, workspace)
            await warm_up(driver, general)
            response = await driver.slash_command(ALICE, general, "declare P1 checkout down")
            assert response.status == 200

            def creating() -> bool:
                rows = incident_rows(url)
                return bool(rows) and rows[0].channel_name is not None

            await wait_until(creating, DEADLINE, "the worker started creating the channel")
            victim = await worker_of(replica)
            os.kill(victim, signal.SIGKILL)
            emulator.clear_faults()
            await wait_until(
                lambda: finished(url, workspace, announce) and bool(answers(workspace)),
                DEADLINE,
                "a new worker finished the declare and answered",
            )
            assert victim not in replica.worker_pids()  # the supervisor replaced it
            await asyncio.sleep(1)  # room for a wrong second attempt to show
        finally:
            await replica.kill()

    return scenario


def kill_replica_after_ack(window_ms: tuple[int, int], starting: asyncio.Semaphore) -> Scenario:
    """Replica A acks a declare and dies (serve and worker) within `window_ms`; B finishes."""

    async def scenario(
        url: str,
        folder: Path,
        emulator: SlackEmulator,
        workspace: Workspace,
        general: str,
        announce: str,
    ) -> None:
        a = serve(emulator, url, folder, "replica-a", workers=1)
        b = serve(emulator, url, folder, "replica-b", workers=1)
        try:
            async with starting:
                await asyncio.gather(a.start(), b.start())
            victim = await worker_of(a)
            driver = SlackDriver(f"{a.url}/slack/events", SIGNING_SECRET, workspace)
            await warm_up(driver, general)
            response = await driver.slash_command(ALICE, general, "declare P1 checkout down")
            assert response.status == 200 and "Declaring" in str(response.body)
            await asyncio.sleep(random.uniform(*window_ms) / 1000)
            os.kill(victim, signal.SIGKILL)
            await a.kill()
            await wait_until(
                lambda: finished(url, workspace, announce) and bool(answers(workspace)),
                DEADLINE,
                "replica B finished the declare and answered",
            )
            await asyncio.sleep(1)
        finally:
            await a.kill()
            await b.kill()

    return scenario


def pause_lease_holder(starting: asyncio.Semaphore) -> Scenario:
    """Replica A holds the declare's lease while inviting, and is paused (SIGSTOP) past
    its lease and its inbox claim; B takes over and finishes. A then resumes: its late
    writes are refused and it stops, so nothing is done twice."""

    async def scenario(
        url: str,
        folder: Path,
        emulator: SlackEmulator,
        workspace: Workspace,
        general: str,
        announce: str,
    ) -> None:
        a = serve(emulator, url, folder, "replica-a", workers=0)
        b = serve(emulator, url, folder, "replica-b", workers=0)
        try:
            async with starting:
                await asyncio.gather(a.start(), b.start())
            emulator.inject_fault("conversations.invite", delay=2.0)
            driver = SlackDriver(f"{a.url}/slack/events", SIGNING_SECRET, workspace)
            await warm_up(driver, general)
            await driver.slash_command(ALICE, general, "declare P1 checkout down")

            def inviting() -> bool:
                rows = incident_rows(url)
                return bool(rows) and rows[0].channel_id is not None and not rows[0].invited

            await wait_until(inviting, DEADLINE, "replica A started inviting")
            assert a.process is not None
            a.process.send_signal(signal.SIGSTOP)
            [row] = incident_rows(url)
            token = row.lease_token
            await wait_until(lambda: datetime.now(UTC) > row.lease_until, 15, "A's lease lapsed")
            emulator.clear_faults()
            await wait_until(
                lambda: finished(url, workspace, announce) and bool(answers(workspace)),
                DEADLINE,
                "replica B finished the declare",
            )
            [row] = incident_rows(url)
            assert row.lease_token > token  # B holds (or held) a newer token
            a.process.send_signal(signal.SIGCONT)

            # A's invitation call returns; its record of it, and anything after, is refused.
            # Or A first finds its inbox claim lapsed, and cancels the declare before that.
            def stopped() -> bool:
                log = (folder / "replica-a.log").read_text()
                return "lost the lease" in log or "stopped its work" in log

            await wait_until(stopped, 15, "replica A noticed it lost the lease or its claim")
            await asyncio.sleep(1)
        finally:
            if a.process and a.process.returncode is None:
                a.process.send_signal(signal.SIGCONT)
            await a.kill()
            await b.kill()

    return scenario


async def test_no_declare_is_lost_or_doubled(tmp_path: Path) -> None:
    """kill -9 of a worker (SQLite, Postgres); of a replica just after its ack, twice per
    window (Postgres, two replicas); a paused lease holder (Postgres, two replicas)."""
    postgres_or_skip()
    # Two scenarios at a time, one process starting at a time: the machine has 2 CPUs.
    running, starting = asyncio.Semaphore(2), asyncio.Semaphore(1)
    cases: dict[str, tuple[str, Scenario]] = {
        "worker killed, sqlite": ("sqlite", kill_worker_mid_declare(starting)),
        "worker killed, postgres": ("postgres", kill_worker_mid_declare(starting)),
        "replica killed 0-30 ms after the ack": (
            "postgres",
            kill_replica_after_ack((0, 30), starting),
        ),
        "replica killed 50-200 ms after the ack": (
            "postgres",
            kill_replica_after_ack((50, 200), starting),
        ),
        "lease holder paused": ("postgres", pause_lease_holder(starting)),
    }
    with contextlib.ExitStack() as stack:
        scenarios = []
        for number, (kind, scenario) in enumerate(cases.values()):
            folder = tmp_path / f"case{number}"
            folder.mkdir()
            url = stack.enter_context(fresh_database(kind, folder))
            scenarios.append(run(scenario, url, folder, running))
        results = await asyncio.gather(*scenarios, return_exceptions=True)
    failures = {
        name: f"{type(result).__name__}: {result}"
        for name, result in zip(cases, results, strict=True)
        if isinstance(result, BaseException)
    }
    assert failures == {}, failures
