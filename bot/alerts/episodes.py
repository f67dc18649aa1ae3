"""What a delivery or a click changes in the database: one transaction each.

A group key (Alertmanager's `groupKey`, or a generic `dedup_key`) has at most
one live episode (`AlertGroup.active_key` is unique):

- no live episode: a firing alert not already handled opens one, and its rule
  declares an incident, offers it, or ignores it;
- a live episode: each alert that newly fires or resolves is added to the
  incident's timeline (and queued for its channel); nothing new is opened. When
  every alert has resolved, an `auto_resolve` rule marks the incident's resolve
  as due; an undeclared episode ends, and the next firing starts a new one.

What Slack is owed afterwards is left to `AlertService`, which reads it back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot import commands as c
from bot.alerts import views
from bot.alerts.payloads import TITLE_MAX, Alert, Delivery
from bot.clock import Clock
from bot.incidents.service import IncidentService, Request
from bot.mrkdwn import mention, truncate
from bot.runbooks import Runbooks
from storage import alerts as store
from storage import incidents as incident_store
from storage.models import AlertGroup, Incident
from storage.outbox import enqueue

log = logging.getLogger(__name__)

SYSTEM = "firebreak"
STATE_OF_ACTION = {"declare": "declared", "offer": "offered", "ignore": "ignored"}


@dataclass(frozen=True)
class Applied:
    """A delivery changed this group: Slack may be owed something."""

    group_id: int
    refresh_offer: bool = False


class Episodes:
    def __init__(self, *, runbooks: Runbooks, clock: Clock, incidents: IncidentService) -> None:
        self._runbooks = runbooks
        self._clock = clock
        self._incidents = incidents

    def apply(self, session: Session, delivery_id: int) -> Applied | None:
        """Apply one recorded delivery (once: it is marked processed in the same transaction)."""
        row = store.delivery(session, delivery_id)
        if row is None or row.processed_at is not None:
            return None
        delivery = Delivery.from_json(row.payload)
        now = self._clock.now()
        group = store.active_group(session, row.key_hash)
        if group is not None and self._incident_over(session, group):
            _end(group, now)
            group = None
        applied: Applied | None = None
        if group is None:
            group, outcome = self._open(session, delivery, row.received_at, now)
            if group is not None:
                applied = Applied(group.id)
        if group is not None and applied is None:
            outcome, changed, refresh = self._update(session, group, delivery, now)
            applied = Applied(group.id, refresh) if changed else None
        store.processed(session, delivery_id, outcome, now)
        return applied

    def _open(
        self, session: Session, delivery: Delivery, received_at: datetime, now: datetime
    ) -> tuple[AlertGroup | None, str]:
        """Start an episode for firing alerts not handled before; (None, why) otherwise.

        When a concurrent delivery opened the episode first, that one is returned (the
        caller then applies this delivery to it as an update).
        """
        previous = store.last_group(session, delivery.key_hash)
        known: dict[str, Any] = dict(previous.alerts) if previous is not None else {}
        fresh = [a for a in delivery.firing() if _fired(a, known.get(a.fingerprint))]
        if not fresh:
            return None, "nothing new is firing"
        route = self._runbooks.alerts.route(delivery.labels())
        annotations = delivery.annotations()
        group = AlertGroup(
            source=delivery.source,
            key_hash=delivery.key_hash,
            dedup_key=delivery.dedup_key,
            active_key=delivery.key_hash,
            rule=route.rule,
            action=route.action,
            state=STATE_OF_ACTION[route.action],
            auto_resolve=route.auto_resolve,
            severity=route.severity,
            service=route.service[:128] if route.service else None,
            title=_title(delivery, fresh),
            description=annotations.get("description", ""),
            labels=delivery.labels(),
            annotations=annotations,
            links=views.links_of(fresh[0].generator_url, annotations, delivery.external_url),
            starts_at=min((a.starts_at for a in fresh if a.starts_at), default=received_at),
            received_at=received_at,
            alerts={a.fingerprint: _entry(a) for a in delivery.alerts},
            resolve_due=False,
            source_posted=False,
        )
        if store.add_group(session, group) is None:
            return store.active_group(session, delivery.key_hash), ""
        if route.action == "declare":
            incident = self._declare(session, group, SYSTEM, now)
            return group, f"declared incident #{incident.id} (rule {route.rule})"
        return group, f"{group.state} (rule {route.rule})"

    def _update(
        self, session: Session, group: AlertGroup, delivery: Delivery, now: datetime
    ) -> tuple[str, bool, bool]:
        """Add what changed to the live episode: (outcome, changed, refresh the offer)."""
        alerts = dict(group.alerts)
        changes: list[tuple[Alert, str]] = []
        for alert in delivery.alerts:
            known = alerts.get(alert.fingerprint)
            if alert.status == "firing" and _fired(alert, known):
                changes.append((alert, "firing"))
            elif alert.status == "resolved" and known and known["status"] == "firing":
                changes.append((alert, "resolved"))
            else:
                continue
            alerts[alert.fingerprint] = _entry(alert)
        if not changes:
            return f"no change to group #{group.id}", False, False
        group.alerts = alerts
        incident = None
        if group.incident_id is not None:
            incident = incident_store.get(session, group.incident_id, for_update=True)
        if incident is not None:
            for alert, status in changes:
                self._record_change(session, incident, group, alert, status, now)
        refresh = False
        if all(entry["status"] == "resolved" for entry in alerts.values()):
            if incident is not None:
                group.resolve_due = group.auto_resolve and incident.status != "resolved"
            else:  # offered, dismissed or ignored, and over before anyone declared
                refresh = group.state == "offered"
                _end(group, now)
        where = f"incident #{incident.id}" if incident else f"group #{group.id}"
        counts = ", ".join(f"{sum(s == k for _, s in changes)} {k}" for k in ("firing", "resolved"))
        return f"added to {where}: {counts}", True, refresh

    def decide(self, session: Session, group_id: int, declare: bool, request: Request) -> str:
        """Declare incident / Dismiss on an offer; the reply, or "" when declared."""
        group = store.group(session, group_id, for_update=True)
        if group is None:
            return "That alert is no longer known to Firebreak."
        if group.state != "offered" or group.active_key is None:
            return _already(group)
        if not incident_store.claim_request(session, request.key, self._clock.now()):
            return ""  # the same click, delivered again
        now = self._clock.now()
        group.decided_by, group.decided_at = request.actor, now
        if declare:
            self._declare(session, group, request.actor, now, origin=request.channel_id)
            return ""
        group.state = "dismissed"
        log.info("alert group %s dismissed by %s", group.id, request.actor)
        return "Dismissed. Firebreak will not offer this alert again while it keeps firing."

    def _declare(
        self, session: Session, group: AlertGroup, actor: str, now: datetime, origin: str = ""
    ) -> Incident:
        """Open the group's incident (once: keyed by the group) and record its source."""
        command = c.Declare(
            severity=group.severity,
            title=group.title,
            description=group.description,
            service=group.service,
            labels=tuple((str(k), str(v)) for k, v in sorted(group.labels.items())),
        )
        request = Request(actor=actor, channel_id=origin, key=f"alert:{group.id}")
        incident_id = self._incidents.record_declaration(session, command, request)
        incident = incident_store.get(session, incident_id)
        assert incident is not None
        group.state, group.incident_id = "declared", incident_id
        incident_store.append_event(
            session,
            incident,
            "alert_source",
            SYSTEM,
            now,
            source=group.source,
            rule=group.rule,
            dedup_key=truncate(group.dedup_key, 500),
            title=group.title,
            service=group.service,
            labels=group.labels,
            annotations=group.annotations,
            generator_url=next((a.get("generator_url") for a in group.alerts.values()), ""),
            starts_at=group.starts_at.isoformat(),
            received_at=group.received_at.isoformat(),
            links=group.links,
        )
        return incident

    def _record_change(
        self,
        session: Session,
        incident: Incident,
        group: AlertGroup,
        alert: Alert,
        status: str,
        now: datetime,
    ) -> None:
        incident_store.append_event(
            session,
            incident,
            f"alert_{status}",
            SYSTEM,
            now,
            name=alert.name,
            summary=alert.summary,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at.isoformat() if alert.starts_at else None,
            generator_url=alert.generator_url,
        )
        if incident.channel_id:  # before the channel exists, the alert details cover it
            source = views.link("source", alert.generator_url) if alert.generator_url else ""
            text = views.render(
                self._runbooks.templates,
                "alert_changed.j2",
                group,
                alert=alert,
                status=status,
                alert_link=source,
            )
            enqueue(session, incident.id, "post", now, channel=incident.channel_id, text=text)

    def _incident_over(self, session: Session, group: AlertGroup) -> bool:
        if group.incident_id is None:
            return False
        incident = incident_store.get(session, group.incident_id)
        return incident is None or incident.status == "resolved" or incident.closed_at is not None


