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
                    async with session.get(current, allow_redirects=False) as resp:
                        location = resp.headers.get("Location")
                        if resp.status not in _REDIRECTS or not location:
                            status, reason = resp.status, resp.reason or ""
                            body = await resp.content.read(BODY_READ)
                            break
                    following = current.join(URL(location))
                    if following.host != current.host:
                        summary = (
                            f"{which}: {resp.status} redirect to another host "
                            f"({following.host}) not followed ({shown})"
                        )
                        output = f"GET {shown}\nstatus: {resp.status}\nlocation: {following}"
                        return build_result(False, summary, output, status=resp.status, url=shown)
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
