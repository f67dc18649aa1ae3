"""Errors whose message is meant for the user who asked."""

from __future__ import annotations


class UserError(Exception):
    """Shown to the requester as-is (ephemeral); nothing was changed."""


NOT_AN_INCIDENT_CHANNEL = (
    "This command only works in an incident channel. "
    "See `/incident list` for open incidents, or declare one with `/incident declare`."
)
DATABASE_DOWN = "The incident database is unavailable right now; nothing was changed. Try again."
