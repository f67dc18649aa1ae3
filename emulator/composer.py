"""What a Slack client sends for text a person typed into its message box.

Slack escapes `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;`, and (for a slash
command with `should_escape: true`, and for every chat message) turns the
mentions it recognises into markup: `@bob` → `<@U…|bob>`, `#general` →
`<#C…|general>`, `@here` → `<!here>`, a user group's `@oncall` →
`<!subteam^S…|@oncall>`. So a typed `<!channel>` arrives as `&lt;!channel&gt;`,
while a typed `@channel` arrives as `<!channel>`. The slash-command payload,
the shell and chat messages all go through `encode`, so the bot is tested
against exactly what Slack sends.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.state import WorkspaceState

# `@bob`, `#general`, `@here` as typed (not inside an e-mail address or an entity).
_TYPED_MENTION = re.compile(r"(?<![\w<&])([@#])([a-z0-9](?:[\w.-]*\w)?)", re.IGNORECASE)
SPECIAL_MENTIONS = ("here", "channel", "everyone")


def encode(workspace: WorkspaceState, text: str) -> str:
    """Typed text as a Slack client sends it: &, <, > escaped and mentions resolved."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def resolve(match: re.Match[str]) -> str:
        sigil, name = match.group(1), match.group(2)
        if sigil == "#":
            channel = workspace.channel_by_name(name.lower())
            return f"<#{channel.id}|{channel.name}>" if channel else match.group(0)
        if name.lower() in SPECIAL_MENTIONS:
            return f"<!{name.lower()}>"
        user = next((u for u in workspace.users.values() if u["name"] == name.lower()), None)
        if user is not None:
            return f"<@{user['id']}|{user['name']}>"
        group = next(
            (g for g in workspace.usergroups.values() if g["handle"] == name.lower()), None
        )
        return f"<!subteam^{group['id']}|@{group['handle']}>" if group else match.group(0)

    return _TYPED_MENTION.sub(resolve, text)
