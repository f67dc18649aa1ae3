"""Cards as Slack's Block Kit: the one place that knows Slack's message JSON.

The services describe a message as a `bot.messages.Card`; the gateway renders it
here when it posts or updates. Slack's per-element limits live here too: a
section's text is cut at 3,000 characters (never inside markup), and a
checkboxes element holds at most 10 options, so a longer group spans several
elements, each in its own actions block. A message's `text` (what notifications
and clients without Block Kit show) is read from the rendered sections, so a cut
section is cut there too and the text never says, or pings, more than the blocks.
"""

from __future__ import annotations

from typing import Any

from bot.messages import Button, Buttons, Card, Checkboxes, Choice, Note, Part, Section
from bot.mrkdwn import FALLBACK_MAX, Mrkdwn, mention, truncate_mrkdwn

Block = dict[str, Any]

SECTION_TEXT_MAX = 3000
CHECKBOX_OPTIONS_MAX = 10


def message(card: Card) -> dict[str, Any]:
    """The `text` and `blocks` of a message showing `card`: the text is its paragraphs
    as shown, without the controls or the small print."""
    rendered = blocks(card)
    shown = [b["text"]["text"] for b in rendered if b["type"] == "section"]
    return {"text": Mrkdwn(truncate_mrkdwn("\n".join(shown), FALLBACK_MAX)), "blocks": rendered}


def blocks(card: Card) -> list[Block]:
    return [block for part in card.parts for block in _blocks(part)]


def _blocks(part: Part) -> list[Block]:
    if isinstance(part, Section):
        return [_marked({"type": "section", "text": _mrkdwn(part.text)}, part.marker)]
    if isinstance(part, Note):
        return [_marked({"type": "context", "elements": [_mrkdwn(part.text)]}, part.marker)]
    if isinstance(part, Buttons):
        elements = [_button(b) for b in part.buttons]
        return [_marked({"type": "actions", "elements": elements}, part.marker)]
    return _checkboxes(part)


def _checkboxes(part: Checkboxes) -> list[Block]:
    rendered = []
    for start in range(0, len(part.choices), CHECKBOX_OPTIONS_MAX):
        chunk = part.choices[start : start + CHECKBOX_OPTIONS_MAX]
        element: Block = {
            "type": "checkboxes",
            "action_id": f"{part.action}:{start}",
            "options": [_option(c) for c in chunk],
        }
        ticked = [_option(c) for c in chunk if c.done]
        if ticked:
            element["initial_options"] = ticked
        marker = f"{part.marker}:{start}" if part.marker else None
        rendered.append(_marked({"type": "actions", "elements": [element]}, marker))
    return rendered


def _option(choice: Choice) -> Block:
    option: Block = {"text": {"type": "plain_text", "text": choice.label}, "value": choice.key}
    if choice.done and choice.done_by and choice.done_at:
        option["description"] = _mrkdwn(
            f"{mention(choice.done_by)} · {choice.done_at.strftime('%H:%M UTC')}"
        )
    return option


def _button(button: Button) -> Block:
    rendered: Block = {
        "type": "button",
        "action_id": button.action,
        "text": {"type": "plain_text", "text": button.label},
        "value": button.value,
    }
    if button.primary:
        rendered["style"] = "primary"
    return rendered


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": truncate_mrkdwn(text, SECTION_TEXT_MAX)}


def _marked(block: Block, marker: str | None) -> Block:
    return {**block, "block_id": marker} if marker else block
