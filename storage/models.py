"""The tables. The event log is the source of truth; `Incident` is a projection of it.

Every change to an incident appends an `Event` in the same transaction that
updates the projection, so the timeline, metrics and audit trail are reads of
`events` and never of `updated_at`-style columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Idempotency key of the request that declared it (trigger_id or view id):
    # a duplicate delivery hits the unique constraint instead of declaring twice.
    request_key: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32), default="investigating")
    declared_by: Mapped[str] = mapped_column(String(32))
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime())
    origin_channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    resolution_summary: Mapped[str | None] = mapped_column(Text, default=None)
    # A security incident: a private channel, and nothing of it in the broadcast channel
    # but a notice that it exists (bot/incidents/privacy.py).
    private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # Declare-saga progress. Each Slack step is recorded as it completes so
    # `resume` finishes what is missing and never repeats what is done.
    # The channel name is claimed here (unique) *before* conversations.create,
    # so two incidents never race for one name and a crash after create can
    # adopt the channel instead of making a second one.
    channel_name: Mapped[str | None] = mapped_column(String(80), unique=True, default=None)
    channel_id: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    invited: Mapped[bool] = mapped_column(Boolean, default=False)
    # The topic last set in Slack, so an unchanged topic is not set again.
    topic: Mapped[str | None] = mapped_column(String(250), default=None)
    checklist_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    checklist_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    setup_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Status-update reminders. The due time lives here, not only in the
    # scheduler, so a restart rebuilds the schedule and replicas claim each
    # nudge with a conditional UPDATE before posting it.
    next_update_due_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=None, index=True
    )
    last_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_update_text: Mapped[str | None] = mapped_column(Text, default=None)
    nudges_missed: Mapped[int] = mapped_column(Integer, default=0)
    nudge_claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    nudge_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Bumped by every change of `next_update_due_at`: a reminder send that finishes
    # reschedules only if nothing (a snooze, an update) re-timed it while it was in flight.
    reminder_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the missed response target (severities.yml `response_time`: no commander and
    # no update by then) was escalated; set once, under the nudge claim.
    response_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The end of an active `/incident snooze`, which a severity change keeps.
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A closed incident cannot change; work that goes on is declared from its channel as
    # a follow-up incident, linked here.
    follow_up_of: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), default=None
    )
    # Lease on the saga, so one replica (and one task) resumes an incident at a time.
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Fencing tokens: raised by each new holder of the lease or nudge claim; a write
    # guarded by one is refused once another holder has taken over.
    lease_token: Mapped[int] = mapped_column(Integer, default=0)
    nudge_claim_token: Mapped[int] = mapped_column(Integer, default=0)
    # How the declare saga answers the declarer when it completes: the command's
    # response_url while Slack accepts it, else an ephemeral message in the channel.
    reply_url: Mapped[str | None] = mapped_column(Text, default=None)
    reply_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    declarer_answered: Mapped[bool] = mapped_column(Boolean, default=False)

    roles: Mapped[list[Role]] = relationship(back_populates="incident", lazy="selectin")
    checklist: Mapped[list[ChecklistItem]] = relationship(
        back_populates="incident", lazy="selectin", order_by="ChecklistItem.position"
    )

    @property
    def setup_complete(self) -> bool:
        return bool(
            self.channel_id
            and self.invited
            and self.checklist_ts
            and self.checklist_ts != PENDING
            and self.checklist_pinned
            and self.declarer_answered
        )

    def role(self, name: str) -> str | None:
        return next((r.user_id for r in self.roles if r.role == name), None)


# Marks a post that was attempted but whose ts was never recorded (crash or
# error in between): resume looks the message up before posting again.
PENDING = "pending"


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("incident_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    assigned_by: Mapped[str] = mapped_column(String(32))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())

    incident: Mapped[Incident] = relationship(back_populates="roles")


class ChecklistItem(Base):
    __tablename__ = "checklist_items"
    __table_args__ = (UniqueConstraint("incident_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    phase: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)
    checked: Mapped[bool] = mapped_column(Boolean, default=False)
    checked_by: Mapped[str | None] = mapped_column(String(32), default=None)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    incident: Mapped[Incident] = relationship(back_populates="checklist")


class Event(Base):
    """One append-only entry of an incident's log (timeline and audit trail)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HandledRequest(Base):
    """Idempotency keys of the Slack requests already applied.

    Inserted in the same transaction as the change it guards, so a retried or
    duplicated delivery of `/incident update …` cannot post or log twice.
    """

    __tablename__ = "handled_requests"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class InboxRequest(Base):
    """A Slack request that was acked and is not yet handled.

    Written before the ack is answered, deleted once its work is done, so a
    crash after the ack never loses a command: a worker claims the row (a
    conditional UPDATE, after `FOR UPDATE SKIP LOCKED` on Postgres) and replays
    the stored body through the Bolt app. A claim lapses unless renewed, so the
    request of a worker that died is replayed by another; `claim_token` fences
    the finish against a holder that lost its claim.
    """

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    claim_token: Mapped[int] = mapped_column(Integer, default=0)


