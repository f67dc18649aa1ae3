"""Socket Mode through the inbox: the same acks, and the same durable hand-off, as HTTP."""

from __future__ import annotations

from time import time

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from app.wiring import Firebreak


class InboxSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's handler, dispatching through `Inbox.acknowledge` instead of the bare app."""

    def __init__(self, app: Firebreak, app_token: str) -> None:
        super().__init__(app.bolt, app_token)
        self._inbox = app.inbox

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time()
        request = AsyncBoltRequest(mode="socket_mode", body=req.payload, headers=build_headers(req))
        await send_async_response(client, req, await self._inbox.acknowledge(request), start)
