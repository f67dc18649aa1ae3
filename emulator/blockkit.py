"""Block Kit validation with Slack's documented limits.

Slack rejects a whole message or view when any block breaks a rule, so bugs
such as a 3001-character section or an 11-option checkbox group only show up
in production unless the emulator refuses them too. Errors are reported the way
Slack does: ``"<rule> [json-pointer:/blocks/0/text/text]"``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

from emulator.api import ApiError

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT = 40_000
MAX_ID = 255

SELECTS = {
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "multi_external_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
}
PICKERS = {"datepicker", "timepicker", "datetimepicker"}
TEXT_INPUTS = {
    "plain_text_input",
    "email_text_input",
    "url_text_input",
    "number_input",
    "rich_text_input",
}
ACTION_ELEMENTS = {"button", "checkboxes", "radio_buttons", "overflow"} | SELECTS | PICKERS
ACCESSORY_ELEMENTS = ACTION_ELEMENTS | {"image"}
INPUT_ELEMENTS = {"checkboxes", "radio_buttons", "file_input"} | SELECTS | PICKERS | TEXT_INPUTS
# Elements whose current value Slack reports in ``state.values``.
STATEFUL_ELEMENTS = INPUT_ELEMENTS
OPTION_LIMITS = {"checkboxes": 10, "radio_buttons": 10, "overflow": 5}
PASSIVE_BLOCKS = {"divider", "rich_text", "file", "video"}

_generated_ids = itertools.count(1)


def check_message(text: Any, blocks: Any, attachments: Any = None) -> None:
    """Apply chat.postMessage's content rules (no_text, msg_too_long, invalid_blocks...)."""
    if text is not None and len(str(text)) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if blocks is not None:
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise ApiError("invalid_blocks_format")
        errors = block_errors(blocks, "/blocks", MAX_MESSAGE_BLOCKS)
        if errors:
            raise ApiError(
                "invalid_blocks",
                errors=errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
    if attachments is not None:
        if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
            raise ApiError("invalid_attachments")
        if len(attachments) > 100:
            raise ApiError("too_many_attachments")
    if not text and not blocks and not attachments:
        raise ApiError("no_text")


def check_view(view: Any) -> None:
    """views.* report every schema problem as ``invalid_arguments`` plus pointer messages."""
    if not isinstance(view, dict):
        raise ApiError(
            "invalid_arguments",
            response_metadata={
                "messages": ["[ERROR] view must be a JSON object [json-pointer:/view]"]
            },
        )
    checker = _Checker()
    checker.view(view)
    if checker.errors:
        raise ApiError(
            "invalid_arguments",
            response_metadata={"messages": [f"[ERROR] {e}" for e in checker.errors]},
        )


def block_errors(blocks: list[Any], path: str, max_blocks: int) -> list[str]:
    checker = _Checker()
    checker.blocks(blocks, path, max_blocks)
    return checker.errors


def with_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy of ``blocks`` with the block_id/action_id Slack generates when the app omits them."""
    filled = copy.deepcopy(blocks)
    for block in filled:
        block.setdefault("block_id", _generated_id())
        for element in _block_elements(block):
            if element.get("type") in ACTION_ELEMENTS | INPUT_ELEMENTS:
                element.setdefault("action_id", _generated_id())
    return filled


def iter_elements(blocks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (block, interactive element) pair, in display order."""
    for block in blocks:
        for element in _block_elements(block):
            yield block, element


def _block_elements(block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "actions":
        return [e for e in block.get("elements", []) if isinstance(e, dict)]
    if kind == "section" and isinstance(block.get("accessory"), dict):
        return [block["accessory"]]
    if kind == "input" and isinstance(block.get("element"), dict):
        return [block["element"]]
    return []


def _generated_id() -> str:
    return f"gen{next(_generated_ids):05d}"


class _Checker:
    """Collects rule violations with their JSON pointers."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, rule: str) -> None:
        self.errors.append(f"{rule} [json-pointer:{path}]")

    def max_len(self, value: Any, path: str, limit: int) -> None:
        if value is not None and len(str(value)) > limit:
            self.fail(path, f"must be less than {limit + 1} characters")

    def text(self, obj: Any, path: str, limit: int, *, plain: bool = False) -> None:
        if not isinstance(obj, dict):
            self.fail(path, "missing required field: text object")
            return
        kinds = {"plain_text"} if plain else {"plain_text", "mrkdwn"}
        if obj.get("type") not in kinds:
            self.fail(f"{path}/type", f"must be one of {sorted(kinds)}")
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            self.fail(f"{path}/text", "must be more than 0 characters")
        self.max_len(value, f"{path}/text", limit)

    def optional_text(self, obj: Any, path: str, limit: int, *, plain: bool = False) -> None:
        if obj is not None:
            self.text(obj, path, limit, plain=plain)

    def count(self, items: Any, path: str, *, minimum: int, maximum: int) -> list[Any]:
        if not isinstance(items, list):
            self.fail(path, "must be an array")
            return []
        if len(items) < minimum:
            self.fail(path, f"must provide at least {minimum} items")
        if len(items) > maximum:
            self.fail(path, f"no more than {maximum} items allowed")
        return items

    def view(self, view: dict[str, Any]) -> None:
        kind = view.get("type")
        if kind not in {"modal", "home"}:
            self.fail("/view/type", "must be one of ['home', 'modal']")
        if kind == "modal":
            self.text(view.get("title"), "/view/title", 24, plain=True)
            self.optional_text(view.get("submit"), "/view/submit", 24, plain=True)
            self.optional_text(view.get("close"), "/view/close", 24, plain=True)
        self.max_len(view.get("callback_id"), "/view/callback_id", MAX_ID)
        self.max_len(view.get("external_id"), "/view/external_id", MAX_ID)
        self.max_len(view.get("private_metadata"), "/view/private_metadata", 3000)
        blocks = view.get("blocks")
        if not isinstance(blocks, list):
            self.fail("/view", "missing required field: blocks")
            return
        self.blocks(blocks, "/view/blocks", MAX_VIEW_BLOCKS)
        has_inputs = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if kind == "modal" and has_inputs and view.get("submit") is None:
            self.fail("/view", "must provide a submit property when using input blocks")

    def blocks(self, blocks: list[Any], path: str, max_blocks: int) -> None:
        if len(blocks) > max_blocks:
            self.fail(path, f"no more than {max_blocks} items allowed")
        seen: set[str] = set()
        for index, block in enumerate(blocks):
            where = f"{path}/{index}"
            if not isinstance(block, dict):
                self.fail(where, "must be an object")
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                self.max_len(block_id, f"{where}/block_id", MAX_ID)
                if block_id in seen:
                    self.fail(f"{where}/block_id", "duplicate block_id")
                seen.add(block_id)
            self.block(block, where)

    def block(self, block: dict[str, Any], path: str) -> None:
        kind = block.get("type")
        if kind == "section":
            self.section(block, path)
        elif kind == "header":
            self.text(block.get("text"), f"{path}/text", 150, plain=True)
        elif kind == "context":
            for i, item in enumerate(
                self.count(block.get("elements"), f"{path}/elements", minimum=1, maximum=10)
            ):
                if isinstance(item, dict) and item.get("type") == "image":
                    self.image(item, f"{path}/elements/{i}")
                else:
                    self.text(item, f"{path}/elements/{i}", 3000)
        elif kind == "actions":
            elements = self.count(block.get("elements"), f"{path}/elements", minimum=1, maximum=25)
            self.elements_in(elements, f"{path}/elements", ACTION_ELEMENTS)
        elif kind == "input":
            self.text(block.get("label"), f"{path}/label", 2000, plain=True)
            self.optional_text(block.get("hint"), f"{path}/hint", 2000, plain=True)
            self.elements_in([block.get("element")], f"{path}/element", INPUT_ELEMENTS, single=True)
        elif kind == "image":
            self.image(block, path)
            self.optional_text(block.get("title"), f"{path}/title", 2000, plain=True)
        elif kind == "markdown":
            self.max_len(block.get("text"), f"{path}/text", 12_000)
            if not block.get("text"):
                self.fail(f"{path}/text", "must be more than 0 characters")
        elif kind not in PASSIVE_BLOCKS:
            self.fail(f"{path}/type", f"unsupported block type: {kind}")
        if kind == "rich_text" and not isinstance(block.get("elements"), list):
            self.fail(path, "missing required field: elements")

    def section(self, block: dict[str, Any], path: str) -> None:
        if block.get("text") is None and block.get("fields") is None:
            self.fail(path, "must provide either text or fields")
        self.optional_text(block.get("text"), f"{path}/text", 3000)
        if block.get("fields") is not None:
            for i, field in enumerate(
                self.count(block["fields"], f"{path}/fields", minimum=1, maximum=10)
            ):
                self.text(field, f"{path}/fields/{i}", 2000)
        if block.get("accessory") is not None:
            self.elements_in(
                [block["accessory"]], f"{path}/accessory", ACCESSORY_ELEMENTS, single=True
            )

    def elements_in(
        self, elements: list[Any], path: str, allowed: set[str], *, single: bool = False
    ) -> None:
        action_ids: set[str] = set()
        for i, element in enumerate(elements):
            where = path if single else f"{path}/{i}"
            if not isinstance(element, dict):
                self.fail(where, "missing required field: element")
                continue
            if element.get("type") not in allowed:
                self.fail(f"{where}/type", f"unsupported element type here: {element.get('type')}")
                continue
            action_id = element.get("action_id")
            self.max_len(action_id, f"{where}/action_id", MAX_ID)
            if action_id is not None:
                if action_id in action_ids:
                    self.fail(f"{where}/action_id", "duplicate action_id")
                action_ids.add(action_id)
            self.element(element, where)

    def element(self, element: dict[str, Any], path: str) -> None:
        kind = element["type"]
        if kind == "button":
            self.text(element.get("text"), f"{path}/text", 75, plain=True)
            self.max_len(element.get("value"), f"{path}/value", 2000)
            self.max_len(element.get("url"), f"{path}/url", 3000)
            if element.get("style") not in (None, "primary", "danger"):
                self.fail(f"{path}/style", "must be one of ['danger', 'primary']")
        elif kind == "image":
            self.image(element, path)
        elif kind in OPTION_LIMITS:
            minimum = 2 if kind == "overflow" else 1
            options = self.count(
                element.get("options"),
                f"{path}/options",
                minimum=minimum,
                maximum=OPTION_LIMITS[kind],
            )
            self.options(options, f"{path}/options", plain=kind == "overflow")
        elif kind in {"static_select", "multi_static_select"}:
            self.static_select(element, path)
        elif kind == "plain_text_input":
            self.max_len(element.get("initial_value"), f"{path}/initial_value", 3000)
            for key in ("min_length", "max_length"):
                length = element.get(key)
                if length is not None and not (isinstance(length, int) and 0 <= length <= 3000):
                    self.fail(f"{path}/{key}", "must be between 0 and 3000")
        if kind in SELECTS | TEXT_INPUTS | PICKERS:
            self.optional_text(element.get("placeholder"), f"{path}/placeholder", 150, plain=True)
        if element.get("confirm") is not None:
            self.confirm(element["confirm"], f"{path}/confirm")

    def static_select(self, element: dict[str, Any], path: str) -> None:
        if element.get("options") is None and element.get("option_groups") is None:
            self.fail(path, "must provide either options or option_groups")
        if element.get("options") is not None:
            options = self.count(element["options"], f"{path}/options", minimum=1, maximum=100)
            self.options(options, f"{path}/options", plain=True)
        if element.get("option_groups") is not None:
            groups = self.count(
                element["option_groups"], f"{path}/option_groups", minimum=1, maximum=100
            )
            for i, group in enumerate(groups):
                where = f"{path}/option_groups/{i}"
                if not isinstance(group, dict):
                    self.fail(where, "must be an object")
                    continue
                self.text(group.get("label"), f"{where}/label", 75, plain=True)
                options = self.count(
                    group.get("options"), f"{where}/options", minimum=1, maximum=100
                )
                self.options(options, f"{where}/options", plain=True)

    def options(self, options: list[Any], path: str, *, plain: bool) -> None:
        for i, option in enumerate(options):
            where = f"{path}/{i}"
            if not isinstance(option, dict):
                self.fail(where, "must be an object")
                continue
            self.text(option.get("text"), f"{where}/text", 75, plain=plain)
            if not option.get("value"):
                self.fail(where, "missing required field: value")
            self.max_len(option.get("value"), f"{where}/value", 150)
            self.optional_text(option.get("description"), f"{where}/description", 75, plain=plain)

    def image(self, image: dict[str, Any], path: str) -> None:
        if not image.get("image_url") and not image.get("slack_file"):
            self.fail(path, "missing required field: image_url")
        self.max_len(image.get("image_url"), f"{path}/image_url", 3000)
        if not image.get("alt_text"):
            self.fail(path, "missing required field: alt_text")
        self.max_len(image.get("alt_text"), f"{path}/alt_text", 2000)

    def confirm(self, confirm: Any, path: str) -> None:
        if not isinstance(confirm, dict):
            self.fail(path, "must be an object")
            return
        self.text(confirm.get("title"), f"{path}/title", 100, plain=True)
        self.text(confirm.get("text"), f"{path}/text", 300)
        self.text(confirm.get("confirm"), f"{path}/confirm", 30, plain=True)
        self.text(confirm.get("deny"), f"{path}/deny", 30, plain=True)
