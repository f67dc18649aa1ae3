"""``SlackDriver``: plays the Slack platform towards the bot's HTTP endpoint.

It sends slash commands and interaction payloads signed exactly as Slack signs
them, then does with the bot's HTTP answer what Slack does: a slash command's
body is shown to the user, a view_submission's ``response_action`` updates the
modal stack, and an answer later than 3 seconds is discarded (the user sees
``operation_timeout``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from emulator import payloads
from emulator.interactive import apply_submission_response, deliver_command_ack
from emulator.workspace import Workspace

ACK_DEADLINE = 3.0
SELECT_TYPES = {"static_select", "external_select", "radio_buttons", "overflow"}


@dataclass(frozen=True)
class AppResponse:
    """The bot's HTTP answer; unpacks as ``status, body, trigger_id, response_url``."""

    status: int
    body: Any  # parsed JSON when the bot answered JSON, else the text ("" for an empty ack)
    trigger_id: str | None = None
    response_url: str | None = None
    elapsed: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.status, self.body, self.trigger_id, self.response_url))

    @property
    def acked_in_time(self) -> bool:
        return self.elapsed <= ACK_DEADLINE


class SlackDriver:
    """Sends what Slack would send to ``app_url`` (e.g. http://127.0.0.1:3000/slack/events)."""

    def __init__(
        self, app_url: str, signing_secret: str, workspace: Workspace, *, timeout: float = 10.0
    ) -> None:
        self.app_url = app_url
        self.signing_secret = signing_secret
        self.workspace = workspace
        self.timeout = timeout

    def sign(
        self, body: str, *, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """Slack's signing headers for ``body`` (another ``secret`` forges a bad signature)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        basestring = f"v0:{ts}:{body}".encode()
        digest = hmac.new(
            (self.signing_secret if secret is None else secret).encode(), basestring, hashlib.sha256
        ).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}

    async def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> AppResponse:
        """POST an arbitrary body, signed (or mis-signed) like Slack does."""
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        all_headers.update(self.sign(body, timestamp=timestamp, secret=secret))
        all_headers.update(headers or {})
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(self.app_url, data=body.encode(), headers=all_headers) as resp,
        ):
            text = await resp.text()
            status = resp.status
        return AppResponse(status, _parse(text), elapsed=time.monotonic() - started)

    async def slash_command(
        self,
        user_id: str,
        channel_id: str,
        text: str = "",
        command: str = "/incident",
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_reason: str = "http_timeout",
    ) -> AppResponse:
        form = payloads.slash_command(self.workspace, user_id, channel_id, text, command)
        headers = (
            {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
            if retry_num is not None
            else {}
        )
        result = await self.post(
            urlencode(form), timestamp=timestamp, secret=secret, headers=headers
        )
        result = AppResponse(
            result.status, result.body, form["trigger_id"], form["response_url"], result.elapsed
        )
        if not result.acked_in_time:
            self.workspace.add_ephemeral(
                channel_id,
                user_id,
                {"text": f'{command} failed with the error "operation_timeout"'},
                via="slack",
            )
        elif result.status == 200 and result.body not in ("", None, {}):
            deliver_command_ack(self.workspace, channel_id, user_id, result.body)
        return result

    async def click_button(
        self,
        user_id: str,
        channel_id: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        *,
        block_id: str | None = None,
    ) -> AppResponse:
        """Click button ``action_id`` in a stored message; ``value`` picks among same-id buttons."""
        payload = payloads.block_actions(
            self.workspace,
            user_id,
            channel_id,
            message_ts,
            {"button"},
            action_id,
            block_id=block_id,
            value=value,
        )
        return await self._send_interaction(payload)

    async def toggle_checkbox(
        self,
        user_id: str,
        channel_id: str,
        message_ts: str,
        action_id: str,
        selected_values: list[str],
        *,
        block_id: str | None = None,
    ) -> AppResponse:
        """Leave exactly ``selected_values`` ticked in the checkbox group ``action_id``."""
        payload = payloads.block_actions(
            self.workspace,
            user_id,
            channel_id,
            message_ts,
            {"checkboxes"},
            action_id,
            block_id=block_id,
            selected=selected_values,
        )
        return await self._send_interaction(payload)

    async def select_option(
        self,
        user_id: str,
        channel_id: str,
        message_ts: str,
        action_id: str,
        value: str,
        *,
        block_id: str | None = None,
    ) -> AppResponse:
        """Pick option ``value`` in a message's static select, radio group or overflow menu."""
        payload = payloads.block_actions(
            self.workspace,
            user_id,
            channel_id,
            message_ts,
            SELECT_TYPES,
            action_id,
            block_id=block_id,
            selected=value,
        )
        return await self._send_interaction(payload)

    async def submit_view(
        self, user_id: str, view_id: str, values: dict[str, Any] | None = None
    ) -> AppResponse:
        """Press Submit on an open modal, then apply the bot's ``response_action`` to the stack."""
        payload = payloads.view_submission(self.workspace, user_id, view_id, values or {})
        result = await self._send_interaction(payload)
        if result.status == 200 and result.acked_in_time:
            if isinstance(result.body, str) and result.body:
                raise ValueError(
                    f"a view_submission answer must be empty or JSON, got {result.body!r}"
                )
            apply_submission_response(
                self.workspace, self.workspace.views[view_id], result.body or None
            )
        return result

    async def _send_interaction(self, payload: dict[str, Any]) -> AppResponse:
        result = await self.post(urlencode({"payload": json.dumps(payload)}))
        return AppResponse(
            result.status,
            result.body,
            payload.get("trigger_id"),
            payload.get("response_url"),
            result.elapsed,
        )


def _parse(text: str) -> Any:
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
