"""`firebreak shell`: the real bot, an in-process Slack, a terminal.

A developer tool above the app it starts, so it may import handlers and the emulator.
In one asyncio loop it runs the Slack emulator, Firebreak's own app from
`create_app` (the handlers and services `serve` runs) on a loopback port with
SLACK_API_URL pointing at the emulator, and a SQLite database. Input reaches
the bot the way Slack sends it (signed slash commands and interactions through
SlackDriver), and what Slack would show comes back as text (devtools.console),
so what you try here is what happens in a real workspace. What a typed line
does is devtools.session; this module starts everything and wires the session
to the terminal. `firebreak demo` (devtools.demo) types a script into this
same session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from app.wiring import create_app
from bot.clock import OffsetClock
from bot.config import ConfigError, load_settings
from bot.yamlfile import RunbookError
from devtools.prompts import Ask
from devtools.session import USERS, Local, Session
from devtools.text import Style
from emulator import SlackDriver, SlackEmulator, Workspace
from emulator.cluster import DOCKER_HOST_ENV, PROMETHEUS_ENV, REDIS_ENV, SimulatedCluster
from emulator.pagerduty import PagerDutyEmulator
from emulator.statuspage import StatuspageEmulator
from storage.db import make_engine
from storage.migrate import upgrade

BOT_TOKEN = "xoxb-firebreak-local"


def seeded_workspace() -> Workspace:
    """alice, bob and carol in #general and #incidents (the bot joins #incidents itself)."""
    workspace = Workspace()
    for user_id, name, real_name in USERS:
        workspace.add_user(user_id, name, real_name=real_name, email=f"{name}@example.com")
    humans = [user_id for user_id, _, _ in USERS]
    workspace.add_channel("general", members=[*humans, workspace.bot_user_id])
    workspace.add_channel("incidents", members=humans)
    return workspace


