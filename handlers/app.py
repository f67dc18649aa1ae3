"""The app factory: Bolt app, aiohttp server and services, wired explicitly."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.actions import Executors, load_catalog
from bot.clock import Clock, SystemClock
from bot.commands import COMMAND_WORDS
from bot.config import Settings
from bot.executors import HttpExecutor, KubernetesExecutor, PostgresExecutor
from bot.incidents.reminders import ReminderSettings
from bot.metrics import Metrics
from bot.runbooks import Runbooks, load_runbooks
from bot.scheduling import NudgeScheduler
from bot.services import Services, ServiceSettings, build_services
from handlers import actions, commands, interactions, postmortem
from handlers.background import BackgroundWork
from handlers.slack_gateway import SlackGateway, make_client
from storage.db import Database, DatabaseUnavailable, make_engine
from storage.incidents import incident_counts

log = logging.getLogger(__name__)

SWEEP_SECONDS = 10


@dataclass
class Firebreak:
    """Everything `serve`, the shell and the tests need to drive the bot."""

    bolt: AsyncApp
    web: web.Application
    services: Services
    background: BackgroundWork
    scheduler: NudgeScheduler
    executors: Executors


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    runbooks: Runbooks | None = None,
    replica_id: str | None = None,
    executors: Executors | None = None,
) -> Firebreak:
    """Build everything from settings; tests pass their own clock and executors."""
    executors = executors or default_executors()
    metrics = Metrics()
    client = make_client(settings.slack_bot_token, settings.slack_api_url, metrics)
    services = create_services(
        settings,
        client=client,
        metrics=metrics,
        clock=clock,
        runbooks=runbooks,
        replica_id=replica_id,
        executors=executors,
    )
    # process_before_response: Bolt answers as soon as the listener returns
    # (our listeners ack and hand slow work to BackgroundWork) instead of
    # polling for the ack every 10 ms.
    bolt = AsyncApp(
        # Bolt's own client only checks the token (auth.test) on the first request. It gets
        # no retries and a short timeout, so a Slack outage then is answered within the
        # 3 s ack instead of after the gateway's backoffs; listeners use the gateway.
        client=AsyncWebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=2
        ),
        signing_secret=settings.slack_signing_secret,
        process_before_response=True,
        # Bolt checks the token on the first request; if Slack is down then, say so
        # instead of Bolt's default advice to reinstall the app.
        user_facing_authorize_error_message=(
            "Firebreak could not reach Slack to check its token; try again in a moment."
        ),
    )
    background = BackgroundWork()
    bolt.use(_observe(metrics))
    for listeners in (commands, interactions, actions, postmortem):
        listeners.register(bolt, services, background)

    scheduler = NudgeScheduler(AsyncIOScheduler(timezone="UTC"), services.reminders)
    app = Firebreak(
        bolt, _web_app(bolt, services, metrics), services, background, scheduler, executors
    )
    app.web.on_startup.append(lambda _: _start(app))
    app.web.on_cleanup.append(lambda _: _stop(app))
    return app


def default_executors() -> Executors:
    """Executors configured from the environment (KUBECONFIG or in-cluster, env-var URLs)."""
    return Executors(KubernetesExecutor(), PostgresExecutor(), HttpExecutor())


def create_services(
    settings: Settings,
    *,
    client: AsyncWebClient,
    executors: Executors,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
    runbooks: Runbooks | None = None,
    replica_id: str | None = None,
) -> Services:
    """The services without the Bolt app (the CLI's `postmortem` needs no Slack token)."""
    runbooks = runbooks or load_runbooks(settings.runbooks_dir)
    return build_services(
        db=Database(make_engine(settings.database_url)),
        chat=SlackGateway(client, metrics),
        runbooks=runbooks,
        clock=clock or SystemClock(),
        metrics=metrics,
        catalog=load_catalog(settings.runbooks_dir / "actions", settings.targets_file),
        executors=executors,
        settings=ServiceSettings(
            replica_id=replica_id or uuid.uuid4().hex[:12],
            announce_channel=settings.announce_channel,
            reminders=ReminderSettings(
                escalate_after=settings.nudge_escalate_after,
                snooze_max=settings.snooze_max,
                announce_channel=settings.announce_channel,
            ),
            postmortem_dir=settings.postmortem_dir,
            archive_on_close=settings.archive_on_close,
        ),
    )


def _observe(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    """Bolt middleware: log context (request, user) and ack latency for every request."""

    async def middleware(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> None:
        started = time.perf_counter()
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        logs.user_id.set(user)
        logs.request_id.set(body.get("trigger_id") or body.get("view", {}).get("id"))
        logs.incident_id.set(None)
        try:
            await next()
        finally:
            kind = body.get("type") or ("command" if "command" in body else "other")
            words = str(body.get("text", "")).split()
            command = words[0].lower() if words and words[0].lower() in COMMAND_WORDS else "-"
            metrics.ack_seconds.labels(kind, command).observe(time.perf_counter() - started)

    return middleware


def _web_app(bolt: AsyncApp, services: Services, metrics: Metrics) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        # A timestamp that is not an integer is as unsigned as a missing one; slack_sdk's
        # verifier would raise on it and Bolt would answer 500.
        if not request.headers.get("X-Slack-Request-Timestamp", "").isdigit():
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        except Exception:
            # Bolt parses the body before any listener runs; garbage must not be a 500.
            log.warning("could not parse a Slack request; answered 400")
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(bolt_response)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        if not await services.db.ping():
            return web.json_response({"ok": False, "database": "unreachable"}, status=503)
        return web.json_response({"ok": True, "database": "ok", "runbooks": "loaded"})

    async def prometheus(_: web.Request) -> web.Response:
        # Without the database the other metrics are still served; /readyz reports it.
        with contextlib.suppress(DatabaseUnavailable):
            metrics.set_incident_counts(await services.db.run(incident_counts))
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    application = web.Application()
    application.router.add_post("/slack/events", slack_events)
    application.router.add_get("/metrics", prometheus)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


async def _start(app: Firebreak) -> None:
    app.scheduler.start(app.services.sweep, SWEEP_SECONDS)
    # Finish whatever a previous run left half-done, without delaying start-up.
    app.background.spawn(app.services.sweep())


async def _stop(app: Firebreak) -> None:
    await app.scheduler.shutdown()
    await app.background.drain()
    await app.services.db.close()
    app.executors.close()
