"""conversations.history and conversations.replies: reading messages back, paginated."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from emulator.api import ApiError, Args, paginate
from emulator.state import Handler, WorkspaceState


def history(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """Newest first; thread replies are hidden unless they were broadcast to the channel."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    ws.require_scope("history", private=channel.is_private)
    ws.require_member(channel, allow_archived=True)
    in_channel = [
        m
        for m in channel.messages.values()
        if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("subtype") == "thread_broadcast"
    ]
    window = _window(list(reversed(in_channel)), a)
    page, cursor = paginate(
        window, a, lambda m: m["ts"], prefix="next_ts", default=100, maximum=999
    )
    return {
        "ok": True,
        "messages": page,
        "has_more": bool(cursor),
        "pin_count": len(channel.pins),
        "channel_actions_ts": None,
        "channel_actions_count": 0,
        "response_metadata": {"next_cursor": cursor},
    }


def replies(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """The parent first, then replies oldest first; ``ts`` may name the parent or any reply."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    ws.require_scope("history", private=channel.is_private)
    ws.require_member(channel, allow_archived=True)
    message = channel.messages.get(a.required("ts", "thread_not_found"))
    root = channel.messages.get(message.get("thread_ts", message["ts"])) if message else None
    if root is None:
        raise ApiError("thread_not_found")
    thread = [root] + [
        m for m in channel.messages.values() if m.get("thread_ts") == root["ts"] and m is not root
    ]
    page, cursor = paginate(
        _window(thread, a), a, lambda m: m["ts"], prefix="next_ts", default=1000, maximum=1000
    )
    return {
        "ok": True,
        "messages": page,
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


def _window(messages: list[dict[str, Any]], a: Args) -> list[dict[str, Any]]:
    """Apply ``oldest``/``latest`` (exclusive unless ``inclusive``)."""
    oldest = _micros(a.text("oldest") or "0", "invalid_ts_oldest")
    latest_arg = a.text("latest")
    latest = _micros(latest_arg, "invalid_ts_latest") if latest_arg else None
    inclusive = a.flag("inclusive")

    def keep(message: dict[str, Any]) -> bool:
        ts = _micros(message["ts"], "invalid_ts_latest")
        after = ts >= oldest if inclusive else ts > oldest
        before = latest is None or (ts <= latest if inclusive else ts < latest)
        return after and before

    return [m for m in messages if keep(m)]


def _micros(value: str, error: str) -> int:
    try:
        return int(Decimal(value) * 1_000_000)
    except InvalidOperation:
        raise ApiError(error) from None


METHODS: dict[str, Handler] = {
    "conversations.history": history,
    "conversations.replies": replies,
}
