"""A throwaway Postgres cluster of the tests' own, for settings the shared server on
5432 lacks and must not be restarted for (`shared_preload_libraries`).

It uses the binaries of the server installed on the machine (Debian's layout or
`pg_config --bindir`), runs as the `postgres` user when the tests run as root (initdb
refuses root), listens on a free loopback port with trust auth, and is stopped and
deleted afterwards. Where no binaries are found the caller skips with the reason,
or fails under FIREBREAK_REQUIRE_POSTGRES=1, as the other Postgres tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from tests.processes import free_port


def _bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if candidates:
        return candidates[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        path = Path(found.stdout.strip())
        if (path / "initdb").is_file():
            return path
    return None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("FIREBREAK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (FIREBREAK_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


@contextmanager
def private_postgres(settings: Sequence[str]) -> Iterator[str]:
    """A running cluster started with `-c` `settings`; yields its psycopg URL."""
    bindir = _bindir()
    if bindir is None:
        _unavailable("no Postgres server binaries (initdb) on this machine")
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root without runuser: initdb refuses root")
        as_user = [runuser, "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="firebreak-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    options = " ".join(
        [f"-p {port}", f"-k {folder}", "-c listen_addresses=127.0.0.1", "-c fsync=off"]
        + [f"-c {setting}" for setting in settings]
    )
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [*ctl, "-w", "-t", "30", "-l", str(folder / "log"), "-o", options, "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
