"""Modals as a terminal asks for them: one prompt per input, answers as Slack submits them.

A modal in Slack is a form filled in all at once; in a terminal it becomes a
dialogue, one field at a time. This is kept apart from devtools.console, which
only turns Slack's state into lines: here answers come back, are checked
the way Slack's client checks them (required fields, options that exist,
users by name) and become the `view_submission` values the driver sends.
Reading and printing stay with the caller (`ask` and `say`), so a form can be
filled without a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devtools.console import render_blocks
from devtools.text import Style, user_name
from emulator.workspace import Workspace

Say = Callable[[str], None]  # print one line
Ask = Callable[[str], Awaitable[str | None]]  # prompt -> the line typed, None at end of input


@dataclass(frozen=True)
class Field:
    """One input of a modal, as the shell asks for it."""

    block_id: str
    action_id: str
    kind: str  # "text", "select", "user", "users" or "multi"
    label: str
    optional: bool
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    initial: str | None = None


# The input elements an answer can be typed for, by how it is typed; others are not asked.
_KINDS = {
    "plain_text_input": "text",
    "email_text_input": "text",
    "url_text_input": "text",
    "number_input": "text",
    "static_select": "select",
    "radio_buttons": "select",
    "users_select": "user",
    "multi_users_select": "users",
    "checkboxes": "multi",
    "multi_static_select": "multi",
}


async def fill(
    ws: Workspace, view: dict[str, Any], say: Say, ask: Ask, style: Style
) -> dict[str, object] | None:
    """Ask for each field of `view` until its answer fits: the view's submit values,
    or None when the user cancels (`:cancel`, any `:` command, or end of input)."""
    for line in render_modal(ws, view, style):
        say(line)
    values: dict[str, object] = {}
    for field in modal_fields(view):
        lines, prompt = field_prompt(ws, field, style)
        for line in lines:
            say(line)
        while True:
            answer = await ask(prompt)
            if answer is None or answer.strip().startswith(":"):  # :cancel, :quit…
                return None
            try:
                value = field_value(ws, field, answer)
            except ValueError as exc:
                say(style.warn(f"│ {exc}"))
                continue
            if value is not None:
                values[field.block_id] = {field.action_id: value}
            break
    return values


def modal_fields(view: dict[str, Any]) -> list[Field]:
    """The view's inputs the shell can prompt for, in display order."""
    fields = []
    for block in view.get("blocks") or []:
        element = block.get("element") or {}
        kind = _KINDS.get(str(element.get("type")))
        if block.get("type") != "input" or kind is None:
            continue
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options += group.get("options", [])
        initial = element.get("initial_value") or element.get("initial_user")
        if isinstance(element.get("initial_option"), dict):
            initial = element["initial_option"].get("value")
        fields.append(
            Field(
                str(block.get("block_id")),
                str(element.get("action_id")),
                kind,
                str((block.get("label") or {}).get("text", block.get("block_id"))),
                bool(block.get("optional")),
                tuple((str(o["value"]), str(o["text"]["text"])) for o in options),
                str(initial) if initial else None,
            )
        )
    return fields


def render_modal(ws: Workspace, view: dict[str, Any], style: Style) -> list[str]:
    """The modal's title and its non-input blocks (explanations, context)."""
    title = (view.get("title") or {}).get("text", "Modal")
    submit = (view.get("submit") or {}).get("text", "Submit")
    shown = [b for b in view.get("blocks") or [] if b.get("type") != "input"]
    body = render_blocks(ws, {"ts": "0", "blocks": shown}, style, {})
    hint = f"Answer each field; Enter keeps the default; :cancel closes it. Then: {submit}."
    return [style.bold(f"┌ {title}"), *("│ " + line for line in body), style.dim("│ " + hint)]


def field_prompt(ws: Workspace, field: Field, style: Style) -> tuple[list[str], str]:
    """Lines describing the field, and the prompt to read its answer after."""
    need = style.dim(" (optional)") if field.optional else ""
    lines = [f"│ {style.bold(field.label)}{need}"]
    lines += [f"│   {n}. {label}" for n, (_, label) in enumerate(field.options, start=1)]
    default = field.initial
    if field.kind == "user" and default:
        default = "@" + user_name(ws, default)
    how = {"user": "a name", "users": "names", "multi": "numbers, comma-separated"}
    hint = how.get(field.kind, "a number" if field.options else "")
    shown = f" [{default}]" if default else ""
    return lines, f"│ {hint}{shown}> " if hint else f"│{shown}> "


def field_value(ws: Workspace, field: Field, answer: str) -> Any:
    """The typed answer as the driver's submit value; None keeps the default.

    Raises ValueError with a message for the user when the answer does not fit.
    """
    answer = answer.strip()
    if not answer:
        if field.optional or field.initial:
            return None
        raise ValueError(f"{field.label} is required")
    if field.kind == "text":
        return answer
    if field.kind == "user":
        return _user_id(ws, answer)
    if field.kind == "users":
        return [_user_id(ws, word) for word in re.split(r"[\s,]+", answer) if word]
    picks = [_option(field, word) for word in re.split(r"\s*,\s*", answer) if word]
    return picks if field.kind == "multi" else picks[0]


def _option(field: Field, word: str) -> str:
    if word.isdigit() and 1 <= int(word) <= len(field.options):
        return field.options[int(word) - 1][0]
    for value, label in field.options:
        if word.lower() in (value.lower(), label.lower()):
            return value
    raise ValueError(f"choose 1-{len(field.options)} for {field.label}")


def _user_id(ws: Workspace, word: str) -> str:
    name = word.lstrip("@").lower()
    for user in ws.users.values():
        if name in (user["id"].lower(), str(user["name"]).lower()) and not user.get("is_bot"):
            return str(user["id"])
    raise ValueError(f"no user called {word}")
