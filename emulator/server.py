"""``SlackEmulator``: the workspace served over loopback HTTP like slack.com/api.

Point the real ``slack_sdk`` client at it with ``base_url=emulator.api_url``.
Besides ``/api/<method>`` it serves the URLs Slack would hand out elsewhere:
response_urls (``/_emulator/respond/<id>``), upload URLs
(``/_emulator/upload/<file_id>``), private file downloads, and a JSON state
dump (``/_emulator/state``) for tests that run the bot in a subprocess.
Transport-level misbehaviour (429s, 500s, slowness) is injected here, not in
the workspace, because that is where Slack's edge produces it.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from app.manifest import bot_scopes, load_manifest
from emulator.api import Args
from emulator.events_api import EventsApi
from emulator.files import describe, store_upload
from emulator.socket_mode import SocketModeHub
from emulator.workspace import Workspace

MAX_BODY = 64 * 1024 * 1024


@dataclass
class Fault:
    status: int | None
    retry_after: int
    delay: float | None
    error: str | None


@dataclass
class Hold:
    """One call kept in flight until the test lets it go: races without timing luck."""

    method: str
    text: str  # only a call whose `text` contains this is held
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


class SlackEmulator:
    """Serves a :class:`Workspace` on an ephemeral 127.0.0.1 port (``async with`` or start/stop)."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        workspace: Workspace | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        app_token: str | None = None,
        scopes: list[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        # The bot token's scopes, sent back in `x-oauth-scopes` as Slack does on every Web
        # API answer; by default what manifest.yml asks for (the app was installed from
        # it). A test removes one to play an app installed before a scope was added.
        self.scopes = list(bot_scopes(load_manifest()) if scopes is None else scopes)
        # With an app-level token, `apps.connections.open` hands out the Socket Mode URL.
        self.app_token = app_token
        self.socket_mode = SocketModeHub()
        self.workspace = workspace or Workspace()
        # The Events API pushes what happens in the workspace to the app, once subscribed.
        self.events = EventsApi(self.workspace, self.socket_mode)
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._holds: list[Hold] = []
        self._per_minute: dict[str, int] = {}
        self._method_calls: dict[str, deque[float]] = defaultdict(deque)
        self._channel_post_limit: int | None = None
        self._channel_posts: dict[str, deque[float]] = defaultdict(deque)
        # Seconds every Web API and response_url answer waits before it is
        # computed, like a slow Slack edge (0 = answer at once).
        self.latency = 0.0
        # The client address (host, port) of every Web API and response_url request, in
        # order: one port per TCP connection, so tests can see connections being reused.
        self.peers: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/_emulator/respond/{hook_id}", self._handle_respond)
        app.router.add_post("/_emulator/upload/{file_id}", self._handle_upload)
        app.router.add_get("/_emulator/files/{file_id}/{name}", self._handle_download)
        app.router.add_get("/_emulator/state", self._handle_state)
        app.router.add_get("/_emulator/socket", self.socket_mode.handle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._port = sock.getsockname()[1]
        self.workspace.public_url = self.base_url

    async def stop(self) -> None:
        await self.events.close()
        await self.socket_mode.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SlackEmulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What to pass as ``base_url`` to ``AsyncWebClient`` (note the trailing slash)."""
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------ misbehaviour

    def inject_fault(
        self,
        method: str,
        status: int | None = None,
        *,
        retry_after: int = 1,
        count: int = 1,
        delay: float | None = None,
        error: str | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``method`` ("*" = any method) misbehave.

        ``status=429`` (the default when nothing else is asked) answers like Slack's
        rate limiter, with ``Retry-After``; other statuses answer that HTTP error;
        ``delay`` answers late (then normally, unless a status is also given);
        ``error`` answers HTTP 200 with that Slack error.
        """
        if status is None and delay is None and error is None:
            status = 429
        for _ in range(count):
            self._faults[method].append(Fault(status, retry_after, delay, error))

    def hold(self, method: str, *, text: str = "") -> Hold:
        """Keep the next call of ``method`` whose text contains ``text`` waiting, before
        Slack acts on it, until ``Hold.release()``; ``Hold.arrived`` is set when it comes."""
        held = Hold(method, text)
        self._holds.append(held)
        return held

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet (rate limits stay)."""
        self._faults.clear()

    def set_rate_limit(self, method: str, per_minute: int | None) -> None:
        """Enforce a per-method limit (Slack's Tier 2 is 20/min) over a sliding minute."""
        if per_minute is None:
            self._per_minute.pop(method, None)
        else:
            self._per_minute[method] = per_minute

    def set_channel_post_limit(self, per_second: int | None = 1) -> None:
        """Slack allows about one chat.postMessage per second per channel; off by default."""
        self._channel_post_limit = per_second

    def _next_fault(self, method: str) -> Fault | None:
        for key in (method, "*"):
            if self._faults[key]:
                return self._faults[key].popleft()
        return None

    def _retry_after(self, method: str, args: dict[str, Any]) -> int | None:
        """Seconds to wait if a configured rate limit is exceeded; otherwise count this call."""
        now = self.workspace.now()
        windows: list[tuple[deque[float], int, float]] = []
        if method in self._per_minute:
            windows.append((self._method_calls[method], self._per_minute[method], 60.0))
        if method == "chat.postMessage" and self._channel_post_limit:
            windows.append(
                (self._channel_posts[self._channel_key(args)], self._channel_post_limit, 1.0)
            )
        for calls, limit, span in windows:
            while calls and calls[0] <= now - span:
                calls.popleft()
            if len(calls) >= limit:
                return max(1, math.ceil(calls[0] + span - now))
        for calls, _, _ in windows:
            calls.append(now)
        return None

    def _channel_key(self, args: dict[str, Any]) -> str:
        """The channel id a post targets, so "#name" and "C123" share one budget."""
        ref = str(args.get("channel"))
        found = self.workspace.channels.get(ref) or self.workspace.channel_by_name(ref.lstrip("#"))
        return found.id if found is not None else ref

    # -------------------------------------------------------------- handlers

    def _note_peer(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.append((str(peer[0]), int(peer[1])))

    async def _handle_api(self, request: web.Request) -> web.Response:
        self._note_peer(request)
        method = request.match_info["method"]
        args = await _read_args(request)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        ws = self.workspace
        if method == "apps.connections.open":
            return self._open_socket_connection(request, args)
        if not ws.handles(method):
            ws.record_call(method, Args(args).raw, "unknown_method")
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        auth_error = self._auth_error(request, args)
        if auth_error:
            ws.record_call(method, Args(args).raw, auth_error)
            return web.json_response({"ok": False, "error": auth_error})
        held = next(
            (h for h in self._holds if h.method == method and h.text in str(args.get("text"))),
            None,
        )
        if held is not None:
            self._holds.remove(held)
            held.arrived.set()
            await held.released.wait()
        fault = self._next_fault(method)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status or fault.error:
                return self._fault_response(method, args, fault)
        retry_after = self._retry_after(method, args)
        if retry_after is not None:
            return self._fault_response(method, args, Fault(429, retry_after, None, None))
        return web.json_response(
            ws.call(method, args), headers={"x-oauth-scopes": ",".join(self.scopes)}
        )

    def _open_socket_connection(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        """Socket Mode's URL, for the app-level token only (a bot token is refused)."""
        token = _token_of(request, args)
        ok = self.app_token is not None and token == self.app_token
        error = None if ok else ("not_allowed_token_type" if token else "not_authed")
        self.workspace.record_call("apps.connections.open", {}, error)
        if error:
            return web.json_response({"ok": False, "error": error})
        url = f"ws://{self._host}:{self.port}/_emulator/socket"
        return web.json_response({"ok": True, "url": url})

    def _fault_response(self, method: str, args: dict[str, Any], fault: Fault) -> web.Response:
        if fault.status == 429:
            error = "ratelimited"
            response = web.json_response(
                {"ok": False, "error": error},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        else:
            error = fault.error or "internal_error"
            response = web.json_response({"ok": False, "error": error}, status=fault.status or 200)
        self.workspace.record_call(method, Args(args).raw, error)
        return response

    def _auth_error(self, request: web.Request, args: dict[str, Any]) -> str | None:
        token = _token_of(request, args)
        if not token:
            return "not_authed"
        return None if token == self.bot_token else "invalid_auth"

    async def _handle_respond(self, request: web.Request) -> web.Response:
        self._note_peer(request)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if request.content_type == "application/json":
            try:
                payload = await request.json()
            except ValueError:
                payload = None
        else:
            form = await request.post()
            payload = json.loads(str(form["payload"])) if "payload" in form else dict(form)
        status, body = self.workspace.respond(request.match_info["hook_id"], payload)
        return web.json_response(body, status=status)

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """Accepts the raw bytes (slack_sdk's way) or a multipart form with one file part."""
        if request.content_type == "multipart/form-data":
            part = await (await request.multipart()).next()
            data = await part.read() if isinstance(part, BodyPartReader) else b""
        else:
            data = await request.read()
        if not store_upload(self.workspace, request.match_info["file_id"], bytes(data)):
            return web.Response(status=404, text="file_not_found")
        return web.Response(text=f"OK - {len(data)}")

    async def _handle_download(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.Response(status=403, text="invalid_auth")
        stored = self.workspace.files.get(request.match_info["file_id"])
        if stored is None or not stored.completed or stored.data is None:
            return web.Response(status=404, text="file_not_found")
        return web.Response(
            body=stored.data, content_type=describe(self.workspace, stored)["mimetype"]
        )

    async def _handle_state(self, request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(self.workspace.dump(), default=str), content_type="application/json"
        )


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Query string plus body; slack_sdk sends some methods as form data, some as JSON."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            args.update(body)
    elif request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _token_of(request: web.Request, args: dict[str, Any]) -> str | None:
    """The token of a Web API call: the Authorization bearer, or the `token` argument."""
    header = request.headers.get("Authorization", "")
    return (
        header.removeprefix("Bearer ").strip()
        if header.startswith("Bearer ")
        else args.get("token")
    )
