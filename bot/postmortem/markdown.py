"""Slack text in, safe Markdown out.

Chat messages and command texts arrive in Slack's own markup (`<@U123>`,
`<https://x|label>`, `&lt;`). They are turned into plain text first, then
every value the post-mortem template prints is escaped for Markdown, so a
message such as `[docs](https://evil)` or `<img src=x>` shows as typed and
never as a link, an image or HTML. Links the compiler builds itself are
`Markdown` instances and pass through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

# <@U123>, <@U123|alice>, <#C123|name>, <!here>, <!subteam^S1|@team>, <url|label>
_SLACK_MARKUP = re.compile(r"<([@#!]?)([^<>|]*)(?:\|([^<>]*))?>")
# Only what Slack itself marks up in typed text: users, channels, `!` specials, links.
_TYPED_MARKUP = re.compile(
    r"<([@#!]?)((?<=@)[UW][A-Z0-9]+|(?<=#)[CG][A-Z0-9]+|(?<=!)[a-z]+(?:\^[^<>|\s]*)?"
    r"|(?<=<)(?:https?|mailto):[^<>|\s]+)(?:\|([^<>]*))?>"
)
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_ENTITY_START = re.compile(r"&(?=#?[0-9A-Za-z]+;)")  # `&amp;` would show as `&`
_INLINE = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^([#>+=-])")
_LIST_NUMBER = re.compile(r"^(\d+)([.)])")


class Markdown(str):
    """Text already safe as Markdown; the template prints it as-is."""


def mentioned_users(text: str) -> set[str]:
    """The user IDs mentioned in Slack text, to look their names up first."""
    return set(_USER_MENTION.findall(text))


def slack_to_plain(text: str, name: Callable[[str], str]) -> str:
    """Slack markup to plain text: mentions become `@name`, links `label (url)`."""
    plain = _SLACK_MARKUP.sub(lambda match: _plain(match, name), text) if "<" in text else text
    if "&" not in plain:  # most messages: no entity to decode
        return plain
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def typed_to_plain(text: str, name: Callable[[str], str]) -> str:
    """Text as typed (a command's text, Slack's entities already decoded when it was read)
    to plain text: the mentions and links Slack marked up become names and URLs, and any
    other `<`, `>` or `&` is what the person typed (`p99 < 200ms`, `<v1.4.2>`)."""
    return _TYPED_MARKUP.sub(lambda match: _plain(match, name), text)


def _plain(match: re.Match[str], name: Callable[[str], str]) -> str:
    sigil, target, label = match.group(1), match.group(2), match.group(3)
    if sigil == "@":
        return "@" + name(target)
    if sigil == "#":
        return "#" + (label or target)
    if sigil == "!":
        if target.startswith(("subteam^", "date^")):
            return label or target.split("^", 1)[1]
        return "@" + target
    if label and label != target:
        return f"{label} ({target})"
    return target


def escape(value: object) -> str:
    """Plain text as one line of inert Markdown (None prints nothing)."""
    if isinstance(value, Markdown):
        return value
    if value is None:
        return ""
    text = " ".join(str(value).split())
    text = _ENTITY_START.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")
    text = _INLINE.sub(r"\\\1", text)
    text = _LINE_START.sub(r"\\\1", text)
    return _LIST_NUMBER.sub(r"\1\\\2", text)


def link(text: object, url: str | None) -> Markdown:
    """`[text](url)` for an http(s) URL; just the escaped text otherwise."""
    if not url or not url.startswith(("https://", "http://")):
        return Markdown(escape(text))
    safe_url = quote(url, safe=":/?&=#%@+,;~")
    return Markdown(f"[{escape(text)}]({safe_url})")


def shorten(text: str, limit: int) -> tuple[str, bool]:
    """Cut at a word boundary near `limit`; True when something was cut."""
    if len(text) <= limit:
        return text, False
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip() + " …", True
