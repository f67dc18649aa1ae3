"""Response metrics, read from the event log (never from `updated_at`-style columns).

- acknowledged: when a person is known to be on the incident. That is the
  declaration itself when a person declared it; for an incident declared
  automatically, the first thing a person did on it (any recorded action:
  a command, a tick, a form) or the on-call's acknowledgement in PagerDuty, at
  the time PagerDuty gives. Acknowledgement is never later than
  mitigation or resolution: whoever mitigated or resolved had seen it.
- mitigated: the status first set to `monitoring`, or the first mitigation
  that ran successfully, whichever came first;
- resolved: the last `resolved` not undone by a later reopening.

This is the one definition: the post-mortem's table and its JSON form read
it from here, and the template's Metrics section states it in words.
A moment the log does not hold stays None: the post-mortem says "not
recorded" rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import Event

# Slack user IDs. Firebreak itself (`firebreak`) and integrations are not people.
_PERSON = re.compile(r"[UW][A-Z0-9]+")


def is_person(actor: str) -> bool:
    return _PERSON.fullmatch(actor) is not None


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


def _occurred(event: Event) -> datetime:
    """When PagerDuty says the acknowledgement happened (its webhook may arrive later)."""
    try:
        occurred = datetime.fromisoformat(str(event.payload.get("occurred_at")))
    except ValueError:
        return event.at
    return occurred if occurred.tzinfo is not None and occurred <= event.at else event.at


def compute(declared_at: datetime, events: list[Event]) -> Metrics:
    acted = mitigated = first_resolved = resolved = None
    for event in events:
        p = event.payload or {}
        if acted is None and is_person(event.actor):
            acted = event.at  # the declaration itself when a person declared it
        if event.type == "paging.acknowledged":
            paged_ack = _occurred(event)
            acted = paged_ack if acted is None else min(acted, paged_ack)
        if mitigated is None and (
            (event.type == "status" and p.get("new") == "monitoring")
            or (event.type == "mitigation_executed" and p.get("ok"))
        ):
            mitigated = event.at
        if event.type == "resolved":
            resolved = event.at
            first_resolved = first_resolved or event.at
        elif event.type == "status" and p.get("old") == "resolved":
            resolved = None  # reopened
    bounds = [moment for moment in (acted, mitigated, first_resolved) if moment is not None]
    return Metrics(declared_at, min(bounds, default=None), mitigated, resolved)


def response(events: list[Event], measured: Metrics) -> dict[str, object] | None:
    """Time to acknowledge against the response target in force (the declaration's, or
    the last severity change's), and whether Firebreak had to escalate; None for logs
    that predate recording the target."""
    target_text, target = None, None
    for event in events:
        p = event.payload or {}
        if event.type in ("declared", "severity") and p.get("response_seconds"):
            target_text, target = str(p.get("response_time")), float(p["response_seconds"])
    if target is None:
        return None
    taken = measured.as_dict()["time_to_acknowledge"]
    return {
        "target": target_text,
        "target_seconds": target,
        "time_to_acknowledge": taken,
        "met": None if taken is None else taken <= target,
        "escalated": any(e.type == "response_overdue" for e in events),
    }
