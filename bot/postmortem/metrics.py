"""Response metrics, read from the event log (never from `updated_at`-style columns).

- acknowledged: the first action by the commander of the moment, or the first
  status update by anyone, after the declaration;
- mitigated: the status first set to `monitoring`, or the first mitigation
  that ran successfully, whichever came first;
- resolved: the last `resolved` not undone by a later reopening.

A moment the log does not hold stays None: the post-mortem says "not
recorded" rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import Event

# Events that are not somebody acting on the incident.
_NOT_ACTIONS = frozenset({"declared", "channel_created", "setup_failed", "invite_failed", "nudge"})


@dataclass(frozen=True)
class Metrics:
    declared_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None

    def since_declared(self, moment: datetime | None) -> timedelta | None:
        return None if moment is None else moment - self.declared_at

    def as_dict(self) -> dict[str, float | None]:
        """Seconds from the declaration, for the JSON document."""

        def seconds(moment: datetime | None) -> float | None:
            delta = self.since_declared(moment)
            return None if delta is None else delta.total_seconds()

        return {
            "time_to_acknowledge": seconds(self.acknowledged_at),
            "time_to_mitigate": seconds(self.mitigated_at),
            "time_to_resolve": seconds(self.resolved_at),
        }


def compute(declared_at: datetime, events: list[Event]) -> Metrics:
    commander: str | None = None
    acknowledged = mitigated = resolved = None
    for event in events:
        p = event.payload or {}
        if acknowledged is None and event.type not in _NOT_ACTIONS:
            # The commander of the moment: naming a commander is not yet one acting.
            by_commander = commander is not None and event.actor == commander
            if event.type == "update" or by_commander:
                acknowledged = event.at
        if event.type == "role" and p.get("role") == "commander":
            commander = p.get("user")
        if mitigated is None and (
            (event.type == "status" and p.get("new") == "monitoring")
            or (event.type == "mitigation_executed" and p.get("ok"))
        ):
            mitigated = event.at
        if event.type == "resolved":
            resolved = event.at
        elif event.type == "status" and p.get("old") == "resolved":
            resolved = None  # reopened
    return Metrics(declared_at, acknowledged, mitigated, resolved)
