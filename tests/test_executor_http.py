"""HttpExecutor against a local aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from bot.executors.base import ExecutorError, HttpTarget
from handlers.http_check import HttpExecutor


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


def app(port: dict[str, int]) -> web.Application:
    """One endpoint per case; `port` is filled in once the server is listening."""
    answers = {
        "health": lambda: web.json_response({"status": "ok"}),
        "ready": lambda: web.Response(status=500, text="database: down"),
        "debug": lambda: web.Response(
            text="ok DATABASE_URL=postgres://app:hunter2@db/app token=xoxb-1-2-abc"
        ),
        "big": lambda: web.Response(text="x" * 10_000),
        "moved": lambda: redirect("/health"),
        "away": lambda: redirect(f"http://localhost:{port['port']}/health"),
        "loop": lambda: redirect("/loop"),
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "slow":
            await asyncio.sleep(3)
            return web.Response(text="too late")
        return answers[name]()

    application = web.Application()
    application.router.add_get("/{name}", handle)
    return application


@pytest_asyncio.fixture
async def base_url() -> AsyncIterator[str]:
    holder: dict[str, int] = {}
    runner = web.AppRunner(app(holder), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    holder["port"] = runner.addresses[0][1]
    yield f"http://127.0.0.1:{holder['port']}"
    await runner.cleanup()


async def test_healthy_endpoint(base_url):
    result = await HttpExecutor().check(HttpTarget(health=f"{base_url}/health"))
    assert result.ok
    assert result.summary.startswith("health: 200 OK in ") and result.summary.endswith(
        f" ms ({base_url}/health)"
    )
    assert result.details["status"] == 200 and isinstance(result.details["latency_ms"], int)
    assert 'body: {"status": "ok"}' in result.output


async def test_500_is_not_ok(base_url):
    target = HttpTarget(health=f"{base_url}/health", readiness=f"{base_url}/ready")
    result = await HttpExecutor().check(target, "readiness")
    assert not result.ok and result.details["status"] == 500
    assert result.summary.startswith("readiness: 500 Internal Server Error")
    assert "body: database: down" in result.output


async def test_slow_endpoint_times_out_with_elapsed_time(base_url):
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"^health check timed out after 0\.\ds: GET "):
        await HttpExecutor(timeout=0.3).check(HttpTarget(health=f"{base_url}/slow"))
    assert time.monotonic() - started < 1.5


async def test_unreachable_endpoint():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ExecutorError, match="^health endpoint unreachable after .*s: "):
        await HttpExecutor(timeout=2).check(HttpTarget(health=f"http://127.0.0.1:{port}/health"))


async def test_body_is_redacted_and_short(base_url):
    result = await HttpExecutor().check(HttpTarget(health=f"{base_url}/debug"))
    assert "hunter2" not in result.output and "xoxb-1-2-abc" not in result.output
    assert "postgres://app:***@db/app" in result.output
    big = await HttpExecutor().check(HttpTarget(health=f"{base_url}/big"))
    assert len(big.output.split("body: ", 1)[1]) <= 500


async def test_redirects_are_followed_on_the_same_host_only(base_url):
    same = await HttpExecutor().check(HttpTarget(health=f"{base_url}/moved"))
    assert same.ok and same.details["status"] == 200
    away = await HttpExecutor().check(HttpTarget(health=f"{base_url}/away"))
    assert not away.ok and away.details["status"] == 302
    assert "redirect to another host (localhost) not followed" in away.summary
    with pytest.raises(ExecutorError, match="more than 5 redirects"):
        await HttpExecutor().check(HttpTarget(health=f"{base_url}/loop"))


async def test_url_credentials_are_not_shown(base_url):
    url = base_url.replace("http://", "http://monitor:s3cret@") + "/health"
    result = await HttpExecutor().check(HttpTarget(health=url))
    assert "s3cret" not in result.summary + result.output + str(result.details)


async def test_missing_url_and_unknown_check():
    with pytest.raises(ExecutorError, match="^no readiness URL is configured for this service$"):
        await HttpExecutor().check(HttpTarget(health="http://127.0.0.1/health"), "readiness")
    with pytest.raises(ExecutorError, match="unknown check 'liveness'"):
        await HttpExecutor().check(HttpTarget(health="http://127.0.0.1/health"), "liveness")
