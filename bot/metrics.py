"""Prometheus metrics, in a registry owned by one app instance (no process globals).

Services get the `Metrics` object passed in and count what they do; the
`/metrics` endpoint renders the registry after refreshing the incident gauge
from the database.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Ack latency buckets: Slack's deadline is 3 s; we aim for milliseconds.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents = Gauge(
            "firebreak_incidents",
            "Incidents by severity and status (closed ones excluded).",
            ["severity", "status"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "firebreak_ack_seconds",
            "Time from a Slack request's arrival to Firebreak's answer.",
            ["kind", "command"],
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "firebreak_command_seconds",
            "Time to complete the work behind a command, after the ack.",
            ["command"],
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "firebreak_slack_api_calls_total",
            "Slack Web API calls by method and outcome (ok or the Slack error code).",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.slack_retries = Counter(
            "firebreak_slack_api_retries_total",
            "Slack Web API retries by method and reason (ratelimited, server_error, connection).",
            ["method", "reason"],
            registry=self.registry,
        )
        self.errors = Counter(
            "firebreak_errors_total",
            "Failures reported to users, by where they happened.",
            ["where"],
            registry=self.registry,
        )
        self.nudges = Counter(
            "firebreak_nudges_total",
            "Status-update reminders posted.",
            ["late", "escalated"],
            registry=self.registry,
        )
        self.nudge_failures = Counter(
            "firebreak_nudge_failures_total",
            "Reminders Slack refused (retried with backoff).",
            registry=self.registry,
        )
        self.nudge_delay = Histogram(
            "firebreak_nudge_delay_seconds",
            "How long after its due time a reminder was posted.",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900),
            registry=self.registry,
        )
        self.undeliverable = Counter(
            "firebreak_undeliverable_messages_total",
            "Messages given up for good because Slack refused them permanently, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.runbook_actions = Counter(
            "firebreak_runbook_actions_total",
            "Runbook actions by action, kind and result.",
            ["action", "kind", "result"],
            registry=self.registry,
        )

    def set_incident_counts(self, counts: dict[tuple[str, str], int]) -> None:
        self.incidents.clear()
        for (severity, status), count in counts.items():
            self.incidents.labels(severity, status).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
