"""PagerDuty's webhooks v3: the signature check and the few fields Firebreak reads.

Pure functions, so the HTTP route only authenticates, parses and answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

HANDLED = ("incident.acknowledged", "incident.resolved")


@dataclass(frozen=True)
class PagerDutyEvent:
    id: str
    type: str
    incident_key: str | None
    pagerduty_incident: str
    agent_id: str | None
    agent_name: str | None
    occurred_at: str


class BadWebhook(ValueError):
    """The body is not a v3 webhook we can read; the message says why (for the 400)."""


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """`X-PagerDuty-Signature` holds one or more `v1=<hex HMAC-SHA256>` (several while a
    secret is being rotated); any match is enough. Compared in constant time."""
    if not secret or not header:
        return False
    expected = b"v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # As bytes: compare_digest refuses non-ASCII str, and a header can hold anything.
    parts = header.encode("utf-8", "replace").split(b",")
    return any(hmac.compare_digest(expected, part.strip()) for part in parts)


def parse_event(body: bytes) -> PagerDutyEvent | None:
    """The event, or None when it is of a type Firebreak does not follow."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadWebhook("the body is not JSON") from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict):
        raise BadWebhook("`event` is missing")
    event_type = _text(event, "event_type")
    if event_type not in HANDLED:
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise BadWebhook("`event.data` is missing")
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    assert isinstance(agent, dict)
    event_id = _text(event, "id")
    if len(event_id) > 128:  # it keys the delivery's idempotency record
        raise BadWebhook("`id` is too long")
    return PagerDutyEvent(
        id=event_id,
        type=event_type,
        incident_key=data.get("incident_key")
        if isinstance(data.get("incident_key"), str)
        else None,
        pagerduty_incident=_text(data, "id"),
        agent_id=_optional(agent, "id"),
        agent_name=_optional(agent, "summary"),
        occurred_at=_text(event, "occurred_at"),
    )


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BadWebhook(f"`{key}` must be a non-empty string")
    return value


def _optional(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value[:255] if isinstance(value, str) and value else None
