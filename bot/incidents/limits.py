"""Slack's size limits, checked on text as Slack will get it, when the text arrives.

Slack refuses a whole message (`invalid_blocks`) when one section's text is over
3,000 characters, and it counts the text as sent: escaped, so each `&` takes 5
characters and each `<` or `>` 4. A 2,000-character HTML page or 1,000 `&` pass a
check on the typed length and then can never be posted. So free text is measured
as rendered, before anything is recorded, and refused with the limit and how far
over it is; the person can shorten it at once. (Splitting it over several blocks
was the other choice; a status update that long is better cut by its author.)
"""

from __future__ import annotations

from bot.errors import UserError
from bot.mrkdwn import user_text

SECTION_MAX = 3000  # Slack's cap on a section block's text
# Room our own wording takes around the user's text in a message (the prefix, the
# author's mention, the channel link); `check_message` catches what is left.
FRAME_MAX = 200
TEXT_MAX = SECTION_MAX - FRAME_MAX


def rendered_length(text: str) -> int:
    """How many characters `text` takes in a Slack message (mentions kept, rest escaped)."""
    return len(user_text(text))


def over_limit(text: str, limit: int = TEXT_MAX) -> str | None:
    """Why `text` is too long once formatted for Slack, or None when it fits."""
    length = rendered_length(text)
    if length <= limit:
        return None
    return (
        f"That text comes to {length:,} characters once formatted for Slack (an ampersand "
        f"or angle bracket takes 4 or 5); the limit is {limit:,}, so it is "
        f"{length - limit:,} over. Shorten it and send it again."
    )


def check_message(text: str) -> None:
    """Refuse a rendered message Slack would refuse, before it is recorded or queued."""
    if len(text) > SECTION_MAX:
        over = len(text) - SECTION_MAX
        raise UserError(
            f"With the incident's details, that message comes to {len(text):,} characters "
            f"once formatted for Slack; the limit is {SECTION_MAX:,}, so it is {over:,} "
            f"over. Shorten your text by {over:,} characters and send it again."
        )
