"""The event log in words, merged with the people's messages in time order.

Events say what changed (severity, status, roles, checklist, runbook
actions); messages say what people saw and thought. Both are shown in one
list; a reply thread on one of Firebreak's own messages (a diagnostic's
output, an update) is moved under the event that made that message.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any

from bot.incidents.outbox import MARKER_PREFIX as OUTBOX_MARKER
from bot.postmortem.action_trail import describe_action
from bot.postmortem.history import Line, Names, iso
from bot.postmortem.markdown import mentioned_users, typed_to_plain
from storage.models import Event

# Events that say nothing a reader of the post-mortem needs.
# Steps whose outcome is its own event (a page requested, then `paging.paged`).
QUIET_EVENTS = frozenset(
    {
        "nudge_failed",
        "paging.requested",
        "paging.resolve_sent",
        "statuspage.drafted",
        "statuspage.publish_requested",
        "statuspage.cancelled",
    }
)
TEXT_FIELDS = ("text", "summary", "description", "reason")


def people_in(events: Iterable[Event]) -> set[str]:
    """Every user an event names (actor, role holders, owners, mentions) for `Names.load`."""
    found: set[str] = set()
    for event in events:
        found.add(event.actor)
        payload = event.payload or {}
        for key in ("user", "previous", "owner", "requested_by"):
            if payload.get(key):
                found.add(str(payload[key]))
        for key in TEXT_FIELDS:
            if isinstance(payload.get(key), str):
                found |= mentioned_users(payload[key])
    return found


def describe(event: Event, name: Names) -> tuple[str, str]:
    """A label and a plain sentence for one event."""
    p: dict[str, Any] = event.payload or {}

    def text(key: str) -> str:
        return typed_to_plain(str(p.get(key) or ""), name)

    action = describe_action(event.type, event.actor, p, name, text)
    if action is not None:
        return action
    match event.type:
        case "declared":
            about = f": {text('description')}" if p.get("description") else ""
            return "Declared", f"{p.get('severity', '')} incident “{text('title')}”{about}"
        case "channel_created":
            return "Channel", f"#{p.get('name', '')} created"
        case "severity":
            added = p.get("added_items") or 0
            extra = f" ({added} checklist items added)" if added else ""
            return "Severity", f"{p.get('old')} → {p.get('new')}{extra}"
        case "status":
            return "Status", f"{p.get('old')} → {p.get('new')}"
        case "role":
            was = f" (was {name(p['previous'])})" if p.get("previous") else ""
            return "Role", f"{name(p.get('user'))} is now {p.get('role')}{was}"
        case "update" | "note":
            return event.type.capitalize(), text("text")
        case "resolved":
            return "Resolved", text("summary") or "marked resolved"
        case "resolution_summary":
            return "Resolution", text("summary")
        case "checklist_checked" | "checklist_unchecked":
            verb = "ticked" if event.type == "checklist_checked" else "unticked"
            return "Checklist", f"{verb} “{p.get('text', p.get('key', ''))}”"
        case "setup_failed":
            return "Setup", f"stopped while {p.get('step')}: {p.get('error')}"
        case "delivery_failed":
            where = f"#{p.get('channel')}"
            return "Delivery", f"could not {text('what')} in {where}: {p.get('reason')}"
        case "invite_failed":
            return "Setup", f"could not invite {name(p.get('user'))}: {p.get('error')}"
        case "action_item":
            owner = f" (owner: {name(p['owner'])})" if p.get("owner") else ""
            about = f"; {p['category']}, due {p['due']}" if p.get("category") else ""
            return "Action item", text("text") + owner + about
        case "nudge":
            state = ", escalated" if p.get("escalated") else (", late" if p.get("late") else "")
            if p.get("answered"):
                state = ", crossed by an update posted meanwhile"
            return "Reminder", f"status update due{state}"
        case "snooze":
            return "Reminder", f"reminders snoozed for {p.get('duration')}"
        case "alert_source":
            return (
                "Alert",
                f"opened from {p.get('source')} (rule {p.get('rule')}): {p.get('title')}",
            )
        case "alert_firing" | "alert_resolved":
            return "Alert", f"{event.type.removeprefix('alert_')}: {p.get('summary')}"
        case "paging.paged":
            on_call = ", ".join(str(a) for a in p.get("assignees") or []) or "nobody listed"
            return "Paged", f"{p.get('service', '?')} on PagerDuty (on call: {on_call})"
        case "paging.acknowledged":
            return "Page acknowledged", f"by {p.get('by') or 'someone'} in PagerDuty"
        case "paging.resolved":
            return "PagerDuty resolved", f"by {p.get('by') or 'someone'}"
        case "pagerduty.call_failed" | "statuspage.call_failed":
            return "Call failed", f"{p.get('kind', '?')}: {p.get('error', '?')}"
        case "statuspage.published":
            return "Status page", f"{p.get('status', '?')}: {p.get('body', '')}"
        case "scenario_guessed" | "scenario_switched":
            return "Scenario", _triage(event.type, p)
        case "triage_digest":
            return "Triage", _triage(event.type, p)
        case "closed":
            return "Closed", "post-mortem compiled"
    return event.type.replace("_", " ").capitalize(), ""


def _triage(kind: str, p: dict[str, Any]) -> str:
    """The triage's guess with its reasons, a switch, or the diagnostics it ran."""
    on = f" on {p['service']}" if p.get("service") else ""
    if kind == "scenario_switched":
        was = f" (was {p['old']})" if p.get("old") else ""
        return f"switched to {p.get('title')}{on}{was}"
    if kind == "triage_digest":
        ran, failed = p.get("ran") or [], p.get("failed") or []
        trouble = f"; {len(failed)} found trouble or could not run" if failed else ""
        return f"diagnostics of {p.get('title')}{on} posted: {len(ran)} ran{trouble}"
    reasons = ", ".join(str(r) for r in p.get("reasons") or [])
    return f"guessed {p.get('title')}{on} (matched: {reasons})"


