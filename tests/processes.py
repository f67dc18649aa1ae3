"""`firebreak serve` as a real process, for restart and multi-replica tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from runbooks import BUNDLED
from tests.harness import BOT_TOKEN, SIGNING_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runbooks_with_cadence(folder: Path, cadence: str) -> Path:
    """A copy of the bundled runbooks where P1 wants an update every `cadence`."""
    target = folder / "runbooks"
    shutil.copytree(BUNDLED, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    severities = target / "severities.yml"
    text = severities.read_text()
    p1 = text.index("  P1:")
    severities.write_text(
        text[:p1] + text[p1:].replace("update_cadence: 15m", f"update_cadence: {cadence}", 1)
    )
    return target


class ServeProcess:
    def __init__(
        self,
        *,
        api_url: str,
        database_url: str,
        runbooks: Path,
        log: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            "PATH": os.environ.get("PATH", ""),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": api_url,
            "DATABASE_URL": database_url,
            "FIREBREAK_RUNBOOKS": str(runbooks),
            "PORT": str(self.port),
            **(env or {}),
        }
        self._log = log
        self._args = args
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self._log.open("ab") as handle:  # the child keeps its own copy of the fd
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "firebreak.cli",
                "serve",
                *self._args,
                env=self._env,
                stdout=handle,
                stderr=handle,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.process.returncode is not None:
                    raise RuntimeError(f"serve exited: {self._log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        raise RuntimeError("serve did not become ready")

    def worker_pids(self) -> list[int]:
        """The `firebreak worker` processes this serve started (its child processes)."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.returncode is None:
            self.process.send_signal(sig)
            await self.process.wait()
