"""Messages that can never be delivered: told apart from passing failures, and said once.

A 429, a 5xx or a timeout passes: the message is retried. Anything else
Slack answers (a missing or archived channel, a layout it rejects, a revoked
token) will be answered the same way forever, so retrying it would only hold
back the messages behind it. Such a failure is recorded as an event (the
post-mortem shows it) and reported once per incident, destination and reason,
where people will see it: a broadcast-channel problem in the incident channel,
an incident-channel problem in the broadcast channel.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.incidents import privacy
from bot.mrkdwn import channel_link, escape
from storage import incidents as incident_store
from storage import outbox as store
from storage.models import Incident

EVENT = "delivery_failed"

# The errors that pass. Everything else is permanent: an unknown error retried
# forever silences a channel (the failure this module exists to prevent), while
# one given up on is recorded and reported.
TRANSIENT = frozenset(
    {
        "ratelimited",
        "request_timeout",
        "connection_error",
        "fatal_error",
        "internal_error",
        "service_unavailable",
        "team_added_to_org",
    }
)
CHANNEL_PROBLEMS = frozenset(
    {"channel_not_found", "is_archived", "is_inactive", "not_in_channel", "restricted_action"}
)
TOKEN_PROBLEMS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
_EXPLAINED = {
    "channel_not_found": "the channel does not exist (or is private and Firebreak is not in it)",
    "is_archived": "the channel is archived",
    "is_inactive": "the channel is archived",
    "not_in_channel": "Firebreak is not in the channel and could not join it",
    "restricted_action": "the workspace does not let Firebreak post there",
    "invalid_blocks": "Slack rejected the message's layout",
    "invalid_blocks_format": "Slack rejected the message's layout",
    "msg_too_long": "the message is longer than Slack allows",
    "no_text": "the message was empty",
    "missing_scope": "Firebreak's Slack app lacks a permission; `firebreak check --live` names it",
    "cant_invite_self": "that is Firebreak itself",
    "user_not_found": "Slack does not know that user",
    "user_is_deactivated": "that user is deactivated",
    **dict.fromkeys(
        TOKEN_PROBLEMS, "Slack refused Firebreak's token; reinstall the app or fix SLACK_BOT_TOKEN"
    ),
}
# What to do about a broadcast channel that refuses messages.
_BROADCAST_REMEDY = {
    "channel_not_found": "Set FIREBREAK_ANNOUNCE_CHANNEL or create it.",
    "is_archived": "Unarchive it, or set FIREBREAK_ANNOUNCE_CHANNEL to another channel.",
    "is_inactive": "Unarchive it, or set FIREBREAK_ANNOUNCE_CHANNEL to another channel.",
    "not_in_channel": "Invite Firebreak to it (`/invite @Firebreak`).",
}


def is_permanent(code: str) -> bool:
    return code not in TRANSIENT


def explain(code: str) -> str:
    return _EXPLAINED.get(code, "Slack refused it")


def remedy(channel: str, code: str, announce_channel: str) -> str:
    """What to do about it, when the failing channel is the broadcast channel."""
    if channel.lstrip("#") != announce_channel:
        return ""
    return _BROADCAST_REMEDY.get(code, "")


def where(channel: str) -> str:
    """A channel ID as a link, a configured name as `#name`."""
    return channel_link(channel, channel.lstrip("#"))


def record(
    session: Session,
    incident: Incident,
    *,
    channel: str,
    code: str,
    what: str,
    now: datetime,
    announce_channel: str,
    report: bool = True,
    once: bool = False,
) -> None:
    """Record that `what` could never reach `channel`; the first time this incident
    meets this channel and reason (and `report` is set), queue a notice saying so.
    With `once` (an attempt repeated every cadence), only that first time is recorded."""
    destination = store.slack_destination(channel)
    first = not store.failed_before(session, incident.id, EVENT, destination, code)
    if once and not first:
        return
    notice = _notice(incident, channel, code, what, announce_channel) if report and first else None
    incident_store.append_event(
        session,
        incident,
        EVENT,
        "firebreak",
        now,
        destination=destination,
        channel=_name(incident, channel),
        reason=code,
        what=what,
        reported=notice is not None,
    )
    if notice is not None:
        target, text = notice
        store.enqueue(session, incident.id, "notice", now, channel=target, text=text)


def _name(incident: Incident, channel: str) -> str:
    return str(incident.channel_name) if channel == incident.channel_id else channel.lstrip("#")


def _notice(
    incident: Incident, channel: str, code: str, what: str, announce_channel: str
) -> tuple[str, str] | None:
    """(where to say it, what to say), or None when no channel can be told."""
    if code in TOKEN_PROBLEMS or not incident.channel_id:
        return None  # nothing reaches Slack: the logs, /metrics and the replies say it
    if channel.lstrip("#") == announce_channel and code in CHANNEL_PROBLEMS:
        text = (
            f":warning: Could not announce this incident in #{escape(announce_channel)}: "
            f"{explain(code)}. {remedy(channel, code, announce_channel)}"
        )
        return incident.channel_id, text.rstrip()
    if channel == incident.channel_id and code in CHANNEL_PROBLEMS:
        if incident.closed_at is not None or not privacy.broadcasts(incident):
            # Archived after the post-mortem, say: nobody needs telling. Or private:
            # its title must not reach the broadcast channel; the log keeps it.
            return None
        text = (
            f":warning: Firebreak cannot post in {where(channel)}, the channel of the open "
            f"*{escape(incident.severity)}* incident “{escape(incident.title)}”: "
            f"{explain(code)} while the incident is still open. Reminders and updates are "
            "not reaching it; unarchive it or invite Firebreak back."
        )
        return f"{announce_channel}", text
    text = (
        f":warning: Firebreak could not {what} in {where(channel)}: {explain(code)} "
        f"(`{code}`). It will not be retried; the incident log keeps what it said."
    )
    return incident.channel_id, text
