"""The one place that wires the app: gateways, services, Bolt app and aiohttp server.

bot.services builds the domain's service graph from its collaborators; this module
chooses those collaborators (the Slack client and gateway, the paging clients, the
database, the executors) from settings and puts the listeners in front of them.
`serve`, the shell, the demo and the tests all start the bot through `create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.actions import Executors, load_catalog
from bot.clock import Clock, SystemClock
from bot.commands import command_word
from bot.config import Settings
from bot.context import Spawn
from bot.executors import (
    KubernetesExecutor,
    PostgresExecutor,
    PrometheusExecutor,
    RedisExecutor,
)
from bot.health import readiness
from bot.incidents.reminders import ReminderSettings
from bot.metrics import Metrics
from bot.paging.gateways import PagerGateway, StatusPageGateway
from bot.runbooks import Runbooks, load_runbooks
from bot.scheduling import NudgeScheduler
from bot.services import Services, ServiceSettings, build_services
from bot.triage import load_scenarios
from handlers import actions, alerts, commands, interactions, paging, payload, postmortem, room
from handlers.background import BackgroundWork
from handlers.http_check import HttpExecutor
from handlers.inbox import Inbox, replaying
from handlers.paging_clients import PagerDutyClient, StatuspageClient
from handlers.prometheus_api import PrometheusHttpApi
from handlers.slack_gateway import SlackGateway, make_client
from storage.db import Database, DatabaseUnavailable, make_engine
from storage.incidents import incident_counts

log = logging.getLogger(__name__)

SWEEP_SECONDS = 10
# What a process does: "all" acks and works (the default, and the tests); with worker
# processes, `serve` only acks ("acks") and each worker only works ("worker").
ROLES = ("all", "acks", "worker")
REQUEST_KINDS = {"command", "block_actions", "view_submission", "view_closed", "event_callback"}


@dataclass
class Firebreak:
    """Everything `serve`, the shell and the tests need to drive the bot."""

    bolt: AsyncApp
    web: web.Application
    services: Services
    background: BackgroundWork
    scheduler: NudgeScheduler
    executors: Executors
    inbox: Inbox
    chat: SlackGateway  # services.chat, whose HTTP session start-up opens
    role: str = "all"
    paging_clients: tuple[PagerDutyClient | StatuspageClient, ...] = ()


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    runbooks: Runbooks | None = None,
    replica_id: str | None = None,
    executors: Executors | None = None,
    role: str = "all",
) -> Firebreak:
    """Build everything from settings; tests pass their own clock and executors."""
    assert role in ROLES, role
    executors = executors or default_executors()
    metrics = Metrics()
    pager = PagerDutyClient(settings.paging.pagerduty) if settings.paging.pagerduty else None
    status_page = (
        StatuspageClient(settings.paging.statuspage) if settings.paging.statuspage else None
    )
    chat = SlackGateway(
        make_client(settings.slack_bot_token, settings.slack_api_url, metrics), metrics
    )
    background = BackgroundWork(metrics)
    services = create_services(
        settings,
        spawn=background.spawn,
        chat=chat,
        metrics=metrics,
        clock=clock,
        runbooks=runbooks,
        replica_id=replica_id,
        executors=executors,
        pager=pager,
        status_page=status_page,
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
        # /slack/events verifies the signature before parsing (see _web_app); Bolt
        # checking it again would double the HMAC work of every ack.
        request_verification_enabled=False,
        process_before_response=True,
        # Bolt checks the token on the first request; if Slack is down then, say so
        # instead of Bolt's default advice to reinstall the app.
        user_facing_authorize_error_message=(
            "Firebreak could not reach Slack to check its token; try again in a moment."
        ),
    )
    bolt.use(_observe(metrics))
    for listeners in (commands, interactions, actions, postmortem, alerts, paging, room):
        listeners.register(bolt, services, background)

    scheduler = NudgeScheduler(AsyncIOScheduler(timezone="UTC"), services.reminders)
    inbox = Inbox(
        bolt=bolt,
        # Threads of its own: an inbox poll stuck on a dead database must not hold up
        # the work's queries, nor the work the acks' writes.
        db=Database(services.db.engine, timeout=services.db.timeout),
        clock=services.clock,
        background=background,
        owner=f"{replica_id or 'replica'}:{uuid.uuid4().hex[:8]}",
        local=role == "all",
    )
    web_app = _web_app(inbox, services, metrics, settings.slack_signing_secret)
    alerts.add_routes(web_app, services, background, settings.alert_token)
    app = Firebreak(
        bolt,
        web_app,
        services,
        background,
        scheduler,
        executors,
        inbox,
        chat,
        role,
        tuple(c for c in (pager, status_page) if c is not None),
    )
    pagerduty = settings.paging.pagerduty
    paging.add_webhook_route(
        app.web, services, background, pagerduty.webhook_secret if pagerduty else None
    )
    app.web.on_startup.append(lambda _: _start(app))
    app.web.on_cleanup.append(lambda _: _stop(app))
    return app


def default_executors() -> Executors:
    """Executors configured from the environment (KUBECONFIG or in-cluster, env-var URLs)."""
    return Executors(
        KubernetesExecutor(),
        PostgresExecutor(),
        HttpExecutor(),
        redis=RedisExecutor(),
        prometheus=PrometheusExecutor(PrometheusHttpApi()),
    )


def create_services(
    settings: Settings,
    *,
    executors: Executors,
    spawn: Spawn,
    chat: SlackGateway | None = None,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
    runbooks: Runbooks | None = None,
    replica_id: str | None = None,
    pager: PagerGateway | None = None,
    status_page: StatusPageGateway | None = None,
) -> Services:
    """The services without the Bolt app (the CLI's `postmortem` needs no Slack token);
    `spawn` takes the work they hand over (the triage after a declare)."""
    runbooks = runbooks or load_runbooks(settings.runbooks_dir)
    catalog = load_catalog(settings.runbooks_dir / "actions", settings.targets_file)
    chat = chat or SlackGateway(
        make_client(settings.slack_bot_token, settings.slack_api_url, metrics), metrics
    )
    return build_services(
        db=Database(make_engine(settings.database_url)),
        chat=chat,
        runbooks=runbooks,
        clock=clock or SystemClock(),
        metrics=metrics,
        catalog=catalog,
        scenarios=load_scenarios(
            settings.runbooks_dir / "scenarios", catalog, runbooks.severities.phases
        ),
        executors=executors,
        pager=pager,
        status_page=status_page,
        spawn=spawn,
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
            evidence_dir=settings.evidence_dir,
        ),
    )


def _observe(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    """Bolt middleware: log context (request, user) and ack latency for every request."""

    async def middleware(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> None:
        if replaying():  # acked and measured already, by the process that stored it
            await next()
            return
        started = time.perf_counter()
        logs.user_id.set(payload.text(body, "user_id") or payload.text(body, "user", "id") or None)
        logs.request_id.set(
            payload.text(body, "trigger_id") or payload.text(body, "view", "id") or None
        )
        logs.incident_id.set(None)
        try:
            await next()
        finally:
            kind = "command" if "command" in body else payload.text(body, "type")
            kind = kind if kind in REQUEST_KINDS else "other"  # bounded label values
            command = command_word(payload.text(body, "text"))
            metrics.ack_seconds.labels(kind, command).observe(time.perf_counter() - started)

    return middleware


def _web_app(
    inbox: Inbox, services: Services, metrics: Metrics, signing_secret: str
) -> web.Application:
    # Socket Mode runs without a signing secret: then nothing here can be verified, and
    # every request is refused (Slack's come over the socket).
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def slack_events(request: web.Request) -> web.Response:
        # Verify before parsing: a body tampered into garbage is a forgery (401), and no
        # parser sees unsigned input. A timestamp that is not an integer is as unsigned as a
        # missing one (slack_sdk's verifier would raise on it).
        body = (await request.read()).decode("utf-8", errors="replace")
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature")
        if (
            verifier is None
            or not timestamp.isdigit()
            or not verifier.is_valid(body, timestamp, signature)
        ):
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
        except Exception:
            log.warning("could not parse a signed Slack request; answered 400")
            return web.json_response({"error": "malformed request"}, status=400)
        payload.drop_null_objects(bolt_request.body)
        problem = payload.envelope_problem(bolt_request.body)
        if problem:
            log.warning("malformed Slack payload (%s); answered 400", problem)
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(await inbox.acknowledge(bolt_request))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = await readiness(services.db, services.runbooks)
        return web.json_response({"ok": ready.ok, **ready.checks}, status=200 if ready.ok else 503)

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


async def run_worker(app: Firebreak) -> None:
    """A worker process: the inbox, reminders and sweeps until SIGTERM, then a clean stop."""
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stopping.set)
    await _start(app)
    log.info("Firebreak worker running")
    await stopping.wait()
    await _stop(app)


async def _start(app: Firebreak) -> None:
    """Start-up, on the loop the process runs on: everything below belongs to it."""
    app.chat.open_session()
    if app.role == "acks":
        return  # the worker processes run the work, reminders and sweeps
    app.scheduler.start(app.services.sweep, SWEEP_SECONDS)
    # Finish whatever a previous run left half-done, without delaying start-up.
    app.background.spawn(app.services.sweep())
    app.background.spawn(app.executors.warm_up())
    app.background.keep(app.inbox.work(exit_with_parent=app.role == "worker"))


async def _stop(app: Firebreak) -> None:
    await app.background.stop_kept()
    if app.role != "acks":
        await app.scheduler.shutdown()
    await app.background.drain()
    await app.background.close()
    await app.inbox.close()  # first: it shares the engine that closing the services' disposes
    for client in app.paging_clients:
        await client.close()
    await app.chat.close_session()
    await app.services.db.close()
    app.executors.close()
