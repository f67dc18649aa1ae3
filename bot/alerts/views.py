"""What alerts look like in the channel: the offer with its buttons, and the alert's links.

Alert text (labels, annotations, titles) is user text: it reaches Slack only
through the templates, which escape every value, and links are built here
only from http(s) URLs without markup characters, so an annotation cannot
ping a channel or forge a link.
"""

from __future__ import annotations

import re
from typing import Any

from bot.messages import Button, Buttons, Card, Part, Section
from bot.mrkdwn import Mrkdwn, escape, truncate
from bot.templates import Templates
from storage.models import AlertGroup, Incident

DECLARE_ACTION = "alert_declare"
DISMISS_ACTION = "alert_dismiss"
OFFER_MARKER = "fb-alert-offer-"
MESSAGE_MAX = 2900  # under Slack's 3,000 characters for a section's text
LABELS_SHOWN = 12
VALUE_MAX = 200
_URL = re.compile(r"^https?://[^\s<>|\"]+$")
# Annotation names that by convention hold links, and what to call them.
LINK_ANNOTATIONS = (
    ("runbook_url", "Runbook"),
    ("runbook", "Runbook"),
    ("dashboard_url", "Dashboard"),
    ("dashboard", "Dashboard"),
)


def safe_url(url: str) -> bool:
    return bool(_URL.match(url)) and len(url) <= 2000


def link(text: str, url: str) -> Mrkdwn:
    """`<url|text>` for a plain http(s) URL; the text alone (escaped) for anything else."""
    if not safe_url(url):
        return Mrkdwn(escape(text))
    return Mrkdwn(f"<{url.replace('&', '&amp;')}|{escape(text)}>")


def links_of(
    generator_url: str, annotations: dict[str, str], external_url: str = ""
) -> list[list[str]]:
    """The alert's links worth following, as [text, url] pairs (http(s) only)."""
    found: list[list[str]] = []
    if generator_url:
        found.append(["Source", generator_url])
    for key, text in LINK_ANNOTATIONS:
        if annotations.get(key):
            found.append([text, annotations[key]])
    if external_url:
        found.append(["Alertmanager", external_url])
    seen: set[str] = set()
    unique = []
    for text, url in found:
        if safe_url(url) and url not in seen:
            seen.add(url)
            unique.append([text, url])
    return unique


def shown_labels(labels: dict[str, Any]) -> list[tuple[str, str]]:
    """The first labels, values cut short, so a huge label set still fits one message."""
    items = sorted(labels.items())[:LABELS_SHOWN]
    return [(k[:VALUE_MAX], truncate(str(v), VALUE_MAX)) for k, v in items]


def render(templates: Templates, name: str, group: AlertGroup, **context: Any) -> str:
    text = templates.render(
        name,
        group=group,
        labels=shown_labels(group.labels),
        hidden=max(0, len(group.labels) - LABELS_SHOWN),
        links=Mrkdwn(" · ".join(link(text, url) for text, url in group.links)),
        **context,
    )
    return truncate(text, MESSAGE_MAX)


def offer_message(
    templates: Templates, group: AlertGroup, incident: Incident | None = None
) -> Card:
    """The offer in the broadcast channel; buttons only while nobody has decided."""
    text = render(templates, "alert_offer.j2", group=group, incident=incident)
    parts: list[Part] = [Section(text, marker=f"{OFFER_MARKER}{group.id}")]
    if group.state == "offered" and group.active_key is not None:
        value = str(group.id)
        buttons = (
            Button("Declare incident", DECLARE_ACTION, value, primary=True),
            Button("Dismiss", DISMISS_ACTION, value),
        )
        parts.append(Buttons(buttons, marker=f"alert-offer-actions-{group.id}"))
    return Card(tuple(parts))
