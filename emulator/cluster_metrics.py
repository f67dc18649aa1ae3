"""What the demo cluster's Prometheus has scraped from checkout: its history as metrics.

Healthy for days on 1.4.1, then the 1.4.2 deploy 25 minutes ago: 5xx ratio near a
third, p95 latency near two seconds, memory at the limit, restarts climbing, and an
alert firing. A rollback (the cluster calls `healthy(True)`) brings every curve back
from that moment on, so `metrics checkout` in the shell shows the incident and its
mitigation. Values wobble a little, deterministically, to read like a real chart.
"""

from __future__ import annotations

import math
import time
from typing import Any

from emulator.prometheus import Series

SELECTOR = 'app="checkout"'
MIB = 2**20

# The queries the demo's targets.yml gives checkout (as a service's own `queries`).
QUERIES = {
    "error_ratio": 'sum(rate(http_requests_total{$selector,status=~"5.."}[5m]))'
    " / sum(rate(http_requests_total{$selector}[5m]))",
    "p95_latency": "histogram_quantile(0.95, sum by (le) "
    "(rate(http_request_duration_seconds_bucket{$selector}[5m])))",
    "request_rate": "sum(rate(http_requests_total{$selector}[5m]))",
    "memory": "sum(container_memory_working_set_bytes{$selector})",
    "cpu": "sum(rate(container_cpu_usage_seconds_total{$selector}[5m]))",
    "restarts": "sum(increase(kube_pod_container_status_restarts_total{$selector}[1h]))",
}

# name: (healthy value, value on the bad release)
_LEVELS = {
    "error_ratio": (0.002, 0.31),
    "p95_latency": (0.14, 1.9),
    "request_rate": (240.0, 236.0),
    "memory": (3 * 180 * MIB, 2 * 180 * MIB + 251 * MIB),
    "cpu": (0.14, 0.41),
}


class CheckoutMetrics:
    """checkout's health over time, as transitions (unix time, healthy)."""

    def __init__(self, bad_for: float) -> None:
        now = time.time()
        self._changes: list[tuple[float, bool]] = [(now - 30 * 86400, True), (now - bad_for, False)]

    def healthy(self, healthy: bool) -> None:
        """The cluster's pods changed: record it from now on (no-op when unchanged)."""
        if self._changes[-1][1] != healthy:
            self._changes.append((time.time(), healthy))

    def _healthy_at(self, t: float) -> bool:
        return next((h for at, h in reversed(self._changes) if at <= t), True)

    def _bad_since(self, t: float) -> float:
        """Seconds the service has been unhealthy at `t` (0 when healthy)."""
        if self._healthy_at(t):
            return 0.0
        return t - max(at for at, h in self._changes if at <= t and not h)

    def _level(self, name: str) -> Series:
        good, bad = _LEVELS[name]

        def value(t: float) -> float:
            wobble = 1 + 0.03 * math.sin(t / 97) + 0.015 * math.sin(t / 23)
            return (good if self._healthy_at(t) else bad) * wobble

        return value

    def _restarts(self, t: float) -> float:
        # A crash loop backs off to one restart per ~5 minutes; increase over the last hour.
        return float(min(12, math.ceil(self._bad_since(t) / 300))) if self._bad_since(t) else 0.0

    def series(self) -> dict[str, Series]:
        """The FakePrometheus's queries (`$selector` resolved) and their values."""
        functions: dict[str, Series] = {name: self._level(name) for name in _LEVELS}
        functions["restarts"] = self._restarts
        return {QUERIES[name].replace("$selector", SELECTOR): f for name, f in functions.items()}

    def alerts(self) -> list[dict[str, Any]]:
        now = time.time()
        if self._healthy_at(now):
            return []
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - self._bad_since(now)))
        return [
            {
                "labels": {"alertname": "CheckoutHigh5xx", "app": "checkout", "severity": "page"},
                "annotations": {"summary": "checkout answers 5xx to over 5% of requests"},
                "state": "firing",
                "activeAt": since,
                "value": "3.1e-01",
            }
        ]