class OutboxMessage(Base):
    """A message or refresh owed for an incident, written with the change that caused it.

    The change and its outbox row commit together; delivery happens after the
    commit. Rows to one `destination` (`slack:<channel>` today; other systems
    later) go out in id order, and a row is only sent when every earlier row to
    its destination is settled, so one destination that refuses messages never
    holds back another. A transient error (429, 5xx, timeout) is retried with
    backoff; a permanent one (`channel_not_found`, `invalid_blocks`…) sets
    `failed_at` with the reason in `last_error`, and the row is not sent again.
    `kind` is `post` (a message), `notice` (a message about an undeliverable
    one, never itself reported), `topic` or `checklist` (refresh from the
    current state) or `invite` (text holds the user ID). Of several unsent rows
    with the same `collapse_key` to one destination, only the newest is sent.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(120), default="", index=True)
    channel: Mapped[str] = mapped_column(String(80), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    thread_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    delivered_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    collapse_key: Mapped[str | None] = mapped_column(String(64), default=None)


class Postmortem(Base):
    """The compiled post-mortem of an incident and the progress of its export.

    One row per incident (unique), so closing twice never exports twice; each
    export step is recorded as it completes so a failed export resumes.
    """

    __tablename__ = "postmortems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(32), default="pending_export")
    markdown: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    written_path: Mapped[str | None] = mapped_column(String(512), default=None)
    file_id: Mapped[str | None] = mapped_column(String(32), default=None)
    announced_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)


class PendingAction(Base):
    """A runbook mitigation waiting for confirmation, and what became of it.

    The confirm button carries this row's ID; a conditional UPDATE from
    `pending` to `confirmed` makes a click count once, across replicas.
    """

    __tablename__ = "pending_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    dry_run: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, default=None)
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    # What the dry run resolved (target revision, replica counts, pid) and the version of
    # the state it read; the confirmed run does exactly this, or refuses if that changed.
    pinned: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class AlertDelivery(Base):
    """One alert delivery as received (Alertmanager or the generic form), before and after
    it is processed.

    Written in the request, before the answer; processed after it. A delivery that
    repeats the last one recorded for its key (a retry, or Alertmanager's
    `repeat_interval`) is not written again. One left unprocessed by a crash is picked
    up by the sweep.
    """

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the dedup key
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of what the delivery says
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # normalised
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    outcome: Mapped[str | None] = mapped_column(String(255), default=None)


class AlertGroup(Base):
    """One episode of an alert group (an Alertmanager `groupKey` or a generic `dedup_key`).

    `active_key` holds the key's hash while the episode is live and is unique, so two
    deliveries racing (threads or replicas) cannot open two episodes, and so two
    incidents. It is cleared when the episode ends (its incident resolved, or all its
    alerts resolved before anyone declared), and the next firing opens a new one.
    `alerts` maps each alert's fingerprint to what was last heard of it.
    """

    __tablename__ = "alert_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), index=True)
    dedup_key: Mapped[str] = mapped_column(Text)
    active_key: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    rule: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # declare | offer | ignore
    state: Mapped[str] = mapped_column(String(16))  # declared | offered | dismissed | ignored
    auto_resolve: Mapped[bool] = mapped_column(Boolean, default=False)
    severity: Mapped[str] = mapped_column(String(8))
    service: Mapped[str | None] = mapped_column(String(128), default=None)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    links: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[text, url], …]
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    alerts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), default=None, index=True
    )
    # The offer in the broadcast channel: None (not posted), PENDING, or its ts.
    offer_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_by: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Every alert resolved under a rule with auto_resolve: the incident is owed a resolve.
    resolve_due: Mapped[bool] = mapped_column(Boolean, default=False)
    # The alert's details posted in the incident channel (once it exists).
    source_posted: Mapped[bool] = mapped_column(Boolean, default=False)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Triage(Base):
    """The scenario guessed at declare (or switched to), and how far its triage got.

    `state` walks guess → diagnose → details → files → done; each step is a conditional
    write on (`round`, `state`), so a retried or concurrent run never posts twice,
    and a switch (a new round) makes a run of the old one stop at its next step. One
    run at a time holds its lease, so the diagnostics are not run twice at once.
    """

    __tablename__ = "triages"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    scenario: Mapped[str | None] = mapped_column(String(64), default=None)
    service: Mapped[str | None] = mapped_column(String(128), default=None)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    round: Mapped[int] = mapped_column(Integer, default=1)
    switched_by: Mapped[str | None] = mapped_column(String(32), default=None)  # None: guessed
    state: Mapped[str] = mapped_column(String(16), default="guess", index=True)
    # The digest's outbox row: its delivered ts is where the details are threaded.
    digest_outbox_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Per diagnostic: command, ok, error, summary, output (redacted by the executors).
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Lease on the triage's run, apart from the incident's: diagnostics take seconds, and
    # the declare saga and the export must not wait for them (storage/leases.py).
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Listener(Base):
    """A span during which one Firebreak process was receiving Slack's events.

    The process writes its row when it starts and moves `seen_at` forward on every
    sweep; a sweep that finds its own row stale (the process stalled, or lost the
    database) starts a new row instead. What no row covers is a gap: the post-mortem
    reads the channel's history there (bot/postmortem/room.py)."""

    __tablename__ = "listeners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
