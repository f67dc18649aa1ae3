"""A fake Prometheus HTTP API for `firebreak shell` and `firebreak demo`.

The tests run a real Prometheus (tests/backends.py); the shell has none, so this
answers `/api/v1/query`, `/api/v1/query_range` and `/api/v1/alerts` with Prometheus's
own JSON shapes. It evaluates no PromQL: it knows the exact queries it was given, each
a function of time (the simulated cluster's history), and refuses any other query as
Prometheus refuses a bad one (400, `bad_data`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from emulator.loopback import LoopbackServer

Series = Callable[[float], float | None]  # unix time -> value, None where nothing was scraped
MAX_POINTS = 11_000  # Prometheus's own limit per series in a range query


class FakePrometheus(LoopbackServer):
    """`series` maps a query's exact text to its values over time; `alerts` returns the
    alerts as `/api/v1/alerts` lists them."""

    def __init__(
        self, series: Mapping[str, Series], alerts: Callable[[], list[dict[str, Any]]]
    ) -> None:
        super().__init__()
        self._series = series
        self._alerts = alerts

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        app.router.add_get("/api/v1/query_range", self._query_range)
        app.router.add_get("/api/v1/alerts", self._alerts_route)
        return app

    def _lookup(self, request: web.Request) -> Series:
        query = " ".join(request.query.get("query", "").split())
        known = {" ".join(q.split()): s for q, s in self._series.items()}
        if query not in known:
            raise _bad_data(f"the simulated Prometheus does not know the query {query!r}")
        return known[query]

    async def _query(self, request: web.Request) -> web.Response:
        series = self._lookup(request)
        at = _number(request.query.get("time", "0"), "time")
        value = series(at)
        result = [] if value is None else [{"metric": {}, "value": [at, _text(value)]}]
        return _success({"resultType": "vector", "result": result})

    async def _query_range(self, request: web.Request) -> web.Response:
        series = self._lookup(request)
        start, end = (_number(request.query.get(k, ""), k) for k in ("start", "end"))
        step = _number(request.query.get("step", ""), "step")
        if step <= 0 or end < start:
            raise _bad_data("end timestamp must not be before start time, step must be > 0")
        if (end - start) / step > MAX_POINTS:
            raise _bad_data("exceeded maximum resolution of 11,000 points per timeseries")
        points = []
        for i in range(int((end - start) // step) + 1):
            t = start + i * step
            value = series(t)
            if value is not None:
                points.append([t, _text(value)])
        result = [{"metric": {}, "values": points}] if points else []
        return _success({"resultType": "matrix", "result": result})

    async def _alerts_route(self, _: web.Request) -> web.Response:
        return _success({"alerts": self._alerts()})


def _success(data: object) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def _bad_data(error: str) -> web.HTTPBadRequest:
    body = {"status": "error", "errorType": "bad_data", "error": error}
    return web.HTTPBadRequest(text=web.json_response(body).text, content_type="application/json")


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad_data(f'invalid parameter "{name}": cannot parse "{raw}"') from None
    if not math.isfinite(value):
        raise _bad_data(f'invalid parameter "{name}"')
    return value


def _text(value: float) -> str:
    """Sample values travel as strings, as Prometheus sends them."""
    return repr(float(value)) if math.isfinite(value) else "NaN"
