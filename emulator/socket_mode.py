"""Socket Mode: the WebSocket over which Slack pushes events to an app with an app token.

The app calls `apps.connections.open` with its app-level token (xapp-…) and connects to
the URL it gets; Slack says `hello`, then sends envelopes (`slash_commands`, `interactive`,
`events_api`) and waits for each to be acknowledged by `envelope_id`, with an optional
response payload (what an HTTP app would answer). This hub is that server side.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import WSMsgType, web

ACK_DEADLINE = 3.0


class SocketModeHub:
    def __init__(self) -> None:
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        await socket.send_json({"type": "hello", "num_connections": 1})
        self._sockets.append(socket)
        self._connected.set()
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    ack = json.loads(message.data)
                except ValueError:
                    continue
                waiter = self._acks.pop(str(ack.get("envelope_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack)
        finally:
            self._sockets.remove(socket)
            if not self._sockets:
                self._connected.clear()
        return socket

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def send(
        self, kind: str, payload: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Push one envelope to the app; return its acknowledgement (raises on no ack in 3 s).

        `extra` adds envelope fields, e.g. an `events_api` retry's `retry_attempt`."""
        await self.wait_connected()
        envelope_id = f"env-{next(self._ids)}"
        waiter = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiter
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                **(extra or {}),
            }
        )
        try:
            return await asyncio.wait_for(waiter, ACK_DEADLINE)
        finally:
            self._acks.pop(envelope_id, None)

    async def close(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
