"""Slack as a terminal shows it: channels, messages and checklists as text.

`firebreak shell` and `firebreak demo` print what a Slack client would show.
These are pure functions over :class:`~emulator.workspace.Workspace` data, so the
session only reads lines and prints what comes back, and what a user would
see can be tested without a terminal. Interactive elements get numbers
(checkboxes ``[ ] 3.``, buttons ``(1)``) that the session maps back to the
element through :func:`controls`, so the numbers printed and the numbers
acted on always come from the same enumeration. The text inside a message
(mrkdwn, mentions, emoji, colour) is devtools.text, shared with
devtools.prompts, where modals ask as well as show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devtools.text import Style, to_text, user_name
from emulator.blockkit import iter_elements
from emulator.models import is_top_level
from emulator.workspace import Workspace

Message = dict[str, Any]


@dataclass(frozen=True)
class Control:
    """One thing to tick (`kind="checkbox"`, one option) or click (`kind="button"`)."""

    kind: str
    number: int
    message_ts: str
    block_id: str
    action_id: str
    value: str
    checked: bool = False


def _clock(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%H:%M")


# ----------------------------------------------------------------- messages


def top_level(ws: Workspace, channel_id: str) -> list[Message]:
    """The channel's messages that get a number (`[3]`), oldest first; replies excluded."""
    return [m for m in ws.messages(channel_id) if is_top_level(m)]


def is_reply(message: Message) -> bool:
    return bool(message.get("thread_ts")) and message["thread_ts"] != message["ts"]


def _visible(
    ws: Workspace, channel_id: str, user_id: str, *, system: bool = False
) -> list[Message]:
    """Channel messages plus the user's ephemerals there, in ts order."""
    own = ws.ephemerals(user_id, channel_id)
    return sorted(ws.messages(channel_id, system=system) + own, key=lambda m: float(m["ts"]))


def controls(ws: Workspace, channel_id: str, user_id: str) -> list[Control]:
    """Every checkbox option and button the user sees in the channel, numbered per kind."""
    found: list[Control] = []
    for message in _visible(ws, channel_id, user_id):
        for block, element in iter_elements(message.get("blocks") or []):
            for kind, value, checked in _choices(element):
                found.append(
                    Control(
                        kind,
                        1 + sum(c.kind == kind for c in found),
                        message["ts"],
                        str(block.get("block_id")),
                        str(element.get("action_id")),
                        str(value),
                        checked,
                    )
                )
    return found