def _no_guess(event: Event) -> bool:
    """A declaration no scenario matched: the event log keeps it, the reader need not."""
    return event.type == "scenario_guessed" and not (event.payload or {}).get("scenario")


def merge(
    events: list[Event], lines: list[Line], name: Names, own_blocks: Mapping[str, str]
) -> list[Line]:
    """One list in time order: events first when an event and a message share a second.

    A Firebreak message kept as a line (it has replies, or a person pinned it) is
    folded into the event that posted it, found by the thread the event names
    (a diagnostic's output) or by the outbox marker block of its message (an
    update, a note): the event is shown once, with the replies and the pin.
    """
    anchors = {line["ts"]: line for line in lines if line.get("firebreak")}
    moved: set[str] = set()
    entries: list[tuple[float, Line]] = []
    for event in events:
        if event.type in QUIET_EVENTS or _no_guess(event):
            continue
        label, text = describe(event, name)
        entry: Line = {
            "at": iso(event.at),
            "kind": "event",
            "type": event.type,
            "user": event.actor,
            "who": name(event.actor),
            "label": label,
            "text": text,
        }
        anchor = anchors.get(_message_ts(event, own_blocks))
        if anchor is not None and anchor["ts"] not in moved:
            entry.update({k: anchor[k] for k in ("replies", "key", "link") if k in anchor})
            moved.add(anchor["ts"])
        entries.append((event.at.timestamp(), entry))
    messages = ((float(line["ts"]), line) for line in lines if line["ts"] not in moved)
    merged: Iterator[tuple[float, Line]] = heapq.merge(entries, messages, key=itemgetter(0))
    return [entry for _, entry in merged]


def _message_ts(event: Event, own_blocks: Mapping[str, str]) -> str:
    """The ts of the Firebreak message this event posted, or "" when unknown."""
    payload = event.payload or {}
    if payload.get("thread_ts"):
        return str(payload["thread_ts"])
    if payload.get("outbox_id"):
        return own_blocks.get(f"{OUTBOX_MARKER}{payload['outbox_id']}", "")
    return ""
