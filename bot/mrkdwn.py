"""Escaping user text for Slack mrkdwn.

Slack treats `&`, `<` and `>` as control characters: `<!channel>` pings
everyone and `<https://evil|docs>` forges a link. User text is escaped before
it is shown, except plain user and channel mentions, which are kept (in their
canonical `<@U123>` form) so an update can still name a responder.
"""

from __future__ import annotations

import re

_MENTION = re.compile(r"<([@#])([UWC][A-Z0-9]{2,20})(?:\|[^<>]*)?>")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


class Mrkdwn(str):
    """Text already safe for mrkdwn; templates insert it as-is."""


def escape(text: object) -> str:
    """Escape anything for mrkdwn, mentions included."""
    if isinstance(text, Mrkdwn):
        return text
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def user_text(text: str) -> Mrkdwn:
    """Escape free text a user typed, keeping `<@U…>` and `<#C…>` mentions."""
    parts: list[str] = []
    last = 0
    for match in _MENTION.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(f"<{match.group(1)}{match.group(2)}>")
        last = match.end()
    parts.append(escape(text[last:]))
    return Mrkdwn("".join(parts))


def mention(user_id: str | None) -> Mrkdwn:
    """`<@U123>` for a valid user ID; anything else is shown escaped, never as markup."""
    if user_id and _USER_ID.match(user_id):
        return Mrkdwn(f"<@{user_id}>")
    return Mrkdwn(escape(user_id or "nobody"))


def channel_link(channel_id: str | None, name: str | None = None) -> Mrkdwn:
    if channel_id and re.match(r"^[CG][A-Z0-9]{2,20}$", channel_id):
        return Mrkdwn(f"<#{channel_id}>")
    return Mrkdwn("#" + escape(name or "unknown"))


def truncate(text: str, limit: int, marker: str = "…") -> str:
    """Cut to at most `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - len(marker)] + marker
