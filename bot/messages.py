"""What a message says and offers, in the bot's own terms: a `Card` of parts.

The services decide what a message holds (text, small print, buttons, a checklist);
how that looks in Slack (Block Kit, its per-element limits) is decided in one place,
`handlers/blockkit.py`, when the gateway sends it. So `bot/` never builds Slack JSON,
and the outbox stores a card as plain data (`to_json`) that survives a redeploy of
the presentation.

Texts are `Mrkdwn`-ready strings (already escaped where they carry user text);
labels are plain text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Section:
    """A paragraph of mrkdwn. `marker` lets the bot find the message again in history."""

    text: str
    marker: str | None = None


@dataclass(frozen=True)
class Note:
    """Small print under the message (who asked, where the output is)."""

    text: str
    marker: str | None = None


@dataclass(frozen=True)
class Button:
    """A button: `action` names what a click does (the handler registered for it),
    `value` what it applies to."""

    label: str
    action: str
    value: str
    primary: bool = False


@dataclass(frozen=True)
class Buttons:
    buttons: tuple[Button, ...]
    marker: str | None = None


@dataclass(frozen=True)
class Choice:
    """One box of a checklist: ticked or not, and by whom and when."""

    key: str
    label: str
    done: bool = False
    done_by: str | None = None
    done_at: datetime | None = None


@dataclass(frozen=True)
class Checkboxes:
    """A group of boxes; a click reports the ticked keys to the handler of `action`
    (the renderer may split a long group, each part's action starting with it)."""

    action: str
    choices: tuple[Choice, ...]
    marker: str | None = None


Part = Section | Note | Buttons | Checkboxes

_PARTS: dict[str, type[Part]] = {
    "section": Section,
    "note": Note,
    "buttons": Buttons,
    "checkboxes": Checkboxes,
}
_KIND = {cls: kind for kind, cls in _PARTS.items()}


@dataclass(frozen=True)
class Card:
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, *parts: Part) -> Card:
        return cls(tuple(parts))

    @classmethod
    def text(cls, text: str, marker: str | None = None) -> Card:
        """A one-paragraph message."""
        return cls((Section(text, marker),))

    def marked(self, marker: str) -> Card:
        """The same card, `marker` on its first part shown as one block, which the
        outbox's retry looks for (a group of boxes may be split, each part marked apart)."""
        for index, part in enumerate(self.parts):
            if not isinstance(part, Checkboxes):
                parts = list(self.parts)
                parts[index] = replace(part, marker=marker)
                return Card(tuple(parts))
        return self

    def to_json(self) -> str:
        return json.dumps(
            [{"part": _KIND[type(p)], **asdict(p)} for p in self.parts],
            default=datetime.isoformat,
        )

    @classmethod
    def from_json(cls, text: str) -> Card:
        return cls(tuple(_part(item) for item in json.loads(text)))


def _part(item: dict[str, Any]) -> Part:
    kind = item.pop("part")
    if kind == "buttons":
        return Buttons(tuple(Button(**b) for b in item["buttons"]), item.get("marker"))
    if kind == "checkboxes":
        choices = tuple(
            Choice(**{**c, "done_at": c["done_at"] and datetime.fromisoformat(c["done_at"])})
            for c in item["choices"]
        )
        return Checkboxes(item["action"], choices, item.get("marker"))
    return _PARTS[kind](**item)
