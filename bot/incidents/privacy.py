"""Private (security) incidents: what may leave their channel.

Seeds 000, 002 and 003: a suspected breach is worked on need-to-know. A private
incident gets a private channel, and the broadcast channel hears one thing only:
that a private incident was declared and whom to ask for access. No title, no
service, no severity, no status changes, no resolution, no post-mortem.

Every path that writes to the broadcast channel asks `broadcasts` first (declare,
status and severity changes, updates, resolve, escalated reminders, undeliverable
notices, the post-mortem's announcement, paging outcomes, a follow-up's links), and
PagerDuty gets `outside_title` instead of the title and description. The outbox checks again
before sending (`withheld`): a path added later that forgets to ask still cannot
leak, because a private incident's rows may reach only its own channel, except the
one notice queued as `NOTICE_KIND`.
"""

from __future__ import annotations

from bot.mrkdwn import mention
from storage.models import Incident
from storage.outbox import WITHHELD

__all__ = ["NOTICE_KIND", "WITHHELD", "broadcasts", "notice", "outside_title", "withheld"]

# The outbox kind of the one message a private incident may post outside its channel.
NOTICE_KIND = "private_notice"


def broadcasts(incident: Incident) -> bool:
    """Whether anything about `incident` besides the notice may reach the broadcast channel."""
    return not incident.private


def notice(incident: Incident) -> str:
    """The broadcast channel's only word on a private incident; it names whom to ask."""
    lead = incident.role("commander") or incident.declared_by
    who = f" ({mention(lead)})" if lead and lead != "firebreak" else ""
    return f":lock: A private incident was declared; ask the commander{who} for access."


def outside_title(incident: Incident) -> str:
    """What systems outside Slack (PagerDuty) are told of a private incident."""
    return f"Private incident #{incident.id}: details in its Slack channel"


def withheld(incident: Incident, channel: str, kind: str) -> bool:
    """The outbox's backstop: True when a row must not be sent because it would carry
    a private incident's news outside its own channel."""
    if not incident.private or kind == NOTICE_KIND:
        return False
    return channel != incident.channel_id
