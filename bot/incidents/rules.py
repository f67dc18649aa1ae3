"""Vocabulary and limits of the incident lifecycle."""

from __future__ import annotations

STATUSES = ("investigating", "identified", "monitoring", "resolved")
ACTIVE_STATUSES = STATUSES[:-1]
ROLES = ("commander", "comms", "lead")

# Slack limits the texts end up inside: a header block holds 150 characters,
# a section 3000.
TITLE_MAX = 150
TEXT_MAX = 3000
