"""The Events API: what Slack pushes to an app when something happens in a channel.

The workspace (no I/O) builds each event as Slack shapes it (emulator/events.py) and
hands it to `EventsApi.emit`. Only what the app subscribed to (the manifest's
`bot_events`) in a channel the bot is a member of is sent. `EventsApi` wraps it in an
`event_callback` envelope with its `event_id` and delivers it, one at a time in order:

- over HTTP to the request URL, signed like every Slack request; an answer other
  than 2xx, or none within 3 s, is retried with `X-Slack-Retry-Num` (1, 2, 3) and
  `X-Slack-Retry-Reason` (`http_timeout`, `http_error`), as Slack does (it waits
  1 s / 1 min / 5 min; `retry_delays` scales that down for tests);
- over Socket Mode as an `events_api` envelope, with `retry_attempt` and
  `retry_reason` when the previous attempt was not acknowledged in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from emulator.socket_mode import SocketModeHub
    from emulator.state import WorkspaceState

log = logging.getLogger(__name__)

ACK_DEADLINE = 3.0
RETRIES = 3
# What the manifest's `bot_events` names each event type by (message by channel kind).
SUBSCRIPTION = {
    "reaction_added": "reaction_added",
    "pin_added": "pin_added",
    "member_joined_channel": "member_joined_channel",
}


def subscription_of(event: dict[str, Any], is_private: bool) -> str:
    """The `bot_events` entry an app needs to receive `event`."""
    if event["type"] == "message":
        return "message.groups" if is_private else "message.channels"
    return SUBSCRIPTION.get(event["type"], event["type"])


def envelope(ws: WorkspaceState, event: dict[str, Any]) -> dict[str, Any]:
    """The `event_callback` wrapper Slack puts around every event."""
    return {
        "token": ws.verification_token,
        "team_id": ws.team_id,
        "api_app_id": ws.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": ws.mint_id("Ev"),
        "event_time": int(ws.now()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team_id,
                "user_id": ws.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{ws.mint_id('ctx')}",
    }


@dataclass
class Delivery:
    """One envelope and what became of each attempt (for tests)."""

    body: dict[str, Any]
    attempts: list[str] = field(default_factory=list)  # "ok", "http_timeout", "http_error"…

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1] == "ok"


class EventsApi:
    def __init__(self, workspace: WorkspaceState, socket_mode: SocketModeHub) -> None:
        self._ws = workspace
        self._hub = socket_mode
        self._url: str | None = None
        self._secret = ""
        self._socket = False
        self.subscriptions: frozenset[str] = frozenset()
        # Slack's waits before retries 1, 2 and 3 (1 s, 1 min, 5 min), scaled for tests.
        self.retry_delays: tuple[float, ...] = (0.0, 0.2, 0.5)
        self.timeout = ACK_DEADLINE
        self.deliveries: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        workspace.on_event = self.emit

    def subscribe(
        self,
        events: list[str] | tuple[str, ...],
        *,
        request_url: str | None = None,
        signing_secret: str = "",
        socket_mode: bool = False,
    ) -> None:
        """Turn delivery on: to `request_url` (HTTP) or over the Socket Mode connection."""
        assert request_url or socket_mode, "an app receives events by HTTP or Socket Mode"
        self.subscriptions = frozenset(events)
        self._url, self._secret, self._socket = request_url, signing_secret, socket_mode

    @property
    def request_url(self) -> str | None:
        return self._url

    def emit(self, event: dict[str, Any], channel_id: str) -> None:
        """Queue `event` if the app subscribed to it and the bot is in `channel_id`."""
        channel = self._ws.channels.get(channel_id)
        if not self.subscriptions or channel is None:
            return
        if self._ws.bot_user_id not in channel.members:
            return
        if subscription_of(event, channel.is_private) not in self.subscriptions:
            return
        delivery = Delivery(envelope(self._ws, event))
        self.deliveries.append(delivery)
        self._idle.clear()
        self._queue.put_nowait(delivery)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def settled(self, timeout: float = 30.0) -> None:
        """Wait until every queued event was delivered or given up on."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def of_type(self, kind: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.body["event"]["type"] == kind]

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        while not self._queue.empty():
            delivery = self._queue.get_nowait()
            await self._deliver(delivery)
        self._idle.set()

    async def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(self.retry_delays[min(attempt, len(self.retry_delays)) - 1])
            reason = delivery.attempts[-1] if delivery.attempts else ""
            outcome = await (self._push if self._socket else self._post)(delivery, attempt, reason)
            delivery.attempts.append(outcome)
            if outcome == "ok":
                return
        log.info("event %s given up after %d retries", delivery.body["event_id"], RETRIES)

    async def _post(self, delivery: Delivery, attempt: int, reason: str) -> str:
        assert self._url is not None
        body = json.dumps(delivery.body)
        stamp = str(int(time.time()))
        digest = hmac.new(
            self._secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
        }
        if attempt:
            headers.update({"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason})
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self._url, data=body.encode(), headers=headers) as response,
            ):
                await response.read()
                return "ok" if 200 <= response.status < 300 else "http_error"
        except TimeoutError:
            return "http_timeout"
        except aiohttp.ClientError:
            return "http_error"

    async def _push(self, delivery: Delivery, attempt: int, reason: str) -> str:
        extra = {"retry_attempt": attempt, "retry_reason": reason if attempt else ""}
        try:
            await self._hub.send("events_api", delivery.body, extra)
        except TimeoutError:
            return "timeout"
        return "ok"
