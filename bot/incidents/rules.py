"""Vocabulary and limits of the incident lifecycle."""

from __future__ import annotations

STATUSES = ("investigating", "identified", "monitoring", "resolved")
ACTIVE_STATUSES = STATUSES[:-1]
ROLES = ("commander", "comms", "lead")

# A header block holds 150 characters (free text is limited in bot.incidents.limits).
TITLE_MAX = 150
