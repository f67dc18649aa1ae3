"""Slack's text format, both ways: decoding what Slack sends, escaping what we send.

Slack treats `&`, `<` and `>` as control characters: `<!channel>` pings
everyone and `<https://evil|docs>` forges a link. So Slack sends them in
slash-command text as `&amp;`, `&lt;` and `&gt;`; `from_slack` decodes that
once, where a payload is read, and everything is stored and compared as the
person typed it. User text is escaped once, where it is rendered, except plain
user and channel mentions, which are kept (in their canonical `<@U123>` form)
so an update can still name a responder.

Every field Slack notifies from gets the same treatment: a card's `text` (the
notification and fallback) is derived from its blocks as rendered
(`handlers/blockkit.py`), never built by hand, and the gateway only takes `Mrkdwn`.
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


# A link as Slack sends it (`should_escape`): `<https://x|label>`. Only Slack writes a
# raw `<`; a typed one arrives as `&lt;`, so this is never the user's own text.
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|<>\s]+)(?:\|([^<>]*))?>")


def from_slack(text: str) -> str:
    """Slack's encoded text as typed: links as their plain text, then `&lt;`, `&gt;`,
    `&amp;` decoded, once.

    A link becomes its URL, or `label (URL)` when the label says something else, so a
    label can never hide where a link goes, in Slack or in PagerDuty and Statuspage.
    `&amp;` last, so a typed `&lt;` (sent as `&amp;lt;`) stays `&lt;`.
    """
    return _decode(_SLACK_LINK.sub(_plain_link, text))


def _decode(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain_link(match: re.Match[str]) -> str:
    url, label = _decode(match.group(1)), _decode(match.group(2) or "").strip()
    bare = url.removeprefix("mailto:")
    same = label.rstrip("/") in (bare.rstrip("/"), bare.split("://", 1)[-1].rstrip("/"))
    # Encoded again, so that the whole text is decoded exactly once, links included.
    return escape(bare if not label or same else f"{label} ({bare})")


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


# Slack advises keeping `text` under 4,000 characters (and cuts it at 40,000).
FALLBACK_MAX = 4000
_OPEN_MARKUP = re.compile(r"<[^>]*$|&[a-z#0-9]*$")


def truncate_mrkdwn(text: str, limit: int, marker: str = "…") -> str:
    """`truncate` for rendered mrkdwn: never cuts inside `<@U…>` or `&amp;`, since half
    of one shows as garbage."""
    if len(text) <= limit:
        return text
    return _OPEN_MARKUP.sub("", text[: limit - len(marker)]) + marker
