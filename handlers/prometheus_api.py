"""Prometheus's HTTP API over aiohttp: the `PrometheusApi` the metrics executor uses.

One GET per call with a hard total timeout and a bounded body, so a Prometheus that
hangs or answers with a huge matrix costs a bounded wait and bounded memory. The
answer's envelope (`status`, `data`, `errorType`, `error`) is checked here; the
executor only sees `data` or an `ExecutorError` fit to show as-is. The base URL may
carry credentials (basic auth): they are never shown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from bot.executors.base import ExecutorError, truncate
from bot.redact import redact

MAX_BODY = 8 * 1024 * 1024  # a week of 15s steps for a few dozen series fits easily
ERROR_CHARS = 200


class PrometheusHttpApi:
    """GETs `<base>/api/v1/...` and unwraps Prometheus's JSON envelope."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._timeout = timeout

    async def get(self, base_url: str, path: str, params: Mapping[str, str]) -> Any:
        url = URL(base_url.rstrip("/") + path)
        shown = str(url.with_user(None).with_password(None).with_query(None))
        started = time.perf_counter()

        def elapsed() -> str:
            return f"{time.perf_counter() - started:.1f}s"

        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                    headers={"User-Agent": "firebreak-metrics", "Accept": "application/json"},
                ) as session,
                session.get(url, params=dict(params), allow_redirects=False) as resp,
            ):
                status, body = resp.status, bytearray()
                # read(n) returns what has arrived, up to n: loop to the end, or past the cap
                while len(body) <= MAX_BODY and (chunk := await resp.content.read(2**16)):
                    body += chunk
        except TimeoutError:
            raise ExecutorError(f"Prometheus did not answer within {elapsed()} ({shown})") from None
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror or type(exc.os_error).__name__
            raise ExecutorError(f"Prometheus unreachable: {why} ({shown})") from None
        except aiohttp.ClientError as exc:
            raise ExecutorError(f"Prometheus failed: {type(exc).__name__} ({shown})") from None
        if len(body) > MAX_BODY:
            raise ExecutorError(f"Prometheus answered more than {MAX_BODY // 2**20} MiB ({shown})")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ExecutorError(f"Prometheus answered {status} without its JSON ({shown})")
        if answer.get("status") != "success":
            kind = str(answer.get("errorType") or status)
            why = truncate(redact(str(answer.get("error") or "")), ERROR_CHARS)
            raise ExecutorError(f"Prometheus refused the request ({kind}): {why}")
        return answer.get("data")
