"""Slack's text as a terminal shows it: mrkdwn, mentions, emoji and colour.

The lowest layer of the terminal client. devtools.console lays out messages,
controls and history, devtools.prompts asks for modal fields, and the shell
names users in its prompt; all of them draw text through these functions, so
a mention, a `code` span or an emoji reads the same wherever it appears.
Colour is a :class:`Style` passed in, never global, so the same text can be
rendered plain for pipes and tests and coloured for a terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulator.workspace import Workspace

# The shortcodes Firebreak's messages use, drawn as Unicode in colour terminals.
# fmt: off
EMOJI = {
    "rotating_light": "🚨", "memo": "📝", "pushpin": "📌", "white_check_mark": "✅",
    "warning": "⚠️", "x": "❌", "bell": "🔔", "zzz": "💤", "arrows_counterclockwise": "🔄",
    "large_blue_circle": "🔵", "bust_in_silhouette": "👤", "hourglass_flowing_sand": "⏳",
    "mag": "🔍", "wrench": "🔧", "eyes": "👀", "+1": "👍", "paperclip": "📎",
}
# fmt: on
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_EMOJI = re.compile(r":([a-z0-9_+'-]+):")
_FORMATS = (
    (re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])"), "1"),
    (re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])"), "3"),
    (re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])"), "9"),
)


@dataclass(frozen=True)
class Style:
    """ANSI colouring, or none: plain text when output is piped or NO_COLOR is set."""

    color: bool

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def accent(self, text: str) -> str:
        return self.paint(text, "36")

    def good(self, text: str) -> str:
        return self.paint(text, "32")

    def warn(self, text: str) -> str:
        return self.paint(text, "33")

    def emoji(self, name: str) -> str:
        """Unicode in colour terminals; the `:shortcode:` in plain text, which is greppable."""
        return EMOJI.get(name, f":{name}:") if self.color else f":{name}:"


def user_name(ws: Workspace, user_id: str | None) -> str:
    """The user's handle; an unknown id is shown as itself, so nothing renders blank."""
    user = ws.users.get(user_id or "")
    return str(user["name"]) if user else (user_id or "?")


def to_text(ws: Workspace, mrkdwn: str, style: Style) -> list[str]:
    """Slack mrkdwn as terminal lines: mentions by name, formatting, quotes, code blocks."""
    lines: list[str] = []
    for index, chunk in enumerate(mrkdwn.split("```")):
        if index % 2:  # inside a code block: verbatim, indented
            lines += [
                style.accent("  " + _unescape(line)) for line in chunk.strip("\n").split("\n")
            ]
            continue
        for line in chunk.strip("\n").split("\n") if chunk.strip("\n") else []:
            quote = re.match(r"^(?:>|&gt;) ?", line)
            text = _inline(ws, line[quote.end() :] if quote else line, style)
            lines.append(style.dim("│ ") + text if quote else text)
    return lines


def _inline(ws: Workspace, text: str, style: Style) -> str:
    parts = re.split(r"(`[^`\n]+`)", text)
    for i, part in enumerate(parts):
        if i % 2:  # `code`: backticks kept in plain text, colour instead in a terminal
            parts[i] = style.accent(_unescape(part[1:-1] if style.color else part))
            continue
        part = _LINK.sub(lambda m: _link(ws, m.group(1), m.group(2), style), part)
        for pattern, code in _FORMATS:

            def paint(match: re.Match[str], code: str = code) -> str:
                return style.paint(match.group(1), code)

            part = pattern.sub(paint, part)
        parts[i] = _unescape(_EMOJI.sub(lambda m: style.emoji(m.group(1)), part))
    return "".join(parts)


def _link(ws: Workspace, target: str, label: str | None, style: Style) -> str:
    if target.startswith("@"):
        return style.bold("@" + user_name(ws, target[1:]))
    if target.startswith("#"):
        channel = ws.channels.get(target[1:])
        return style.accent("#" + (channel.name if channel else label or target[1:]))
    if target.startswith("!"):
        kind = target[1:].split("^")[0]
        return style.bold("@" + (label or kind).lstrip("@"))
    return f"{label} ({target})" if label and label != target else target


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
