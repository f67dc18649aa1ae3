"""`ChatGateway` on slack_sdk's AsyncWebClient: the services' only way to Slack."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.gateway import (
    ChannelInfo,
    ChatError,
    ChatUser,
    Message,
    Pin,
    Reaction,
    SharedFile,
)
from bot.incidents.undeliverable import TRANSIENT
from bot.messages import Card
from bot.metrics import Metrics
from bot.mrkdwn import Mrkdwn
from handlers import blockkit

log = logging.getLogger(__name__)

# Errors that mean "this is already so", which the saga treats as success.
_ALREADY_DONE = {"already_in_channel", "already_pinned"}

# Reading a long channel may meet the rate limit many times in a row; the
# client's own retries give up after 3, the readers keep waiting it out.
READ_ATTEMPTS = 10
RETRY_AFTER_MAX = 120.0


class _Counted:
    """Counts each retry a slack_sdk retry handler decides to make, by method and reason."""

    reason = ""
    metrics: Metrics

    async def prepare_for_next_attempt_async(
        self, *, state: Any, request: Any, **kwargs: Any
    ) -> None:
        self.metrics.slack_retries.labels(_method_of(request), self.reason).inc()
        await super().prepare_for_next_attempt_async(state=state, request=request, **kwargs)  # type: ignore[misc]


def _content(message: Mrkdwn | Card) -> dict[str, Any]:
    """A message's `text` (what Slack notifies from) and, for a card, its blocks."""
    if isinstance(message, Card):
        return blockkit.message(message)
    return {"text": message}


def _method_of(request: Any) -> str:
    """The Web API method of a slack_sdk retry request: the last part of its URL."""
    return str(request.url).rstrip("/").rsplit("/", 1)[-1]


# The channel of the Web API call in progress, set by SlackGateway._call: slack_sdk does not
# show JSON arguments to its retry handlers, which run in the same task.
_calling_channel: contextvars.ContextVar[str] = contextvars.ContextVar("channel", default="")


class RateGate:
    """What Slack's 429s said: no call to this method (or, for a per-channel limit, to this
    method in this channel) before a time.

    The client's retry handler waits out a 429 for the call that drew it; the gate makes
    every other call that would hit the same limit wait too, instead of drawing its own
    429 (a declare's checklist and the outbox post to a new channel at the same moment).
    """

    # Slack limits these per channel; every other method per workspace (its tier).
    PER_CHANNEL = frozenset({"chat.postMessage"})

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def _key(self, method: str, channel: str) -> tuple[str, str]:
        return (method, channel if method in self.PER_CHANNEL else "")

    def block(self, method: str, channel: str, seconds: float) -> None:
        key = self._key(method, channel)
        self._until[key] = max(self._until.get(key, 0.0), time.monotonic() + seconds)

    async def wait(self, method: str, channel: str) -> None:
        key = self._key(method, channel)
        while (delay := self._until.get(key, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        self._until.pop(key, None)


class _RateLimitRetries(_Counted, AsyncRateLimitErrorRetryHandler):
    reason = "ratelimited"
    gate: RateGate

    async def prepare_for_next_attempt_async(
        self, *, state: Any, request: Any, response: Any = None, **kwargs: Any
    ) -> None:
        if response is not None:
            self.gate.block(
                _method_of(request), _calling_channel.get(), _retry_after(response.headers)
            )
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, **kwargs
        )


class _ServerErrorRetries(_Counted, AsyncServerErrorRetryHandler):
    reason = "server_error"


class _ConnectionRetries(_Counted, AsyncConnectionErrorRetryHandler):
    reason = "connection"


def make_client(
    token: str, base_url: str, metrics: Metrics | None = None, timeout: int = 10
) -> AsyncWebClient:
    """A client that honours 429 Retry-After and retries 5xx and connection errors."""
    metrics = metrics or Metrics()
    handlers: list[Any] = [
        _RateLimitRetries(max_retry_count=3),
        _ServerErrorRetries(max_retry_count=2),
        _ConnectionRetries(max_retry_count=2),
    ]
    for handler in handlers:
        handler.metrics = metrics
    handlers[0].gate = RateGate()
    return AsyncWebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers)


