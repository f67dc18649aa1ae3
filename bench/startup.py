"""Start-up time of `firebreak serve`: from spawning the process to `/readyz` answering 200.

Each run spawns `python -m firebreak.cli serve` (SLACK_API_URL pointing at the
Slack emulator in this process) and polls `GET /readyz` every 5 ms. Two
cases per database: an empty one (serve applies every migration first, as on
a first deploy) and one already migrated (a restart). The resident memory of
the process is read from /proc once it is ready and has been idle for a
second. For scale, the table starts with what the interpreter alone and the
imports of `firebreak.cli serve` cost (`python -c ...`, timed the same way).

    .venv/bin/python bench/startup.py                  # 5 runs per case, about 1 minute
    .venv/bin/python bench/startup.py --runs 10 --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    emulator,
    fresh_database,
    git_revision,
    machine,
    parse_list,
    proc_stats,
    serve_process,
    table,
    wait_for_quiet,
)

IMPORTS = "import firebreak.cli, app.wiring, storage.migrate"


async def python_time(code: str) -> float:
    """Spawn to exit of `python -c code`, with the environment `serve` gets."""
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={"PATH": os.environ.get("PATH", "")}
    )
    await child.wait()
    return time.perf_counter() - started


async def measure(db: str, runs: int, folder: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    first: list[float] = []
    again: list[float] = []
    rss: list[float] = []
    async with emulator() as (slack, _, _):
        for _ in range(runs):
            with fresh_database(db, folder) as url:
                for times in (first, again):
                    await wait_for_quiet(limit=30)
                    serve = serve_process(api_url=slack.api_url, database_url=url, folder=folder)
                    try:
                        times.append(await serve.start())
                        await asyncio.sleep(1.0)
                        rss.append(proc_stats(serve.pid).rss_mib)
                    finally:
                        await serve.stop()
    for label, times in (("empty: migrate, then serve", first), ("migrated: restart", again)):
        rows.append(
            [
                f"serve, {db}, {label}",
                len(times),
                f"{statistics.median(times):.2f}",
                f"{min(times):.2f}",
                f"{max(times):.2f}",
                f"{statistics.median(rss):.0f}",
            ]
        )
    return rows


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; firebreak {git_revision()}\n")
    rows: list[list[object]] = []
    for label, code in (("python -c pass", "pass"), (f"python -c '{IMPORTS}'", IMPORTS)):
        times = [await python_time(code) for _ in range(args.runs)]
        rows.append(
            [
                label,
                len(times),
                f"{statistics.median(times):.2f}",
                f"{min(times):.2f}",
                f"{max(times):.2f}",
                "-",
            ]
        )
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        for db in parse_list(args.db):
            rows += await measure(db, args.runs, Path(tmp))
    print(table(["to /readyz 200", "runs", "median s", "min s", "max s", "RSS MiB"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