def _choices(element: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(kind, value, ticked) for each thing in `element` one can act on."""
    if element.get("type") == "button":
        return [("button", element.get("value", ""), False)]
    if element.get("type") == "checkboxes":
        ticked = {o.get("value") for o in element.get("initial_options") or []}
        options = element.get("options") or []
        return [("checkbox", o.get("value"), o.get("value") in ticked) for o in options]
    return []


Numbers = dict[tuple[str, str, str, str], int]


def numbering(items: list[Control]) -> Numbers:
    return {(c.message_ts, c.block_id, c.action_id, c.value): c.number for c in items}


def render_message(
    ws: Workspace,
    message: Message,
    style: Style,
    numbers: Numbers,
    *,
    number: int | None = None,
    note: str = "",
) -> list[str]:
    """A header (`[3] alice · 14:02`) and the body indented under it."""
    name = user_name(ws, message.get("user"))
    if "via" in message:  # an ephemeral: `user` is who sees it; Slack itself or the app sent it
        name = "Slackbot" if message["via"] == "slack" else ws.bot_name
    who = style.accent(name) if message.get("bot_id") or "via" in message else style.bold(name)
    stamp = style.dim(f" · {_clock(message['ts'])}{' · edited' if message.get('edited') else ''}")
    prefix = f"[{number}] " if number else ("↳ " if is_reply(message) else "")
    header = f"{prefix}{who}{stamp}{style.dim(note) if note else ''}"
    body = render_blocks(ws, message, style, numbers) if message.get("blocks") else []
    if not body:
        body = to_text(ws, str(message.get("text", "")), style)
    for shared in message.get("files") or []:
        body.append(f"{style.emoji('paperclip')} {shared.get('name')} ({shared.get('size')} bytes)")
    reactions = [
        f"{style.emoji(r['name'])} {r['count']} ({', '.join(user_name(ws, u) for u in r['users'])})"
        for r in message.get("reactions") or []
    ]
    if reactions:
        body.append(style.dim("   ".join(reactions)))
    return [header] + ["    " + line for line in body]


def render_blocks(ws: Workspace, message: Message, style: Style, numbers: Numbers) -> list[str]:
    lines: list[str] = []
    ts = str(message["ts"])
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("section", "header"):
            text = block.get("text") or {}
            rendered = _text_object(ws, text, style)
            lines += [style.bold(x) for x in rendered] if kind == "header" else rendered
            for item in block.get("fields") or []:
                lines += ["  " + x for x in _text_object(ws, item, style)]
            if isinstance(block.get("accessory"), dict):
                lines += _elements(ws, ts, block, [block["accessory"]], style, numbers)
        elif kind == "context":
            parts = [" ".join(_text_object(ws, e, style)) for e in block.get("elements", [])]
            lines.append(style.dim(" · ".join(p for p in parts if p)))
        elif kind == "divider":
            lines.append(style.dim("─" * 40))
        elif kind == "actions":
            lines += _elements(ws, ts, block, block.get("elements") or [], style, numbers)
        elif kind == "rich_text":
            lines += to_text(ws, _rich_text(block), style)
        elif kind == "image":
            lines.append(style.dim(f"[image: {block.get('alt_text', '')}]"))
    return lines


def _text_object(ws: Workspace, obj: Any, style: Style) -> list[str]:
    if not isinstance(obj, dict):
        return []
    text = str(obj.get("text", ""))
    return to_text(ws, text, style) if obj.get("type") == "mrkdwn" else text.split("\n")


def _elements(
    ws: Workspace,
    ts: str,
    block: dict[str, Any],
    elements: list[dict[str, Any]],
    style: Style,
    numbers: Numbers,
) -> list[str]:
    lines: list[str] = []
    buttons: list[str] = []
    block_id = str(block.get("block_id"))
    for element in elements:
        kind, action_id = element.get("type"), str(element.get("action_id"))
        if kind == "button":
            n = numbers.get((ts, block_id, action_id, str(element.get("value", ""))), 0)
            label = str(element.get("text", {}).get("text", ""))
            shown = style.good(label) if element.get("style") == "primary" else style.bold(label)
            buttons.append(f"({n}) {shown}")
        elif kind == "checkboxes":
            ticked = {o.get("value") for o in element.get("initial_options") or []}
            for option in element.get("options") or []:
                value = option.get("value")
                n = numbers.get((ts, block_id, action_id, str(value)), 0)
                box = style.good("[x]") if value in ticked else "[ ]"
                text = str(option.get("text", {}).get("text", ""))
                extra = _text_object(ws, option.get("description"), style)
                line = f"{box} {n:>2}. {style.dim(text) if value in ticked else text}"
                lines.append(line + (style.dim(" — " + " ".join(extra)) if extra else ""))
        elif kind in ("static_select", "overflow", "users_select", "radio_buttons"):
            placeholder = (element.get("placeholder") or {}).get("text", kind)
            buttons.append(style.dim(f"<{placeholder}>"))
    if buttons:
        lines.append("   ".join(buttons))
    return lines


def _rich_text(node: Any) -> str:
    if isinstance(node, list):
        return "".join(_rich_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "link":
        return str(node.get("text") or node.get("url", ""))
    if kind == "user":
        return f"<@{node.get('user_id')}>"
    if kind == "channel":
        return f"<#{node.get('channel_id')}>"
    if kind == "emoji":
        return f":{node.get('name')}:"
    inner = _rich_text(node.get("elements", []))
    return inner + ("\n" if kind in ("rich_text_section", "rich_text_preformatted") else "")


def _system(ws: Workspace, message: Message, style: Style) -> list[str]:
    """Slack's own notices (joins, topic changes) as one dim line."""
    who = user_name(ws, message.get("user"))
    if message.get("subtype") == "channel_join":
        inviter = message.get("inviter")
        by = f" (added by {user_name(ws, inviter)})" if inviter else ""
        return [style.dim(f"→ {who} joined{by}")]
    text = " ".join(to_text(ws, str(message.get("text", "")), style))
    return [style.dim(f"✎ {who} {text}")]


def _render(
    ws: Workspace, message: Message, style: Style, numbers: Numbers, index: dict[str, int]
) -> list[str]:
    if "via" in message:  # an ephemeral
        return render_message(ws, message, style, numbers, note=" · only visible to you")
    if message.get("subtype") in ("channel_join", "channel_topic", "channel_purpose"):
        return _system(ws, message, style)
    if not is_reply(message):
        return render_message(ws, message, style, numbers, number=index.get(message["ts"]))
    parent = index.get(str(message.get("thread_ts")))
    note = f" · in thread [{parent}]" if parent else ""
    return ["    " + line for line in render_message(ws, message, style, numbers, note=note)]


def _index(ws: Workspace, channel_id: str) -> dict[str, int]:
    return {m["ts"]: n for n, m in enumerate(top_level(ws, channel_id), start=1)}


def render_history(
    ws: Workspace, channel_id: str, user_id: str, style: Style, *, last: int | None = None
) -> list[str]:
    """The channel as a user opening it sees it: topic, pins, the last messages and threads."""
    channel = ws.channels[channel_id]
    numbers = numbering(controls(ws, channel_id, user_id))
    index = _index(ws, channel_id)
    kind = "private" if channel.is_private else "public"
    lines = [
        style.bold(f"#{channel.name}") + style.dim(f" · {kind} · {len(channel.members)} members")
    ]
    if channel.topic.get("value"):
        lines.append(style.dim("topic: ") + " ".join(to_text(ws, channel.topic["value"], style)))
    pinned = [f"[{index[p['ts']]}]" for p in channel.pins if p["ts"] in index]
    if pinned:
        lines.append(style.dim(f"{style.emoji('pushpin')} pinned: {', '.join(pinned)}"))
    messages = top_level(ws, channel_id)
    shown = messages[-last:] if last else messages
    if len(shown) < len(messages):
        lines.append(style.dim(f"… {len(messages) - len(shown)} earlier messages (:history)"))
    replies = [m for m in ws.messages(channel_id) if is_reply(m)]
    for message in shown:
        lines += render_message(ws, message, style, numbers, number=index[message["ts"]])
        for reply in replies:
            if reply.get("thread_ts") == message["ts"]:
                lines += ["    " + x for x in render_message(ws, reply, style, numbers)]
    if not messages:
        lines.append(style.dim("(no messages yet)"))
    return lines


def render_channels(ws: Workspace, user_id: str, current: str, style: Style) -> list[str]:
    lines = []
    for channel in sorted(ws.channels.values(), key=lambda c: c.name):
        mark = "▸ " if channel.id == current else "  "
        member = "" if user_id in channel.members else style.dim(" (not a member)")
        count = style.dim(f" · {len(top_level(ws, channel.id))} messages")
        topic = channel.topic.get("value")
        about = style.dim(" · " + " ".join(to_text(ws, topic, style))) if topic else ""
        lines.append(f"{mark}{style.accent('#' + channel.name)}{member}{count}{about}")
    return lines


# ------------------------------------------------------------------ changes


@dataclass(frozen=True)
class Snapshot:
    """What the user has been shown, so that only what is new gets printed."""

    user_id: str
    channel_id: str
    shown: dict[str, tuple[str, ...]]  # ts -> rendering, current channel and own ephemerals
    seen: frozenset[tuple[str, str]]  # (channel, ts) in the user's other channels
    pins: frozenset[str]
    member_of: frozenset[str]


def snapshot(ws: Workspace, user_id: str, channel_id: str, style: Style) -> Snapshot:
    numbers = numbering(controls(ws, channel_id, user_id))
    index = _index(ws, channel_id)
    return Snapshot(
        user_id,
        channel_id,
        {
            m["ts"]: tuple(_render(ws, m, style, numbers, index))
            for m in _visible(ws, channel_id, user_id, system=True)
        },
        frozenset(
            (c.id, ts) for c in ws.channels.values() if user_id in c.members for ts in c.messages
        ),
        frozenset(p["ts"] for p in ws.channels[channel_id].pins),
        frozenset(c.id for c in ws.channels.values() if user_id in c.members),
    )


def changes(ws: Workspace, before: Snapshot, style: Style) -> list[str]:
    """Lines for everything that happened since `before`: new and edited messages,
    pins, the user's ephemerals, activity in their other channels, invitations."""
    user, here = before.user_id, before.channel_id
    now = snapshot(ws, user, here, style)
    index = _index(ws, here)
    timed: list[tuple[float, list[str]]] = []
    later: list[str] = []
    for ts, lines in now.shown.items():
        old = before.shown.get(ts)
        if old is None:
            timed.append((float(ts), list(lines)))
        elif old != lines:
            fresh = [x for x in lines[1:] if x not in old]
            if fresh:
                later += [lines[0] + style.dim(" · updated"), *fresh]
    for channel in ws.channels.values():
        if channel.id == here or channel.id not in now.member_of:
            continue
        for message in top_level(ws, channel.id):
            if (channel.id, message["ts"]) not in before.seen:
                first = (to_text(ws, str(message.get("text", "")), style) or [""])[0]
                who = user_name(ws, message.get("user"))
                line = f"{style.accent('#' + channel.name)} ▸ {who}: {first}"
                timed.append((float(message["ts"]), ["  " + line]))
    for ts in sorted(now.pins - before.pins):
        later.append(style.dim(f"{style.emoji('pushpin')} pinned [{index.get(ts, '?')}]"))
    for channel_id in sorted(now.member_of - before.member_of):
        name = ws.channels[channel_id].name
        later.append(style.warn(f"➕ You were added to #{name}. Open it with :join #{name}"))
    return [line for _, lines in sorted(timed, key=lambda t: t[0]) for line in lines] + later
