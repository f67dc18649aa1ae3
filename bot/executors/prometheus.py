"""Metrics and alerts of a service, read from Prometheus's HTTP API.

`metrics` runs the service's named PromQL queries twice: once as an instant query for
the current value (`/api/v1/query`) and once over the requested window for the trend
(`/api/v1/query_range`), then answers with a one-line summary, a table, and a chart.
The queries are templates from `targets.yml` (or the bundled defaults below, the
seeds' 5xx ratio, p95 latency, request rate, memory, CPU and restarts); the only
thing spliced into them is `$selector`, the service's validated label matchers.
Nothing a user types reaches PromQL: `since` is a bounded number of seconds.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.durations import compact_duration
from bot.executors import chart
from bot.executors.base import (
    ExecutionResult,
    ExecutorError,
    PrometheusApi,
    PrometheusTarget,
    ResultFile,
    build_result,
    format_age,
    format_bytes,
    format_table,
    truncate,
)
from bot.redact import redact

T = TypeVar("T")
SELECTOR = "$selector"
MAX_SERIES = 5  # rows per query in the table; the rest are counted
MAX_POINTS = 240  # per series in the trend: plenty for a chart a few inches wide
MIN_STEP = 15  # seconds; Prometheus's default scrape interval

# name: (PromQL, unit). Names are how the summary and the chart label a value, and
# how a service's own query of the same name gets its unit.
DEFAULT_QUERIES: dict[str, tuple[str, str]] = {
    "error_ratio": (
        'sum(rate(http_requests_total{$selector,status=~"5.."}[5m]))'
        " / sum(rate(http_requests_total{$selector}[5m]))",
        "ratio",
    ),
    "p95_latency": (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(http_request_duration_seconds_bucket{$selector}[5m])))",
        "seconds",
    ),
    "request_rate": ("sum(rate(http_requests_total{$selector}[5m]))", "per_second"),
    "memory": ("sum(container_memory_working_set_bytes{$selector})", "bytes"),
    "cpu": ("sum(rate(container_cpu_usage_seconds_total{$selector}[5m]))", "cores"),
    "restarts": ("sum(increase(kube_pod_container_status_restarts_total{$selector}[1h]))", "count"),
}


def _number(value: float) -> str:
    """Three significant figures (`9.09`, `725`, `0.085`), thousands grouped."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


FORMATS: dict[str, Callable[[float], str]] = {
    "ratio": lambda v: f"{_number(v * 100)}%" if math.isfinite(v) else "n/a",
    "seconds": lambda v: f"{_number(v * 1000)} ms" if math.isfinite(v) else "n/a",
    "per_second": lambda v: f"{_number(v)}/s" if math.isfinite(v) else "n/a",
    "bytes": format_bytes,
    "cores": lambda v: f"{_number(v)} cores" if math.isfinite(v) else "n/a",
    "count": _number,
}


def unit_format(name: str) -> Callable[[float], str]:
    """How a query's values read: by the unit of the default query of that name."""
    unit = DEFAULT_QUERIES.get(name, ("", "count"))[1]
    return FORMATS[unit]


@dataclass(frozen=True)
class _Outcome:
    """One query's instant vector and range matrix, or why it failed."""

    name: str
    promql: str
    now: list[tuple[str, float]]  # (series legend, value)
    trend: list[tuple[str, list[tuple[float, float]]]]
    error: str | None = None


