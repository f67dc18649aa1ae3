"""What an incident opened from an alert adds to its post-mortem, read from the event log.

The `alert_source` event holds when the alert started firing, so the post-mortem
has a measured "impact began" and a time to detect (alert start to declaration)
instead of a prompt, and the alert's links; the `alert_firing` and
`alert_resolved` events say what else the group did meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.postmortem.history import iso
from storage.models import Event


def alert_section(declared_at: datetime, events: list[Event]) -> dict[str, Any] | None:
    """The `alert` part of the post-mortem document; None for an incident people declared."""
    source = next((e for e in events if e.type == "alert_source"), None)
    if source is None:
        return None
    p = source.payload or {}
    started = datetime.fromisoformat(str(p.get("starts_at"))).astimezone(UTC)
    detect = max(0.0, (declared_at - started).total_seconds())  # a sender's clock may run ahead
    return {
        "started": iso(started),
        "time_to_detect": detect,
        "source": p.get("source"),
        "rule": p.get("rule"),
        "title": p.get("title"),
        "service": p.get("service"),
        "labels": [f"{k}={v}" for k, v in sorted((p.get("labels") or {}).items())][:20],
        "links": [{"text": text, "url": url} for text, url in p.get("links") or []],
        "changes": [
            {
                "at": iso(e.at),
                "status": e.type.removeprefix("alert_"),
                "name": e.payload.get("name"),
            }
            for e in events
            if e.type in ("alert_firing", "alert_resolved")
        ],
    }
