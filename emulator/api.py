"""Plumbing shared by every emulated Web API method: errors, argument access, cursors.

Handlers raise :class:`ApiError` instead of returning error dicts so that each
handler reads as a list of Slack's rules; :meth:`Workspace.call` turns the
exception into the ``{"ok": false, "error": ...}`` body Slack would send.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Arguments that Slack documents as "JSON-encoded string" when sent in a form body.
JSON_FIELDS = frozenset({"blocks", "attachments", "view", "files", "metadata"})


class ApiError(Exception):
    """A Slack error response; ``extra`` holds fields like ``errors`` or ``response_metadata``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def response(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


class Args:
    """Typed access to request arguments, whichever encoding (query, form, JSON) they came in."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw: dict[str, Any] = {
            k: _decode_json_field(k, v) for k, v in raw.items() if k != "token"
        }

    def text(self, key: str) -> str | None:
        """The argument as a string, or None when absent (numbers sent as JSON become strings)."""
        value = self.raw.get(key)
        if value is None:
            return None
        return value if isinstance(value, str) else str(value)

    def required(self, key: str, error: str = "invalid_arguments") -> str:
        value = self.text(key)
        if not value:
            raise ApiError(error)
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key)
        if isinstance(value, bool):
            return value
        return str(value).lower() in {"1", "true", "yes"}

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def number(self, key: str, default: int, *, maximum: int) -> int:
        """A positive page size: Slack treats 0/absent as the default and caps large values."""
        value = self.raw.get(key)
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ApiError("invalid_arguments") from None
        if number <= 0:
            return default
        return min(number, maximum)

    def ids(self, key: str) -> list[str]:
        """A comma-separated list (or a JSON list) of ids, blanks dropped."""
        value = self.raw.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]

    def json(self, key: str) -> Any:
        """A JSON-valued argument; still a string here means the client sent malformed JSON."""
        return self.raw.get(key)


def _decode_json_field(key: str, value: Any) -> Any:
    if key in JSON_FIELDS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def encode_cursor(prefix: str, value: str) -> str:
    """Opaque cursors shaped like Slack's (base64 of e.g. ``next_ts:1700000000.000100``)."""
    return base64.b64encode(f"{prefix}:{value}".encode()).decode()


def decode_cursor(prefix: str, cursor: str) -> str:
    try:
        kind, _, value = base64.b64decode(cursor.encode(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError("invalid_cursor") from None
    if kind != prefix or not value:
        raise ApiError("invalid_cursor")
    return value


def paginate(
    items: Sequence[Any],
    a: Args,
    key: Callable[[Any], str],
    *,
    prefix: str,
    default: int,
    maximum: int,
) -> tuple[list[Any], str]:
    """Slice ``items`` at the cursor; returns the page and the next cursor ("" on the last page)."""
    start = 0
    cursor = a.text("cursor")
    if cursor:
        wanted = decode_cursor(prefix, cursor)
        positions = [i for i, item in enumerate(items) if key(item) == wanted]
        if not positions:
            raise ApiError("invalid_cursor")
        start = positions[0]
    limit = a.number("limit", default, maximum=maximum)
    page = list(items[start : start + limit])
    rest = items[start + limit :]
    return page, encode_cursor(prefix, key(rest[0])) if rest else ""