class PrometheusExecutor:
    """Runs a target's PromQL templates and reads its alerts through `PrometheusApi`."""

    def __init__(
        self, api: PrometheusApi, environ: Mapping[str, str] = os.environ, timeout: float = 10.0
    ) -> None:
        self._api = api
        self._environ = environ
        self._timeout = timeout

    def _base_url(self, target: PrometheusTarget) -> str:
        url = self._environ.get(target.url_env, "").strip()
        if not url:
            raise ExecutorError(f"{target.url_env} is not set: it names the Prometheus URL")
        return url

    async def _within(self, work: Awaitable[T]) -> T:
        """`work`, or a clear error once the executor's own deadline passes."""
        try:
            async with asyncio.timeout(self._timeout):
                return await work
        except TimeoutError:
            raise ExecutorError(f"Prometheus did not answer within {self._timeout:g}s") from None

    async def metrics(self, target: PrometheusTarget, since: int = 3600) -> ExecutionResult:
        """Current values, their range over `since` seconds, and a trend chart."""
        base = self._base_url(target)
        end = time.time()
        start = end - since
        step = max(MIN_STEP, math.ceil(since / MAX_POINTS))
        selector = target.matchers()
        outcomes = await self._within(
            asyncio.gather(
                *(
                    self._run(base, name, template.replace(SELECTOR, selector), start, end, step)
                    for name, template in target.queries
                )
            )
        )
        if all(o.error for o in outcomes):  # Prometheus is down, or every query is wrong
            raise ExecutorError(str(outcomes[0].error))
        window = compact_duration(since)
        summary = f"last {window}: " + " · ".join(_headline(o) for o in outcomes)
        rows: list[list[object]] = []
        for o in outcomes:
            rows.extend(_rows(o))
        queries = "\n".join(f"{o.name}: {o.promql}" for o in outcomes)
        output = f"{format_table(['QUERY', 'SERIES', 'NOW', 'MIN', 'MAX'], rows)}\n\n{queries}"
        panels = [
            chart.Panel(o.name.replace("_", " "), o.trend, unit_format(o.name)) for o in outcomes
        ]
        title = f"{selector}, last {window} (UTC)"
        png = await asyncio.to_thread(chart.render, title, panels)
        result = build_result(True, summary, output, since=since, step=step)
        stamp = datetime.fromtimestamp(end, UTC).strftime("%Y%m%d-%H%M%S")
        image = ResultFile(f"metrics-{stamp}.png", png, f"Trend over the last {window}")
        return replace(result, files=(image,))

    async def _run(
        self, base: str, name: str, promql: str, start: float, end: float, step: int
    ) -> _Outcome:
        """Both reads of one query; a failure is this query's row, not the whole answer
        (the other read is cancelled, not left running)."""
        window = {"start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        error = None
        try:
            async with asyncio.TaskGroup() as group:
                instant = group.create_task(
                    self._api.get(base, "/api/v1/query", {"query": promql, "time": f"{end:.3f}"})
                )
                ranged = group.create_task(
                    self._api.get(base, "/api/v1/query_range", {"query": promql, **window})
                )
        except* ExecutorError as failed:
            error = str(failed.exceptions[0])
        if error is not None:
            return _Outcome(name, promql, [], [], error=error)
        try:
            return _Outcome(name, promql, _vector(instant.result()), _matrix(ranged.result()))
        except ExecutorError as exc:
            return _Outcome(name, promql, [], [], error=str(exc))

    async def alerts(self, target: PrometheusTarget) -> ExecutionResult:
        """The service's firing alerts: those whose labels satisfy its matchers."""
        base = self._base_url(target)
        data = await self._within(self._api.get(base, "/api/v1/alerts", {}))
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if not isinstance(alerts, list):
            raise ExecutorError("Prometheus's alert list had an unexpected shape")
        mine = [a for a in alerts if isinstance(a, dict) and _matches(target, a.get("labels"))]
        firing = [a for a in mine if a.get("state") == "firing"]
        pending = len(mine) - len(firing)
        later = f" ({pending} pending)" if pending else ""
        if not firing:
            return build_result(True, f"no firing alerts{later}", "", firing=0, pending=pending)
        now = time.time()
        rows = [_alert_row(a, now) for a in sorted(firing, key=_active_at)]
        names = sorted({str(a["labels"].get("alertname", "?")) for a in firing})
        summary = f"{len(firing)} firing: {truncate(', '.join(names), 150)}{later}"
        output = format_table(["ALERT", "SEVERITY", "FOR", "SUMMARY"], rows)
        return build_result(True, summary, output, firing=len(firing), pending=pending)


def _headline(o: _Outcome) -> str:
    label = o.name.replace("_", " ")
    if o.error:
        return f"{label} error"
    if not o.now:
        return f"{label} no data"
    more = f" (+{len(o.now) - 1})" if len(o.now) > 1 else ""
    return f"{label} {unit_format(o.name)(o.now[0][1])}{more}"


def _rows(o: _Outcome) -> list[list[object]]:
    if o.error:
        return [[o.name, "", f"error: {truncate(o.error, 120)}", "", ""]]
    if not o.now and not o.trend:
        return [[o.name, "", "no data", "", ""]]
    fmt = unit_format(o.name)
    trend = dict(o.trend)
    legends = [legend for legend, _ in o.now] or [legend for legend, _ in o.trend]
    current = dict(o.now)
    rows: list[list[object]] = []
    for legend in legends[:MAX_SERIES]:
        values = [v for _, v in trend.get(legend, []) if math.isfinite(v)]
        now = fmt(current[legend]) if legend in current else "no data"
        low, high = (fmt(min(values)), fmt(max(values))) if values else ("", "")
        rows.append([o.name, truncate(legend, 60) or "-", now, low, high])
    if len(legends) > MAX_SERIES:
        rows.append([o.name, f"… {len(legends) - MAX_SERIES} more series", "", "", ""])
    return rows


def _legend(metric: object) -> str:
    if not isinstance(metric, dict):
        return ""
    return redact(",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__"))