class SlackGateway:
    def __init__(self, client: AsyncWebClient, metrics: Metrics | None = None) -> None:
        self._client = client
        self._metrics = metrics or Metrics()
        # The gate make_client's 429 handler fills; a plain client gets one that stays open.
        self._gate = next(
            (h.gate for h in client.retry_handlers if isinstance(h, _RateLimitRetries)),
            RateGate(),
        )
        self._bot_user_id: str | None = None
        self._channel_ids: dict[str, str] = {}  # public channel name → ID
        self._user_names: dict[str, str] = {}  # users.info, cached
        self._team_url: str | None = None
        self._posting: dict[str, asyncio.Lock] = {}  # per channel

    def open_session(self) -> None:
        """Give every call one HTTP session, on the running loop, until `close_session`.

        Without one, slack_sdk opens a session, and so a new connection, for each call;
        with it, calls reuse kept-alive connections. A shared session ignores the
        client's `timeout`, so the session carries it.
        """
        timeout = aiohttp.ClientTimeout(total=self._client.timeout)
        self._client.session = aiohttp.ClientSession(timeout=timeout)

    async def close_session(self) -> None:
        session, self._client.session = self._client.session, None
        if session is not None:
            await session.close()

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        channel = kwargs.get("channel")
        channel = channel if isinstance(channel, str) else ""
        await self._gate.wait(method, channel)
        _calling_channel.set(channel)
        try:
            # The typed client methods know which API takes JSON and which form fields.
            response = await getattr(self._client, method.replace(".", "_"))(**kwargs)
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error"))
            self._metrics.slack_calls.labels(method, code).inc()
            if code in _ALREADY_DONE:
                return dict(exc.response.data) if isinstance(exc.response.data, dict) else {}
            raise ChatError(method, code) from exc
        except (TimeoutError, OSError) as exc:
            self._metrics.slack_calls.labels(method, "request_timeout").inc()
            raise ChatError(method, "request_timeout") from exc
        except Exception as exc:  # aiohttp client errors and the like
            self._metrics.slack_calls.labels(method, "connection_error").inc()
            log.warning("Slack %s failed: %s", method, type(exc).__name__)
            raise ChatError(method, "connection_error") from exc
        self._metrics.slack_calls.labels(method, "ok").inc()
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str((await self._call("auth.test"))["user_id"])
        return self._bot_user_id

    async def create_channel(self, name: str, *, private: bool = False) -> str:
        data = await self._call("conversations.create", name=name, is_private=private)
        return str(data["channel"]["id"])

    async def find_channel(self, name: str, *, private: bool = False) -> ChannelInfo | None:
        cursor = None
        while True:
            data = await self._call(
                "conversations.list",
                types="private_channel" if private else "public_channel",
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

    async def post(self, channel: str, message: Mrkdwn | Card, thread_ts: str | None = None) -> str:
        channel_id = await self._resolve(channel)
        args: dict[str, Any] = {"channel": channel_id, **_content(message)}
        if thread_ts:
            args["thread_ts"] = thread_ts
        # One post at a time per channel: messages land in the order they were sent, and a
        # post waiting out a 429 holds back the next instead of letting it draw another.
        async with self._posting.setdefault(channel_id, asyncio.Lock()):
            try:
                data = await self._call("chat.postMessage", **args)
            except ChatError as exc:
                if exc.code != "not_in_channel":
                    raise
                # The broadcast channel: join it once, then post.
                await self._join(channel_id)
                data = await self._call("chat.postMessage", **args)
        return str(data["ts"])

    async def _join(self, channel_id: str) -> None:
        """Join to post; a join refused for good (a private channel, say) leaves the post's
        own error, `not_in_channel`, which the outbox then knows to stop retrying."""
        try:
            await self._call("conversations.join", channel=channel_id)
        except ChatError as exc:
            if exc.code in TRANSIENT or exc.code == "is_archived":
                raise
            raise ChatError("chat.postMessage", "not_in_channel") from exc

    async def update(self, channel: str, ts: str, message: Mrkdwn | Card) -> None:
        channel_id = await self._resolve(channel)
        await self._call("chat.update", channel=channel_id, ts=ts, **_content(message))

    async def pin(self, channel: str, ts: str) -> None:
        await self._call("pins.add", channel=channel, timestamp=ts)

    async def post_ephemeral(self, channel: str, user_id: str, text: str) -> None:
        await self._call("chat.postEphemeral", channel=channel, user=user_id, text=text)

    async def respond(self, response_url: str, text: str) -> None:
        webhook = AsyncWebhookClient(
            response_url, timeout=self._client.timeout, session=self._client.session
        )
        try:
            response = await webhook.send(text=text, response_type="ephemeral")
        except (TimeoutError, OSError) as exc:
            raise ChatError("response_url", "request_timeout") from exc
        except Exception as exc:  # aiohttp client errors and the like
            raise ChatError("response_url", "connection_error") from exc
        if response.status_code != 200:
            raise ChatError("response_url", response.body or f"http_{response.status_code}")

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
        content: str | bytes,
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

    async def history(
        self,
        channel: str,
        *,
        page_size: int = 200,
        latest: str | None = None,
        oldest: str | None = None,
    ) -> AsyncIterator[list[Message]]:
        args: dict[str, Any] = {"channel": await self._resolve(channel), "limit": page_size}
        if latest:
            args.update(latest=latest, inclusive=True)
        if oldest:
            args.update(oldest=oldest, inclusive=True)
        async for page in self._pages("conversations.history", args):
            yield page

    async def replies(
        self, channel: str, ts: str, *, page_size: int = 200, latest: str | None = None
    ) -> AsyncIterator[list[Message]]:
        args: dict[str, Any] = {"channel": channel, "ts": ts, "limit": page_size}
        if latest:
            args.update(latest=latest, inclusive=True)
        async for page in self._pages("conversations.replies", args):
            yield page

    async def _pages(self, method: str, args: dict[str, Any]) -> AsyncIterator[list[Message]]:
        """Follow the cursor; each raw page is turned into `Message`s and dropped at once."""
        cursor = None
        while True:
            data = await self._read(method, **args, **({"cursor": cursor} if cursor else {}))
            cursor = data.get("response_metadata", {}).get("next_cursor")
            page = [_message(m) for m in data.get("messages", [])]
            del data
            yield page
            if not cursor:
                return

    async def _read(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """`_call`, waiting out 429s for as long as Slack's Retry-After says."""
        attempt = 1
        while True:
            try:
                return await self._call(method, **kwargs)
            except ChatError as exc:
                if exc.code != "ratelimited" or attempt >= READ_ATTEMPTS:
                    raise
                delay = _retry_after(
                    getattr(getattr(exc.__cause__, "response", None), "headers", None)
                )
            log.info("Slack %s rate limited; waiting %.0fs", method, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def user_name(self, user_id: str) -> str:
        if user_id not in self._user_names:
            try:
                user = (await self._read("users.info", user=user_id)).get("user", {})
            except ChatError as exc:
                if exc.code not in _UNKNOWN_USER:
                    raise
                user = {}
            self._user_names[user_id] = _display_name(user, user_id)
        return self._user_names[user_id]

    async def user(self, user_id: str) -> ChatUser | None:
        try:
            user = (await self._call("users.info", user=user_id)).get("user", {})
        except ChatError as exc:
            if exc.code in _UNKNOWN_USER:
                return None
            raise
        name = self._user_names[user_id] = _display_name(user, user_id)
        # Slackbot is not flagged `is_bot`, but it is no more a person than any bot.
        is_bot = bool(user.get("is_bot")) or user_id == "USLACKBOT"
        return ChatUser(user_id, name, is_bot=is_bot, deleted=bool(user.get("deleted")))

    async def user_by_email(self, email: str) -> str | None:
        try:
            user = (await self._call("users.lookupByEmail", email=email)).get("user", {})
        except ChatError as exc:
            if exc.code == "users_not_found":
                return None
            raise
        return str(user.get("id")) or None

    async def pins(self, channel: str) -> list[Pin]:
        data = await self._read("pins.list", channel=await self._resolve(channel))
        return [
            Pin(ts=str(item["message"]["ts"]), pinned_by=str(item.get("created_by", "")))
            for item in data.get("items", [])
            if item.get("type") == "message" and "ts" in item.get("message", {})
        ]

    async def permalink(self, channel: str, ts: str, thread_ts: str | None = None) -> str:
        # chat.getPermalink's format, built locally: one call per message in a
        # 10,000-message channel would eat the rate limit for nothing.
        if self._team_url is None:
            self._team_url = str((await self._read("auth.test")).get("url", "")).rstrip("/")
        link = f"{self._team_url}/archives/{channel}/p{ts.replace('.', '')}"
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return link

    async def file_permalink(self, file_id: str) -> str:
        data = await self._read("files.info", file=file_id)
        return str(data.get("file", {}).get("permalink", ""))

    async def archive(self, channel: str) -> None:
        try:
            await self._call("conversations.archive", channel=await self._resolve(channel))
        except ChatError as exc:
            if exc.code != "already_archived":
                raise

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


_UNKNOWN_USER = ("user_not_found", "user_not_visible")


def _display_name(user: dict[str, Any], user_id: str) -> str:
    profile = user.get("profile", {})
    return str(profile.get("real_name") or user.get("real_name") or user.get("name") or user_id)


def _message(raw: dict[str, Any]) -> Message:
    return Message(
        ts=str(raw["ts"]),
        user=raw.get("user"),
        text=str(raw.get("text") or ""),
        block_ids=tuple(str(b.get("block_id", "")) for b in raw.get("blocks") or []),
        thread_ts=raw.get("thread_ts"),
        reply_count=int(raw.get("reply_count") or 0),
        subtype=raw.get("subtype"),
        bot_id=raw.get("bot_id"),
        reactions=tuple(
            Reaction(str(r.get("name", "")), tuple(r.get("users") or []))
            for r in raw.get("reactions") or []
        ),
        files=tuple(
            SharedFile(str(f.get("id", "")), str(f.get("name") or f.get("title") or ""))
            for f in raw.get("files") or []
        ),
        edited="edited" in raw,
    )


def _retry_after(headers: Any) -> float:
    """Seconds from a 429's Retry-After header (1 when Slack did not say)."""
    for key, value in dict(headers or {}).items():
        if key.lower() == "retry-after":
            text = value[0] if isinstance(value, list) else value
            try:
                return min(max(float(text), 0.0), RETRY_AFTER_MAX)
            except (TypeError, ValueError):
                break
    return 1.0
