"""Reading alert deliveries: Alertmanager's webhook (version 4) and our generic form.

Both are turned into one `Delivery` of `Alert`s, or refused with a `PayloadError`
whose message says which field is wrong; the endpoint answers it as a 400. Only
JSON that passes here is recorded or routed. A delivery's `key_hash` names its
group (Alertmanager's `groupKey`, or the generic `dedup_key`), and its `digest`
what it says, so a repeat of the same news is recognised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES = ("firing", "resolved")
TITLE_MAX = 255
# Alertmanager sends this as the end of an alert that is still firing.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class PayloadError(ValueError):
    """The delivery is not what the endpoint takes; the message says why (for a 400)."""


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None  # None: the sender did not say (generic form)
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname") or self.annotations.get("summary") or "alert"

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("title") or self.name


@dataclass(frozen=True)
class Delivery:
    source: str  # alertmanager | generic
    dedup_key: str
    status: str
    alerts: tuple[Alert, ...]
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated: int = 0

    @property
    def key_hash(self) -> str:
        return _sha256(f"{self.source}\0{self.dedup_key}")

    @property
    def digest(self) -> str:
        return _sha256(json.dumps(self.to_json(), sort_keys=True))

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    def labels(self) -> dict[str, str]:
        """The labels routing matches on: the group's common labels over the first alert's."""
        first = (self.firing() or list(self.alerts))[0]
        return {**first.labels, **self.common_labels}

    def annotations(self) -> dict[str, str]:
        first = (self.firing() or list(self.alerts))[0]
        return {**first.annotations, **self.common_annotations}

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dedup_key": self.dedup_key,
            "status": self.status,
            "alerts": [
                {
                    "fingerprint": a.fingerprint,
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "starts_at": a.starts_at.isoformat() if a.starts_at else None,
                    "generator_url": a.generator_url,
                }
                for a in self.alerts
            ],
            "common_labels": self.common_labels,
            "common_annotations": self.common_annotations,
            "external_url": self.external_url,
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        """The inverse of `to_json` (what was recorded, read back for processing)."""
        return cls(
            source=data["source"],
            dedup_key=data["dedup_key"],
            status=data["status"],
            alerts=tuple(
                Alert(
                    fingerprint=a["fingerprint"],
                    status=a["status"],
                    labels=a["labels"],
                    annotations=a["annotations"],
                    starts_at=datetime.fromisoformat(a["starts_at"]) if a["starts_at"] else None,
                    generator_url=a["generator_url"],
                )
                for a in data["alerts"]
            ),
            common_labels=data["common_labels"],
            common_annotations=data["common_annotations"],
            external_url=data["external_url"],
            truncated=data["truncated"],
        )


def decode(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a PayloadError saying what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except RecursionError as exc:
        raise PayloadError("malformed JSON: nested too deeply") from exc
    except ValueError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    return data


def alertmanager(data: dict[str, Any]) -> Delivery:
    """Alertmanager's webhook payload, version 4."""
    version = data.get("version", "4")
    if version != "4":
        raise PayloadError(f"unsupported payload version {version!r}; Firebreak takes version 4")
    group_key = _string(data, "groupKey", required=True)
    status = _status(data, "status")
    raw_alerts = data.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise PayloadError("`alerts` must be a non-empty list")
    alerts = tuple(_am_alert(item, n) for n, item in enumerate(raw_alerts))
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("`truncatedAlerts` must be a whole number")
    for name in ("receiver", "externalURL"):
        _string(data, name)
    _labels(data, "groupLabels")
    return Delivery(
        source="alertmanager",
        dedup_key=group_key,
        status=status,
        alerts=alerts,
        common_labels=_labels(data, "commonLabels"),
        common_annotations=_labels(data, "commonAnnotations"),
        external_url=_string(data, "externalURL"),
        truncated=truncated,
    )


def generic(data: dict[str, Any]) -> Delivery:
    """Our own form: title, dedup_key, and optionally severity, service, description,
    source_url, started_at (RFC 3339) and status (firing, the default, or resolved)."""
    title = _string(data, "title", required=True)
    dedup_key = _string(data, "dedup_key", required=True)
    status = _status(data, "status", default="firing")
    labels = {"alertname": title[:TITLE_MAX]}
    for name in ("severity", "service"):
        value = _string(data, name)
        if value:
            labels[name] = value
    annotations = {"summary": title}
    description = _string(data, "description")
    if description:
        annotations["description"] = description
    started = _string(data, "started_at")
    alert = Alert(
        fingerprint=_sha256(dedup_key)[:16],
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=_time(started, "started_at") if started else None,
        generator_url=_string(data, "source_url"),
    )
    return Delivery(source="generic", dedup_key=dedup_key, status=status, alerts=(alert,))


def _am_alert(item: Any, n: int) -> Alert:
    where = f"alerts[{n}]"
    if not isinstance(item, dict):
        raise PayloadError(f"`{where}` must be an object")
    labels = _labels(item, "labels", where, required=True)
    if not labels:
        raise PayloadError(f"`{where}.labels` must not be empty")
    starts = _string(item, "startsAt", where, required=True)
    _string(item, "endsAt", where)
    fingerprint = _string(item, "fingerprint", where)
    if not fingerprint:  # senders before Alertmanager 0.19 leave it out
        fingerprint = _sha256(json.dumps(labels, sort_keys=True))[:16]
    return Alert(
        fingerprint=fingerprint,
        status=_status(item, "status", where),
        labels=labels,
        annotations=_labels(item, "annotations", where),
        starts_at=_time(starts, f"{where}.startsAt"),
        generator_url=_string(item, "generatorURL", where),
    )


def _name(key: str, where: str) -> str:
    return f"{where}.{key}" if where else key


def _string(data: dict[str, Any], key: str, where: str = "", *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise PayloadError(f"`{_name(key, where)}` is required")
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"`{_name(key, where)}` must be a string")
    _check_text(value, _name(key, where))
    if required and not value.strip():
        raise PayloadError(f"`{_name(key, where)}` must not be empty")
    return value


def _status(data: dict[str, Any], key: str, where: str = "", default: str | None = None) -> str:
    value = data.get(key, default)
    if value not in STATUSES:
        if value is None:
            raise PayloadError(f"`{_name(key, where)}` is required (firing or resolved)")
        raise PayloadError(f"`{_name(key, where)}` must be firing or resolved")
    return str(value)


def _labels(
    data: dict[str, Any], key: str, where: str = "", *, required: bool = False
) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        if required:
            raise PayloadError(f"`{_name(key, where)}` is required")
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PayloadError(f"`{_name(key, where)}` must be an object of strings")
    for name, text in value.items():
        _check_text(name, f"a key of {_name(key, where)}")
        _check_text(text, f"{_name(key, where)}.{name[:40]}")
    return dict(value)


def _check_text(text: str, what: str) -> None:
    """Refuse what no database column can hold: NUL characters and lone surrogates."""
    if "\x00" in text:
        raise PayloadError(f"`{what}` contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(f"`{what}` is not valid Unicode") from exc


def _time(text: str, what: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(f"`{what}` is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise PayloadError(f"`{what}` has no time zone")
    moment = moment.astimezone(UTC)
    return None if moment == ZERO_TIME else moment


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
