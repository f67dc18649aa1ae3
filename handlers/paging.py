"""Paging's Slack and HTTP entry points: the status page preview's buttons, and
PagerDuty's webhooks v3 on `POST /alerts/pagerduty`.

The webhook is authenticated before anything is parsed (`X-PagerDuty-Signature`,
401 on mismatch; 404 while no secret is configured), answered at once, and recorded
after the answer, once per webhook event ID.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.incidents.service import Request
from bot.paging.statuspage import CANCEL_ACTION, PUBLISH_ACTION
from bot.paging.webhook import BadWebhook, parse_event, signature_valid
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork

log = logging.getLogger(__name__)

STALE_BUTTON = "That button is no longer valid; draft again with `/incident statuspage`."
WEBHOOK_MAX = 256 * 1024


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    def decide(body: dict[str, Any], action: dict[str, Any], publish: bool) -> None:
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        ts = payload.text(body, "message", "ts") or payload.text(body, "container", "message_ts")
        if not user or not channel:
            return  # not something Slack sends; nobody to answer

        async def tell(text: str) -> None:
            if text:
                await services.chat.post_ephemeral(channel, user, text)

        value = str(action.get("value", ""))
        if not value.isdigit() or not ts:
            background.spawn(tell(STALE_BUTTON))
            return
        request = Request(
            actor=user, channel_id=channel, key=f"action:{action.get('action_ts')}:{user}"
        )
        work = services.statuspage.decide(int(value), publish, request, ts)
        name = "statuspage_publish" if publish else "statuspage_cancel"
        background.answer(work, tell, name=name)

    @app.action(PUBLISH_ACTION)
    async def publish_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        decide(body, action, publish=True)

    @app.action(CANCEL_ACTION)
    async def cancel_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        decide(body, action, publish=False)


def add_webhook_route(
    application: web.Application,
    services: Services,
    background: BackgroundWork,
    secret: str | None,
) -> None:
    async def pagerduty_webhook(request: web.Request) -> web.Response:
        if not secret:
            return web.json_response({"error": "not configured"}, status=404)
        body = await _read_at_most(request, WEBHOOK_MAX + 1)
        if len(body) > WEBHOOK_MAX:  # PagerDuty's are a few KB; nothing larger is read
            return web.json_response({"error": "body too large"}, status=413)
        if not signature_valid(secret, body, request.headers.get("X-PagerDuty-Signature")):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            event = parse_event(body)
        except BadWebhook as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if event is None:
            return web.json_response({"ok": True, "ignored": True}, status=202)
        background.spawn(services.paging.on_webhook(event))
        return web.json_response({"ok": True}, status=202)

    application.router.add_post("/alerts/pagerduty", pagerduty_webhook)


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, or its first `limit` bytes: a huge body is never held whole."""
    body = b""
    while len(body) < limit:
        chunk = await request.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return body