def _float(raw: object) -> float:
    try:
        return float(str(raw))
    except ValueError:
        return math.nan


def _vector(data: Any) -> list[tuple[str, float]]:
    """An instant answer as (legend, value); a scalar answer is one unnamed series."""
    if not isinstance(data, dict):
        raise ExecutorError("Prometheus's answer had an unexpected shape")
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        return [("", _float(result[1]))]
    if data.get("resultType") != "vector" or not isinstance(result, list):
        return []
    return [
        (_legend(s.get("metric")), _float(s["value"][1]))
        for s in result
        if isinstance(s, dict) and isinstance(s.get("value"), list) and len(s["value"]) == 2
    ]


def _matrix(data: Any) -> list[tuple[str, list[tuple[float, float]]]]:
    """A range answer as (legend, [(unix time, value)]); malformed points are skipped."""
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        return []
    series = data.get("result")
    return [
        (
            _legend(s.get("metric")),
            [
                (t, _float(v))
                for t, v in (p for p in s["values"] if isinstance(p, list) and len(p) == 2)
                if isinstance(t, int | float)
            ],
        )
        for s in (series if isinstance(series, list) else [])
        if isinstance(s, dict) and isinstance(s.get("values"), list)
    ]


def _matches(target: PrometheusTarget, labels: object) -> bool:
    if not isinstance(labels, dict):
        return False
    return all((labels.get(name, "") == value) == (op == "=") for name, op, value in target.labels)


def _active_at(alert: dict[str, Any]) -> str:
    return str(alert.get("activeAt") or "")


def _alert_row(alert: dict[str, Any], now: float) -> Sequence[object]:
    labels, notes = alert.get("labels") or {}, alert.get("annotations") or {}
    since = ""
    try:
        active = datetime.fromisoformat(str(alert.get("activeAt")).replace("Z", "+00:00"))
        since = format_age(now - active.timestamp())
    except ValueError:
        pass
    text = notes.get("summary") or notes.get("description") or ""
    return [
        truncate(redact(str(labels.get("alertname", "?"))), 40),
        truncate(redact(str(labels.get("severity", ""))), 12),
        since,
        truncate(" ".join(redact(str(text)).split()), 100),
    ]