def _fired(alert: Alert, known: dict[str, Any] | None) -> bool:
    """Whether a firing alert is news: unknown, firing again after it resolved, or firing
    since another moment than the one recorded (it resolved in between, unheard)."""
    if known is None:
        return True
    starts = alert.starts_at.isoformat() if alert.starts_at else None
    if known["status"] == "resolved":
        return starts is None or starts != known.get("starts_at")
    return starts is not None and starts != known.get("starts_at")


def _entry(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        "name": truncate(alert.name, 200),
        "generator_url": alert.generator_url if views.safe_url(alert.generator_url) else "",
    }


def _title(delivery: Delivery, fresh: list[Alert]) -> str:
    summary = delivery.common_annotations.get("summary") or fresh[0].summary
    more = len(fresh) - 1
    return truncate(summary.strip() + (f" (+{more} more)" if more else ""), TITLE_MAX) or "Alert"


def _end(group: AlertGroup, now: datetime) -> None:
    group.active_key, group.ended_at = None, now


def _already(group: AlertGroup) -> str:
    who = mention(group.decided_by) if group.decided_by else "Firebreak"
    if group.state == "declared":
        return f"An incident was already declared for this alert by {who}."
    if group.state == "dismissed":
        return f"{who} already dismissed this alert."
    return "This alert resolved before anyone declared an incident."
