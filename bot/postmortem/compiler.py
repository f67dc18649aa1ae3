"""Compiling an incident into the post-mortem document: plain, JSON-ready data.

The document is built from the incident row, its event log and the whole
channel, and holds only what those sources say. What the bot cannot know
(impact, root cause, lessons) is left to the template to ask humans for.
The Markdown is one rendering of it; the JSON form is the same dict.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bot.alerts.postmortem import alert_section
from bot.gateway import ChatGateway
from bot.postmortem import metrics
from bot.postmortem.history import ChannelDigest, Line, Names, iso, read_channel
from bot.postmortem.markdown import typed_to_plain
from bot.postmortem.room import Listening, gaps, read_room
from bot.postmortem.timeline import describe, merge, people_in
from bot.redact import redact
from storage.models import Event, Incident

SCHEMA = 1


async def compile_document(
    chat: ChatGateway,
    incident: Incident,
    events: list[Event],
    *,
    generated_at: datetime,
    latest: str | None = None,
    listening: Listening | None = None,
) -> dict[str, Any]:
    """The log and the channel (up to the `latest` ts) into the document.

    The channel comes from the log's `room.*` events, and from Slack's history where
    `listening` has gaps (bot/postmortem/room.py); without `listening` (nothing known
    of when Firebreak listened) the whole channel is read from Slack."""
    names = Names(chat)
    checked_by = {item.checked_by for item in incident.checklist}
    await names.load([incident.declared_by, *people_in(events), *checked_by])
    digest = ChannelDigest()
    own_messages: dict[str, str] = {}
    if incident.channel_id:
        bot_user_id = await chat.bot_user_id()
        if listening is None:
            digest = await read_channel(
                chat, names, incident.channel_id, bot_user_id=bot_user_id, latest=latest
            )
        else:
            end = datetime.fromtimestamp(float(latest), UTC) if latest else generated_at
            missing = gaps(listening.spans, incident.declared_at, end, generated_at)
            digest = await read_room(
                chat,
                names,
                incident.channel_id,
                bot_user_id=bot_user_id,
                events=listening.recorded,
                missing=missing,
                latest=latest,
            )
            own_messages = listening.own_messages
        await names.load(digest.joined)  # people who only joined are named like the rest
    timeline = merge(events, digest.lines, names, {**own_messages, **digest.own_blocks})
    measured = metrics.compute(incident.declared_at, events)
    # The latest summary given: when resolving, or afterwards for a resolved incident.
    summaries = [
        e
        for e in events
        if e.type in ("resolved", "resolution_summary") and (e.payload or {}).get("summary")
    ]

    def moment(value: datetime | None) -> str | None:
        return None if value is None else iso(value)

    def said(event: Event, key: str = "text") -> dict[str, Any]:
        text = typed_to_plain(str((event.payload or {}).get(key) or ""), names)
        return {"at": iso(event.at), "who": names(event.actor), "text": text}

    duration = measured.since_declared(measured.resolved_at)
    document = {
        "schema": SCHEMA,
        "generated_at": iso(generated_at),
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "description": incident.description,
            "severity": incident.severity,
            "status": incident.status,
            "channel_id": incident.channel_id,
            "channel_name": incident.channel_name,
            "declared_by": incident.declared_by,
            "declared_by_name": names(incident.declared_by),
            "closed": incident.closed_at is not None,
            "follow_up_of": _follow_up_of(events),
        },
        "times": {
            "declared": iso(incident.declared_at),
            "acknowledged": moment(measured.acknowledged_at),
            "mitigated": moment(measured.mitigated_at),
            "resolved": moment(measured.resolved_at),
            "closed": moment(incident.closed_at),
        },
        "duration": None if duration is None else duration.total_seconds(),
        "metrics": measured.as_dict(),
        "response": metrics.response(events, measured),
        "alert": alert_section(incident.declared_at, events),
        "severity_history": _history(events, "severity", names),
        "status_history": _history(events, "status", names),
        "roles": _roles(events, names),
        "participants": _participants(digest, events, names),
        "joined_without_posting": [
            names(u) for u in digest.joined if u not in digest.posts and u not in _actors(events)
        ],
        "timeline": timeline,
        "key_moments": [_moment(line) for line in _all_lines(timeline) if line.get("key")],
        "resolution": said(summaries[-1], "summary") if summaries else None,
        "notes": [said(e) for e in events if e.type == "note"],
        "action_items": [
            {
                **said(e),
                "owner": (e.payload or {}).get("owner"),
                "owner_name": _owner(e, names),
                # Items raised before categories and due dates were asked for have neither.
                "category": (e.payload or {}).get("category"),
                "due": (e.payload or {}).get("due"),
            }
            for e in events
            if e.type == "action_item"
        ],
        "checklist": _checklist(incident, names),
        "diagnostics": [
            await _diagnostic(chat, incident, e, names) for e in events if e.type == "diagnostic"
        ],
        "mitigations": [
            {"at": iso(e.at), "who": names(e.actor), "text": describe(e, names)[1]}
            for e in events
            if e.type.startswith("mitigation_")
        ],
        "public_communication": [
            {
                "at": iso(e.at),
                "who": names(e.actor),
                "status": (e.payload or {}).get("status"),
                "text": str((e.payload or {}).get("body") or ""),
            }
            for e in events
            if e.type == "statuspage.published"
        ],
        "folded": dict(sorted(digest.folded.items())),
        "stats": {
            "messages": sum(digest.posts.values()),
            "threads": digest.threads,
        },
    }
    # People paste tokens and connection strings into the channel; the post-mortem is
    # shared widely and kept for years, so every text in it is masked. The channel's
    # lines from the recorded room were masked as they were recorded or read.
    return _redacted(document, premasked=listening is not None)


def _follow_up_of(events: list[Event]) -> dict[str, Any] | None:
    """The closed incident this one was declared to follow up ({id, channel}), if any."""
    declared = next((e for e in events if e.type == "declared"), None)
    link = (declared.payload or {}).get("follow_up_of") if declared else None
    return link if isinstance(link, dict) else None


def _redacted(value: Any, *, premasked: bool = False) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        if premasked and value.get("kind") == "message":
            return value
        return {key: _redacted(item, premasked=premasked) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, premasked=premasked) for item in value]
    return value


def _history(events: list[Event], kind: str, names: Names) -> list[dict[str, Any]]:
    """`severity` or `status` over time, starting with the declaration."""
    first = "P?" if kind == "severity" else "investigating"
    steps: list[dict[str, Any]] = []
    for event in events:
        p = event.payload or {}
        if event.type == "declared":
            value = p.get("severity", first) if kind == "severity" else first
            steps.append({"at": iso(event.at), "value": value, "by": names(event.actor)})
        elif event.type == kind or (kind == "status" and event.type == "resolved"):
            value = p.get("new", "resolved")
            steps.append({"at": iso(event.at), "value": value, "by": names(event.actor)})
    return steps


def _roles(events: list[Event], names: Names) -> list[dict[str, Any]]:
    holders: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        p = event.payload or {}
        if event.type == "role" and p.get("role") and p.get("user"):
            holders.setdefault(str(p["role"]), []).append(
                {"user": p["user"], "name": names(p["user"]), "since": iso(event.at)}
            )
    return [{"role": role, "holders": people} for role, people in holders.items()]


def _actors(events: list[Event]) -> set[str]:
    return {e.actor for e in events if e.actor != "firebreak"}


def _participants(digest: ChannelDigest, events: list[Event], names: Names) -> list[dict[str, Any]]:
    actions = Counter(e.actor for e in events if e.actor != "firebreak")
    people = set(digest.posts) | set(actions)
    rows = [
        {"user": u, "name": names(u), "messages": digest.posts[u], "actions": actions[u]}
        for u in people
    ]
    return sorted(rows, key=lambda row: (row["name"].lower(), row["user"]))


def _all_lines(timeline: list[Line]) -> list[Line]:
    return [line for entry in timeline for line in (entry, *entry.get("replies", ()))]


def _moment(line: Line) -> dict[str, Any]:
    return {"at": line["at"], "who": line["who"], "text": line["text"], "link": line.get("link")}


def _owner(event: Event, names: Names) -> str | None:
    owner = (event.payload or {}).get("owner")
    return names(owner) if owner else None


def _checklist(incident: Incident, names: Names) -> list[dict[str, Any]]:
    phases: dict[str, list[dict[str, Any]]] = {}
    for item in incident.checklist:
        phases.setdefault(item.phase, []).append(
            {
                "text": item.text,
                "checked": item.checked,
                "by": names(item.checked_by) if item.checked_by else None,
                "at": iso(item.checked_at) if item.checked_at else None,
            }
        )
    return [
        {
            "phase": phase,
            "done": sum(1 for i in items if i["checked"]),
            "total": len(items),
            "items": items,
        }
        for phase, items in phases.items()
    ]


async def _diagnostic(
    chat: ChatGateway, incident: Incident, event: Event, names: Names
) -> dict[str, Any]:
    p = event.payload or {}
    thread = p.get("thread_ts")
    link = None
    if thread and incident.channel_id:
        link = await chat.permalink(incident.channel_id, str(thread))
    return {
        "at": iso(event.at),
        "who": names(event.actor),
        "action": p.get("action"),
        "service": p.get("service"),
        "ok": bool(p.get("ok")),
        "summary": typed_to_plain(str(p.get("summary") or ""), names),
        "link": link,
    }
