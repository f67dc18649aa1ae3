"""HTTP health and readiness checks of a service's own endpoints.

One GET with a hard total timeout. Redirects are followed only on the same host: a
health URL that bounces elsewhere (a login page, a CDN) is reported, not chased, so
the bot never ends up requesting hosts nobody configured. The body excerpt is
redacted, since debug endpoints like to print their configuration.
"""

from __future__ import annotations

import time

import aiohttp
from yarl import URL

from bot.executors.base import ExecutionResult, ExecutorError, HttpTarget, build_result, truncate
from bot.redact import redact

BODY_EXCERPT = 500
BODY_READ = 4096
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}


class HttpExecutor:
    """Checks `health` or `readiness` URLs from a service's target config."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._timeout = timeout

    async def check(self, target: HttpTarget, which: str = "health") -> ExecutionResult:
        """GET the endpoint: status, latency and a redacted body excerpt; ok only for 2xx."""
        if which not in ("health", "readiness"):
            raise ExecutorError(f"unknown check {which!r}: use health or readiness")
        url = target.health if which == "health" else target.readiness
        if not url:
            raise ExecutorError(f"no {which} URL is configured for this service")
        shown, current = redact(url), URL(url)
        started = time.perf_counter()

        def elapsed() -> str:
            return f"{time.perf_counter() - started:.1f}s"

        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "firebreak-health-check"},
            ) as session:
                for _ in range(MAX_REDIRECTS + 1):
                    status, reason, body, following = await _get(session, current)
                    if following is None:
                        break
                    if following.host != current.host:
                        summary = (
                            f"{which}: {status} redirect to another host "
                            f"({following.host}) not followed ({shown})"
                        )
                        output = f"GET {shown}\nstatus: {status}\nlocation: {following}"
                        details = {"status": status, "url": shown, "which": which}
                        return build_result(False, summary, output, **details)
                    current = following
                else:
                    raise ExecutorError(
                        f"{which} check of {shown}: more than {MAX_REDIRECTS} redirects"
                    )
        except TimeoutError:
            raise ExecutorError(f"{which} check timed out after {elapsed()}: GET {shown}") from None
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror or type(exc.os_error).__name__
            raise ExecutorError(
                f"{which} endpoint unreachable after {elapsed()}: {why} ({shown})"
            ) from None
        except aiohttp.ClientError as exc:
            reason = type(exc).__name__
            raise ExecutorError(
                f"{which} endpoint failed after {elapsed()}: {reason} ({shown})"
            ) from None
        latency = round((time.perf_counter() - started) * 1000)
        excerpt = truncate(redact(body.decode("utf-8", "replace")).strip(), BODY_EXCERPT)
        healthy = 200 <= status < 300
        summary = f"{which}: {status} {reason} in {latency} ms ({shown})"
        output = f"GET {shown}\nstatus: {status} {reason}\nlatency: {latency} ms\nbody: {excerpt}"
        details = {"status": status, "latency_ms": latency, "url": shown, "which": which}
        return build_result(healthy, summary, output, **details)


async def _get(session: aiohttp.ClientSession, url: URL) -> tuple[int, str, bytes, URL | None]:
    """One GET without following redirects: status, reason, the first BODY_READ bytes
    of the body, and where a redirect points (None when it isn't one)."""
    async with session.get(url, allow_redirects=False) as resp:
        reason, location = resp.reason or "", resp.headers.get("Location")
        if resp.status in _REDIRECTS and location:
            return resp.status, reason, b"", url.join(URL(location))
        body = b""
        while len(body) < BODY_READ and (chunk := await resp.content.read(BODY_READ - len(body))):
            body += chunk
        return resp.status, reason, body, None
