"""Turning failures of background work into a short message for the requester."""

from __future__ import annotations

from bot.errors import DATABASE_DOWN, UserError
from bot.gateway import ChatError
from storage.db import DatabaseUnavailable


def failure_text(exc: BaseException) -> str:
    """What the requester reads when background work fails."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, DatabaseUnavailable):
        return DATABASE_DOWN
    if isinstance(exc, ChatError):
        return f":warning: Slack refused `{exc.method}` (`{exc.code}`). Try again in a moment."
    return ":x: Something went wrong on Firebreak's side; it is logged. Try again in a moment."
