"""`firebreak serve --workers N`: the worker processes beside the acking one.

The serve process only acks and stores requests (handlers/inbox.py); the work
runs in N `firebreak worker` processes, restarted when one dies. A worker
that outlives its serve process (killed with -9) notices and exits: Linux
delivers it SIGKILL with its parent (`PR_SET_PDEATHSIG`), and the inbox poll
checks its parent elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # seconds before a dead worker is replaced
PR_SET_PDEATHSIG = 1


def default_workers(database_url: str) -> int:
    """One per CPU but one (left for the acks), at most 4; none on a single CPU, nor on
    SQLite, which is for one process.

    The work after an ack shares its process's event loop: in the serve process it
    makes the acks wait behind it. Measured on 2 CPUs with Postgres, one worker
    process answered declares in a third of the time (p50 at concurrency 1: 3.8 ms
    against 12–13 ms) and finished about as many (docs/performance.md, "Worker
    processes, measured again").
    """
    if database_url.startswith("sqlite"):
        return 0
    cpus = os.cpu_count() or 1
    return min(4, cpus - 1)


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Workers:
    """N `firebreak worker` processes, kept running until `stop`."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pids: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._keep(slot)) for slot in range(self.count)]

    async def _keep(self, slot: int) -> None:
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "firebreak.cli", "worker"
            )
            self._processes[slot] = process
            self.pids = [p.pid for p in self._processes.values()]
            code = await process.wait()
            if not self._stopping:
                log.warning("worker %s exited with %s; starting another", process.pid, code)
                await asyncio.sleep(RESTART_DELAY)

    async def stop(self) -> None:
        """SIGTERM every worker (they finish what they hold), then wait for them."""
        self._stopping = True
        for process in self._processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(p.wait() for p in self._processes.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
