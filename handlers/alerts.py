"""Alert intake over HTTP, and the Declare incident / Dismiss buttons of an offer.

`POST /alerts/alertmanager` and `POST /alerts/generic` authenticate the bearer
token before reading the body, refuse what is not a valid delivery with a 400
that says why, record the delivery and answer 202; routing and Slack work
happen after the answer (`AlertService.process`). Without FIREBREAK_ALERT_TOKEN
the endpoints do not exist (404): alerts are off until a token is chosen.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.alerts import payloads
from bot.alerts.views import DECLARE_ACTION, DISMISS_ACTION
from bot.incidents.service import Request
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork
from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

Parser = Callable[[dict[str, Any]], payloads.Delivery]
Handler = Callable[[web.Request], Awaitable[web.Response]]
STALE_BUTTON = "That button is no longer valid."


def add_routes(
    application: web.Application,
    services: Services,
    background: BackgroundWork,
    token: str | None,
) -> None:
    """The two intake endpoints, answering 404 while no token is configured."""
    application.router.add_post(
        "/alerts/alertmanager", _endpoint(payloads.alertmanager, services, background, token)
    )
    application.router.add_post(
        "/alerts/generic", _endpoint(payloads.generic, services, background, token)
    )


def _endpoint(
    parse: Parser, services: Services, background: BackgroundWork, token: str | None
) -> Handler:
    expected = f"Bearer {token}".encode() if token else b""

    async def receive(request: web.Request) -> web.Response:
        if not token:
            return _refuse(404, "alert intake is off: FIREBREAK_ALERT_TOKEN is not set")
        given = request.headers.get("Authorization", "").encode("utf-8", errors="replace")
        if not hmac.compare_digest(given, expected):  # before the body is even read
            return _refuse(401, "missing or wrong bearer token", auth=True)
        try:
            delivery = parse(payloads.decode(await request.read()))
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, "the body is larger than 1 MiB (aiohttp's limit for a request)")
        except payloads.PayloadError as exc:
            log.info("alert delivery refused: %s", exc)
            return _refuse(400, str(exc))
        try:
            receipt = await services.alerts.receive(delivery)
        except DatabaseUnavailable:
            # The sender retries a 5xx; nothing was recorded, so nothing is lost.
            return _refuse(503, "the incident database is unavailable; retry later")
        if not receipt.duplicate:
            background.spawn(services.alerts.process(receipt.key_hash))
        return web.json_response(
            {"ok": True, "delivery": receipt.delivery_id, "duplicate": receipt.duplicate},
            status=202,
        )

    return receive


def _refuse(status: int, reason: str, *, auth: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if auth else None
    return web.json_response({"ok": False, "error": reason}, status=status, headers=headers)


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    """The offer's buttons: ack, then decide in the background and tell the clicker."""

    def decide(body: dict[str, Any], action: dict[str, Any], declare: bool) -> None:
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        if not user or not channel:
            return  # not something Slack sends; nobody to answer

        async def tell(text: str) -> None:
            await services.chat.post_ephemeral(channel, user, text)

        value = str(action.get("value", ""))
        if not value.isdigit() or len(value) > 12:
            background.spawn(tell(STALE_BUTTON))
            return
        request = Request(user, channel, f"action:{action.get('action_ts')}:{user}")
        name = "alert_declare" if declare else "alert_dismiss"
        background.answer(
            services.alerts.decide_offer(int(value), declare, request), tell, name=name
        )

    @app.action(DECLARE_ACTION)
    async def alert_declare(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        decide(body, action, declare=True)

    @app.action(DISMISS_ACTION)
    async def alert_dismiss(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        decide(body, action, declare=False)
