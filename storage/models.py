"""The tables. The event log is the source of truth; `Incident` is a projection of it.

Every change to an incident appends an `Event` in the same transaction that
updates the projection, so the timeline, metrics and audit trail are reads of
`events` and never of `updated_at`-style columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
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
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
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
    """A Slack message or refresh owed for an incident, written with the change that caused it.

    The change and its outbox row commit together; delivery happens after the
    commit and is retried with backoff until Slack accepts it, so a 429, a 5xx
    or a crash never loses the message. `kind` is `post` (a message), `topic`
    or `checklist` (refresh from the current state) or `invite` (text holds the
    user ID); all but `post` are idempotent by nature.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
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
