"""Types shared by the executors, and the small formatting helpers their outputs use.

Every executor returns an `ExecutionResult` built by `build_result`, which runs the
text through `bot.redact` one last time: whatever an executor forgot to mask is still
masked before it can reach Slack, the audit log or a log line.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.mrkdwn import truncate as truncate  # re-exported for the executors' cells
from bot.redact import redact


@dataclass(frozen=True)
class ExecutionResult:
    """What an action produced.

    `ok` is False when the operation itself failed or found something unhealthy
    (a health check answering 500); a diagnostic that merely *shows* a problem,
    like a crash-looping pod, is still ok.
    """

    ok: bool
    summary: str
    output: str
    details: dict[str, object] = field(default_factory=dict)
    # A write sent but never answered, whose effect a read-back could not confirm: it
    # may still complete, so it is neither a success nor a failure.
    unknown: bool = False
    # Images and the like, uploaded to the result's thread (a metrics chart).
    files: tuple[ResultFile, ...] = ()


@dataclass(frozen=True)
class ResultFile:
    """A file an action made for people to look at, uploaded beside its output."""

    filename: str
    content: bytes
    title: str


class ExecutorError(Exception):
    """A failure the user should read as-is: unreachable, forbidden, timeout, not found,
    bad state. The message is short, specific and free of secrets."""


class StateChanged(ExecutorError):
    """The target is no longer what the dry run read, so the confirmation, which
    authorised exactly that dry run, does not cover it."""


class Unanswered(ExecutorError):
    """A request was sent and no answer came in time: a write may still land."""


class OutcomeUnknown(ExecutorError):
    """A write was sent, its answer never came, and reading the state back did not
    show it: it may still complete."""


@dataclass(frozen=True)
class KubernetesTarget:
    namespace: str
    deployment: str
    selector: str
    context: str | None = None


@dataclass(frozen=True)
class DockerTarget:
    """A Compose service on a Docker Engine: `host_env` names the environment variable
    holding the engine's address (`unix:///var/run/docker.sock`, `tcp://host:2375`);
    its containers carry the labels `com.docker.compose.project` and `.service`."""

    host_env: str
    compose_project: str
    service: str


@dataclass(frozen=True)
class PostgresTarget:
    url_env: str


@dataclass(frozen=True)
class PrometheusTarget:
    """Where a service's metrics are: the NAME of the environment variable holding the
    Prometheus base URL, the label matchers its series carry (validated names and
    values, rendered by `matchers`), and named PromQL templates with `$selector`."""

    url_env: str
    labels: tuple[tuple[str, str, str], ...]  # (name, "=" or "!=", value)
    queries: tuple[tuple[str, str], ...]

    def matchers(self) -> str:
        """`app="checkout",env!="dev"`: safe to splice, as the catalog allows no quote,
        backslash or brace in a label name or value."""
        return ",".join(f'{name}{op}"{value}"' for name, op, value in self.labels)


@dataclass(frozen=True)
class RedisTarget:
    url_env: str


@dataclass(frozen=True)
class HttpTarget:
    health: str | None = None
    readiness: str | None = None


def build_result(ok: bool, summary: str, output: str, **details: object) -> ExecutionResult:
    """The one way executors make results, so redaction can't be skipped."""
    return ExecutionResult(ok=ok, summary=redact(summary), output=redact(output), details=details)


def mitigation_result(
    dry_run: bool, action: str, output: str, *, note: str, **details: object
) -> ExecutionResult:
    """A mitigation's result: `action` is phrased as done ("scaled x from 3 to 6") and
    becomes "dry run: would have scaled …" for a dry run, whose output ends with `note`
    (what kind of dry run it was)."""
    summary = f"dry run: would have {action}" if dry_run else action
    output += note if dry_run else ""
    return build_result(True, summary, output, **details, dry_run=dry_run)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, like kubectl and psql print them;
    meant for a monospace block in Slack."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def format_age(seconds: float) -> str:
    """Compact ages (`45s`, `12m`, `5h`, `3d`) the way `kubectl get` shows them."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def tally(noun: str, states: Iterable[str], restarts: int, oom: int) -> str:
    """`3 pods: 2 Running, 1 CrashLoopBackOff (12 restarts, 1 OOMKilled)`: the one-line
    summary of a service's pods or containers, the same whatever runs them."""
    counted = Counter(states)
    summary = f"{sum(counted.values())} {noun}: " + ", ".join(
        f"{n} {state}" for state, n in counted.most_common()
    )
    extra = [f"{n} {what}" for n, what in ((restarts, "restarts"), (oom, "OOMKilled")) if n]
    return summary + (f" ({', '.join(extra)})" if extra else "")


def format_bytes(value: float) -> str:
    """Binary units the way `redis-cli` and Grafana show them: `512 B`, `1.5 MiB`."""
    if not math.isfinite(value):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    raise AssertionError("unreachable")


def age_of(when: datetime | str | None) -> str:
    """How long ago an API timestamp (a datetime or RFC 3339 text) was, as `format_age`."""
    if when is None:
        return "?"
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return format_age((datetime.now(UTC) - when).total_seconds())


class HttpChecker(Protocol):
    """GETs a service's health or readiness URL (`handlers/http_check.py` over aiohttp)."""

    async def check(self, target: HttpTarget, which: str = "health") -> ExecutionResult: ...


class PrometheusApi(Protocol):
    """Prometheus's HTTP API (`handlers/prometheus_api.py` over aiohttp). Each method
    returns the `data` of a successful answer and raises `ExecutorError` otherwise
    (unreachable, timeout, an error status, a query Prometheus rejects)."""

    async def get(self, base_url: str, path: str, params: Mapping[str, str]) -> Any: ...
