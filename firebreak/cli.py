"""`firebreak` command line: serve, worker, check, manifest, db upgrade, postmortem, shell, demo.

It sits above what it starts: the app (app.wiring) and the developer tools
(devtools); nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from app.manifest import ManifestError, render
from bot.actions import load_catalog
from bot.config import ConfigError, Settings, load_settings
from bot.errors import UserError
from bot.logs import configure_logging
from bot.runbooks import load_runbooks
from bot.triage import load_scenarios
from bot.yamlfile import RunbookError
from firebreak.supervisor import Workers, default_workers, die_with_parent
from storage.db import DatabaseSetupError
from storage.migrate import upgrade_database

log = logging.getLogger("firebreak")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="firebreak", description="Incident-response bot for Slack"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the bot (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes for the work after the acks (0: in this process; default: "
        "one per CPU but one, at most 4, and 0 on SQLite)",
    )
    sub.add_parser("worker", help="run only the work after the acks (serve --workers starts these)")
    check = sub.add_parser(
        "check", help="before `serve`: each setting, runbook and (--live) connection, with fixes"
    )
    check.add_argument(
        "--live",
        action="store_true",
        help="also call Slack, the database and every target in targets.yml",
    )
    check.add_argument(
        "--timeout", type=float, default=5.0, help="seconds for each outside call (default 5)"
    )
    manifest = sub.add_parser("manifest", help="print the Slack app manifest for this deployment")
    where = manifest.add_mutually_exclusive_group()
    where.add_argument("--url", help="the bot's public address, e.g. https://bot.example.com")
    where.add_argument("--socket-mode", action="store_true", help="Socket Mode on, no request URLs")
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"], help="apply the migrations")
    postmortem = sub.add_parser("postmortem", help="print an incident's post-mortem")
    postmortem.add_argument("incident", help="incident ID or channel name")
    postmortem.add_argument("--format", choices=["md", "json"], default="md")
    # shell and demo take their own options (see devtools/shell.py and devtools/demo.py).
    sub.add_parser("shell", add_help=False, help="try Firebreak in a terminal, no Slack needed")
    sub.add_parser("demo", add_help=False, help="play a scripted incident to its post-mortem")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("shell", "demo"):
        try:
            from devtools.demo import run_demo
            from devtools.shell import run_shell
        except ModuleNotFoundError as exc:
            if exc.name not in ("devtools", "emulator"):
                raise
            # The production image (deploy/Dockerfile) leaves the dev tools out.
            print(
                f"firebreak: {args.command} is a developer tool, not installed here; "
                f"run `make {args.command}` in a checkout",
                file=sys.stderr,
            )
            return 2
        return (run_shell if args.command == "shell" else run_demo)(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    try:
        if args.command == "serve":
            settings = load_settings()
            workers = (
                default_workers(settings.database_url) if args.workers is None else args.workers
            )
            if workers < 0:
                parser.error("--workers must be 0 or more")
            return _serve(settings, workers)
        if args.command == "worker":
            return _worker(load_settings())
        if args.command == "check":
            return _check(args.live, args.timeout)
        if args.command == "manifest":
            print(render(args.url, socket_mode=args.socket_mode), end="")
            return 0
        if args.command == "postmortem":
            asyncio.run(_postmortem(args.incident, args.format))
            return 0
        if args.command == "db":
            settings = load_settings(require_slack=False)
            upgrade_database(settings.database_url)
            print("database is up to date")
            return 0
    except (ConfigError, RunbookError, UserError, ManifestError) as exc:
        print(f"firebreak: {exc}", file=sys.stderr)
        return 2
    except DatabaseSetupError as exc:
        print(f"firebreak: {exc}", file=sys.stderr)
        return 1
    return 1


def _check(live: bool, timeout: float) -> int:
    """The doctor (app/doctor.py): one line per item; non-zero if anything failed."""
    from app.doctor import failed, live_findings, settings_findings

    settings = load_settings(require_slack=False)
    runbooks = load_runbooks(settings.runbooks_dir)
    catalog = load_catalog(settings.runbooks_dir / "actions", settings.targets_file)
    scenarios = load_scenarios(
        settings.runbooks_dir / "scenarios", catalog, runbooks.severities.phases
    )
    findings = settings_findings(settings, runbooks, catalog, scenarios)
    if live:
        findings += asyncio.run(live_findings(settings, catalog, timeout=timeout))
    for finding in findings:
        print(finding.line())
    return 1 if failed(findings) else 0


async def _postmortem(reference: str, fmt: str) -> None:
    """Print a post-mortem; a stored one needs no Slack connection."""
    from app.wiring import create_services, default_executors
    from handlers.background import BackgroundWork

    settings = load_settings(require_slack=False)
    upgrade_database(settings.database_url)
    executors = default_executors()
    # Rendering hands no work over (only a declare does, its triage).
    services = create_services(settings, executors=executors, spawn=BackgroundWork().spawn)
    try:
        print(await services.postmortems.render(reference, fmt), end="")
    finally:
        await services.db.close()
        executors.close()


def _serve(settings: Settings, workers: int) -> int:
    from aiohttp import web

    from app.wiring import create_app

    configure_logging(settings.log_format, settings.log_level)
    runbooks = load_runbooks(settings.runbooks_dir)
    first_start = upgrade_database(settings.database_url)
    app = create_app(settings, runbooks=runbooks, role="acks" if workers else "all")
    if workers:
        processes = Workers(workers)
        app.web.on_startup.append(lambda _: _started(processes))
        app.web.on_cleanup.append(lambda _: processes.stop())
    if settings.slack_app_token:
        asyncio.run(_socket_mode(app, settings, first_start))
        return 0
    log.info("Firebreak listening on :%s (POST /slack/events), %d workers", settings.port, workers)
    if first_start:
        log.info(
            "First start: Slack must send requests to https://<this host>/slack/events "
            "(`firebreak manifest --url https://<this host>` fills them in); "
            "then try /incident help in any channel"
        )
    # No access log: a line per Slack request cost a fifth of the ack path's time;
    # firebreak_ack_seconds counts and times every request instead.
    web.run_app(app.web, port=settings.port, print=None, access_log=None)
    return 0


async def _started(workers: Workers) -> None:
    workers.start()


def _worker(settings: Settings) -> int:
    from app.wiring import create_app, run_worker

    die_with_parent()
    configure_logging(settings.log_format)
    app = create_app(settings, runbooks=load_runbooks(settings.runbooks_dir), role="worker")
    asyncio.run(run_worker(app))
    return 0


async def _socket_mode(app: object, settings: Settings, first_start: bool) -> None:
    """Socket Mode for Slack traffic; health endpoints still served on $PORT."""
    from aiohttp import web

    from app.socket_mode import InboxSocketModeHandler
    from app.wiring import Firebreak

    assert isinstance(app, Firebreak) and settings.slack_app_token
    runner = web.AppRunner(app.web)
    await runner.setup()
    await web.TCPSite(runner, port=settings.port).start()
    handler = InboxSocketModeHandler(app, settings.slack_app_token)
    try:
        await handler.connect_async()
        log.info("Firebreak connected to Slack over Socket Mode; health on :%s", settings.port)
        if first_start:
            log.info(
                "First start: connected over Socket Mode, no request URL needed; "
                "try /incident help in any channel"
            )
        await asyncio.Event().wait()  # until the process is stopped
    finally:
        await handler.close_async()
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