@asynccontextmanager
async def running(database: Path, workdir: Path, **env: str) -> AsyncIterator[Local]:
    """Emulator, demo cluster, a fresh SQLite database and Firebreak on loopback."""
    async with AsyncExitStack() as stack:
        workspace = seeded_workspace()
        emulator = SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace)
        await stack.enter_async_context(emulator)
        settings_env = {k: v for k, v in os.environ.items() if k.startswith("FIREBREAK_")}
        kubernetes = "as configured in $FIREBREAK_TARGETS"
        if "FIREBREAK_TARGETS" not in settings_env:
            cluster = await stack.enter_async_context(SimulatedCluster())
            targets = cluster.write_demo_files(workdir)
            stack.enter_context(
                _environment(
                    KUBECONFIG=str(workdir / "kubeconfig"),
                    **{PROMETHEUS_ENV: cluster.prometheus.base_url},
                    **{DOCKER_HOST_ENV: cluster.docker.url},
                    **{REDIS_ENV: cluster.redis.url},
                )
            )
            settings_env["FIREBREAK_TARGETS"] = str(targets)
            kubernetes = (
                f"simulated cluster at {cluster.url} (service checkout, its Redis at "
                f"{cluster.redis.url}); Docker Engine at {cluster.docker.url} "
                "(Compose service backend)"
            )
        pagerduty = None
        if "PAGERDUTY_API_TOKEN" not in os.environ and "PAGERDUTY_API_TOKEN" not in env:
            pagerduty = await stack.enter_async_context(PagerDutyEmulator())
            statuspage = await stack.enter_async_context(StatuspageEmulator())
            settings_env.update(
                PAGERDUTY_API_TOKEN=pagerduty.state.token,
                PAGERDUTY_FROM_EMAIL="alice@example.com",
                PAGERDUTY_WEBHOOK_SECRET=secrets.token_hex(16),
                PAGERDUTY_API_URL=pagerduty.api_url,
                STATUSPAGE_API_KEY=statuspage.state.api_key,
                STATUSPAGE_PAGE_ID=statuspage.state.page_id,
                STATUSPAGE_API_URL=statuspage.api_url,
            )
        secret = secrets.token_hex(16)
        alert_token = secrets.token_hex(16)  # `:alert` posts example alerts with it
        for stale in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))):
            stale.unlink(missing_ok=True)  # the emulated Slack starts empty; so does the database
        settings = load_settings(
            {
                **settings_env,
                **env,
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": secret,
                "SLACK_API_URL": emulator.api_url,
                "DATABASE_URL": f"sqlite:///{database}",
                "FIREBREAK_ALERT_TOKEN": alert_token,
            }
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        clock = OffsetClock()
        app = create_app(settings, clock=clock)
        runner = web.AppRunner(app.web, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        driver = SlackDriver(f"{base}/slack/events", secret, workspace)
        if pagerduty is not None:
            pagerduty.subscribe(
                f"{base}/alerts/pagerduty", settings_env["PAGERDUTY_WEBHOOK_SECRET"]
            )
        await app.background.drain()
        yield Local(
            workspace, driver, app, clock, kubernetes, f"{base}/alerts", alert_token, pagerduty
        )


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set process environment variables (the Kubernetes client reads KUBECONFIG) and restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# ------------------------------------------------------------------- terminal


def terminal_style() -> Style:
    """Colour only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    return Style(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))


def say(line: str) -> None:
    """Print one line now: a piped session shows each answer before the next prompt."""
    print(line, flush=True)


def stdin_reader(interactive: bool) -> Ask:
    """Read lines without blocking the loop; piped input is echoed after its prompt.

    Each read runs in a daemon thread, so a read still waiting at exit (Ctrl-C)
    never holds the process open.
    """
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())

    async def ask(prompt: str) -> str | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()

        def read() -> None:
            try:
                line: str | None = input(prompt) if interactive else sys.stdin.readline()
            except EOFError:
                line = None
            if not interactive:
                line = line.rstrip("\n") if line else None
                if line is not None:
                    say(prompt + line)
            with contextlib.suppress(RuntimeError):  # the loop closed while we waited
                loop.call_soon_threadsafe(answer.set_result, line)

        threading.Thread(target=read, daemon=True).start()
        return await answer

    return ask


def log_to(path: Path) -> None:
    """Firebreak's own log goes to a file, so the terminal shows only what Slack shows."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def guarded(main: Coroutine[Any, Any, int]) -> int:
    """Run the session; bad configuration is one line on stderr, as in `firebreak serve`."""
    sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        return asyncio.run(main)
    except (ConfigError, RunbookError) as exc:
        print(f"firebreak: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------------- shell


def _banner(local: Local, database: Path, log: Path, style: Style) -> list[str]:
    return [
        style.bold("Firebreak shell") + " — the real bot, against a Slack emulated in-process.",
        style.dim(f"  database    {database} (fresh each session)"),
        style.dim(f"  kubernetes  {local.kubernetes}"),
        style.dim(f"  log         {log}"),
        "Users: alice, bob, carol. You are alice in #general. :help lists the shell commands.",
    ]


async def _shell(args: argparse.Namespace) -> int:
    style = terminal_style()
    interactive = sys.stdin.isatty()
    with tempfile.TemporaryDirectory(prefix="firebreak-shell-") as workdir:
        async with running(args.db, Path(workdir)) as local:
            for text in _banner(local, args.db, args.log, style):
                say(text)
            session = Session(local, say, stdin_reader(interactive), style)
            while (line := await session.ask(session.prompt)) is not None:
                if not await session.handle(line):
                    break
    return 0


def run_shell(argv: Sequence[str]) -> int:
    """`firebreak shell`: an interactive session against the emulated Slack."""
    parser = argparse.ArgumentParser(
        prog="firebreak shell",
        description="Try Firebreak in the terminal: the real bot against an emulated Slack, "
        "with a simulated Kubernetes cluster unless $FIREBREAK_TARGETS names real targets.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=Path("firebreak-local.db"),
        help="SQLite file, recreated at start (default: firebreak-local.db)",
    )
    parser.add_argument(
        "--log", type=Path, default=Path("firebreak-shell.log"), help="where the bot logs"
    )
    args = parser.parse_args(argv)
    log_to(args.log)
    return guarded(_shell(args))


if __name__ == "__main__":
    if sys.argv[1:2] != ["shell"]:
        sys.exit("usage: python -m devtools.shell shell [options]")
    sys.exit(run_shell(sys.argv[2:]))
