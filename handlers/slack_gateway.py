"""`ChatGateway` on slack_sdk's AsyncWebClient: the services' only way to Slack."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.gateway import Blocks, ChannelInfo, ChatError, Message

log = logging.getLogger(__name__)

# Errors that mean "this is already so", which the saga treats as success.
_ALREADY_DONE = {"already_in_channel", "already_pinned"}


def make_client(token: str, base_url: str, timeout: int = 10) -> AsyncWebClient:
    """A client that honours 429 Retry-After and retries 5xx and connection errors."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackGateway:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._bot_user_id: str | None = None
        self._channel_ids: dict[str, str] = {}  # public channel name → ID

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            # The typed client methods know which API takes JSON and which form fields.
            response = await getattr(self._client, method.replace(".", "_"))(**kwargs)
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error"))
            if code in _ALREADY_DONE:
                return dict(exc.response.data) if isinstance(exc.response.data, dict) else {}
            raise ChatError(method, code) from exc
        except (TimeoutError, OSError) as exc:
            raise ChatError(method, "request_timeout") from exc
        except Exception as exc:  # aiohttp client errors and the like
            log.warning("Slack %s failed: %s", method, type(exc).__name__)
            raise ChatError(method, "connection_error") from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str((await self._call("auth.test"))["user_id"])
        return self._bot_user_id

    async def create_channel(self, name: str) -> str:
        data = await self._call("conversations.create", name=name, is_private=False)
        return str(data["channel"]["id"])

    async def find_channel(self, name: str) -> ChannelInfo | None:
        cursor = None
        while True:
            data = await self._call(
                "conversations.list",
                types="public_channel",
                exclude_archived=False,
                limit=200,
                **({"cursor": cursor} if cursor else {}),
            )
            for channel in data.get("channels", []):
                if channel.get("name") == name:
                    return ChannelInfo(
                        id=channel["id"],
                        name=channel["name"],
                        creator=channel.get("creator", ""),
                        is_archived=bool(channel.get("is_archived")),
                    )
            cursor = data.get("response_metadata", {}).get("next_cursor")
            if not cursor:
                return None

    async def invite(self, channel: str, user_id: str) -> None:
        await self._call("conversations.invite", channel=channel, users=user_id)

    async def set_topic(self, channel: str, topic: str) -> None:
        await self._call("conversations.setTopic", channel=channel, topic=topic)

    async def post(
        self, channel: str, text: str, blocks: Blocks | None = None, thread_ts: str | None = None
    ) -> str:
        channel_id = await self._resolve(channel)
        args: dict[str, Any] = {"channel": channel_id, "text": text}
        if blocks:
            args["blocks"] = blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            data = await self._call("chat.postMessage", **args)
        except ChatError as exc:
            if exc.code != "not_in_channel":
                raise
            # The broadcast channel: join it once, then post.
            await self._call("conversations.join", channel=channel_id)
            data = await self._call("chat.postMessage", **args)
        return str(data["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> None:
        args: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            args["blocks"] = blocks
        await self._call("chat.update", **args)

    async def pin(self, channel: str, ts: str) -> None:
        await self._call("pins.add", channel=channel, timestamp=ts)

    async def post_ephemeral(self, channel: str, user_id: str, text: str) -> None:
        await self._call("chat.postEphemeral", channel=channel, user=user_id, text=text)

    async def recent_messages(self, channel: str, limit: int = 100) -> list[Message]:
        channel_id = await self._resolve(channel)
        data = await self._call("conversations.history", channel=channel_id, limit=limit)
        return [
            Message(
                ts=m["ts"],
                user=m.get("user"),
                text=m.get("text", ""),
                block_ids=tuple(b.get("block_id", "") for b in m.get("blocks", [])),
            )
            for m in data.get("messages", [])
        ]

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        await self._call("views.open", trigger_id=trigger_id, view=view)

    async def upload_file(
        self,
        channel: str,
        filename: str,
        content: str,
        *,
        title: str | None = None,
        comment: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        # files_upload_v2: getUploadURLExternal, the upload, completeUploadExternal
        # (files.upload itself was shut down by Slack).
        args: dict[str, Any] = {
            "channel": await self._resolve(channel),
            "filename": filename,
            "content": content,
            "title": title or filename,
        }
        if comment:
            args["initial_comment"] = comment
        if thread_ts:
            args["thread_ts"] = thread_ts
        data = await self._call("files.upload_v2", **args)
        files = data.get("files") or [data.get("file") or {}]
        return str(files[0].get("id", ""))

    async def usergroup_members(self, group_id: str) -> list[str]:
        data = await self._call("usergroups.users.list", usergroup=group_id)
        return [str(u) for u in data.get("users", [])]

    async def _resolve(self, channel: str) -> str:
        """Channel IDs pass through; a public channel name is looked up once."""
        if channel[:1] in ("C", "G", "D") and channel.upper() == channel:
            return channel
        name = channel.lstrip("#")
        if name not in self._channel_ids:
            found = await self.find_channel(name)
            if found is None:
                raise ChatError("conversations.list", "channel_not_found")
            self._channel_ids[name] = found.id
        return self._channel_ids[name]
