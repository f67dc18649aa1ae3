"""`/incident evidence <service> [since=24h]`: a forensic snapshot kept off Slack.

Seeds 000 and 003: preserve evidence before containment changes anything. The
service's pod logs (every pod, every container, the previous container where one
restarted), the events about its objects, its Deployment and ReplicaSets (the
rollout history) and the incident's own event log go into one tar.gz in
`FIREBREAK_EVIDENCE_DIR`. Unredacted, hence never to Slack: the channel gets the
file's name, size and SHA-256, and the event log records the same, so anyone can
later check that the archive is the one collected (chain of custody).

A separate command rather than a `diag` action: a diagnostic's output is redacted
and posted in the channel, and evidence must be neither. `/incident diag evidence
…` is accepted as the same command.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import tarfile
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bot import commands as c
from bot import logs
from bot.actions.catalog import ActionCatalog
from bot.actions.params import shown
from bot.context import Context, Service
from bot.durations import format_duration
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.executors import ExecutorError, KubernetesExecutor
from bot.executors.evidence import Evidence
from bot.incidents import followup
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.mrkdwn import escape, mention
from bot.redact import redact
from storage import incidents as store
from storage.outbox import enqueue, queued_in

log = logging.getLogger(__name__)

ENV = "FIREBREAK_EVIDENCE_DIR"


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str
    size: int


def folder_problem(folder: Path | None) -> str | None:
    """Why evidence cannot be written into `folder`, or None when it can."""
    if folder is None:
        return (
            f"Evidence collection is off: set {ENV} to a folder only responders can read "
            "(the archive is not redacted, so it never goes to Slack)."
        )
    if not folder.is_dir():
        return f"{ENV} (`{escape(str(folder))}`) is not a folder; nothing was collected."
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"Firebreak may not write into {ENV} (`{escape(str(folder))}`); nothing was collected."
        )
    return None


def write_archive(folder: Path, stem: str, files: dict[str, bytes], at: datetime) -> Archive:
    """A tar.gz of `files`, readable by its owner only, made under a temporary name and
    renamed when complete, so a crash never leaves a half archive under the real name.
    Returns its path, SHA-256 and size, read back from the disk."""
    name, attempt = f"{stem}.tar.gz", 1
    while (folder / name).exists():
        attempt += 1
        name = f"{stem}-{attempt}.tar.gz"
    final, partial = folder / name, folder / f".{name}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for member, data in files.items():
                info = tarfile.TarInfo(member)
                info.size, info.mtime, info.mode = len(data), int(at.timestamp()), 0o600
                tar.addfile(info, io.BytesIO(data))
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    digest, size = hashlib.sha256(), 0
    with final.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return Archive(final, digest.hexdigest(), size)


class EvidenceService(Service):
    def __init__(
        self,
        context: Context,
        *,
        catalog: ActionCatalog,
        kubernetes: KubernetesExecutor,
        outbox: Outbox,
        folder: Path | None,
        timeout: float = 45.0,
    ) -> None:
        super().__init__(context)
        self._catalog = catalog
        self._kubernetes = kubernetes
        self._outbox = outbox
        self._folder = folder
        self._timeout = timeout

    async def collect(self, command: c.CollectEvidence, request: Request) -> str:
        """Snapshot, archive, record the hash and post it; the reply says what failed."""
        target = self._catalog.targets.get(command.service)
        if target is None:
            configured = ", ".join(self._catalog.targets)
            return f"Unknown service `{shown(command.service)}`. Configured: {configured}."
        if target.kubernetes is None:
            return (
                f"`{target.name}` has no kubernetes section in the targets file: no logs to keep."
            )
        problem = folder_problem(self._folder)
        if problem is not None or self._folder is None:
            return problem or ""
        try:
            started = await self._db.run(self._start, request, command)
        except UserError as exc:
            return str(exc)
        if started is None:
            return ""  # a redelivery of a request already handled
        incident_id, stem = started
        logs.incident_id.set(incident_id)
        seconds = int(command.since.total_seconds())
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._kubernetes.evidence(target.kubernetes, seconds)
        except (ExecutorError, TimeoutError) as exc:
            why = redact(str(exc)) or f"no answer within {self._timeout:g}s"
            await self._db.run(self._failed, incident_id, request.actor, command, why)
            return f":x: Collecting evidence of `{target.name}` failed: {why}. Nothing was written."
        except Exception as exc:
            trace = "".join(traceback.format_exception(exc))
            log.error("evidence of %s failed: %s", target.name, redact(trace))
            why = "failed unexpectedly; the details are in Firebreak's log"
            await self._db.run(self._failed, incident_id, request.actor, command, why)
            return f":x: Collecting evidence of `{target.name}` failed: {why}. Nothing was written."
        files = await self._db.run(self._files, incident_id, request.actor, command, found)
        try:
            archive = await asyncio.to_thread(
                write_archive, self._folder, stem, files, self._clock.now()
            )
        except OSError as exc:
            why = f"could not write into {ENV}: {exc.strerror or type(exc).__name__}"
            await self._db.run(self._failed, incident_id, request.actor, command, why)
            return f":x: Collecting evidence of `{target.name}` failed: {why}."
        owed = await self._db.run(self._record, incident_id, request.actor, command, found, archive)
        await self._outbox.deliver(incident_id)
        return await self._outbox.settle(incident_id, owed)

    # Transactions --------------------------------------------------------------------

    def _start(
        self, session: Session, request: Request, command: c.CollectEvidence
    ) -> tuple[int, str] | None:
        incident = store.by_channel(session, request.channel_id)
        if incident is None or not incident.channel_id:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        if incident.closed_at is not None:
            raise UserError(followup.refusal(incident))
        now = self._clock.now()
        if not store.claim_request(session, request.key, now):
            return None
        store.append_event(
            session,
            incident,
            "evidence_requested",
            request.actor,
            now,
            service=command.service,
            since=format_duration(command.since),
        )
        return incident.id, f"incident-{incident.id}-{command.service}-{now:%Y%m%dT%H%M%SZ}"

    def _files(
        self,
        session: Session,
        incident_id: int,
        actor: str,
        command: c.CollectEvidence,
        found: Evidence,
    ) -> dict[str, bytes]:
        """The collected files, the incident's event log and a manifest of them all."""
        events = [
            {"id": e.id, "type": e.type, "actor": e.actor, "at": e.at.isoformat(), **e.payload}
            for e in store.events(session, incident_id)
        ]
        files = {**found.files, "incident/events.json": _json(events)}
        manifest = {
            "incident": incident_id,
            "service": command.service,
            "since_seconds": int(command.since.total_seconds()),
            "collected_at": self._clock.now().isoformat(),
            "collected_by": actor,
            "files": [
                {"path": p, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                for p, d in files.items()
            ],
            "gaps": found.gaps,
        }
        return {"manifest.json": _json(manifest), **files}

    def _failed(
        self, session: Session, incident_id: int, actor: str, command: c.CollectEvidence, why: str
    ) -> None:
        incident = store.get(session, incident_id)
        assert incident is not None
        store.append_event(
            session,
            incident,
            "evidence_failed",
            actor,
            self._clock.now(),
            service=command.service,
            error=why,
        )

    def _record(
        self,
        session: Session,
        incident_id: int,
        actor: str,
        command: c.CollectEvidence,
        found: Evidence,
        archive: Archive,
    ) -> list[int]:
        """The hash in the event log and in the channel, in one transaction."""
        incident = store.get(session, incident_id)
        assert incident is not None and incident.channel_id
        now = self._clock.now()
        pods = len({p.split("/")[1] for p in found.files if p.startswith("logs/")})
        store.append_event(
            session,
            incident,
            "evidence_collected",
            actor,
            now,
            service=command.service,
            since=format_duration(command.since),
            file=archive.path.name,
            sha256=archive.sha256,
            bytes=archive.size,
            pods=pods,
            gaps=found.gaps,
        )
        gaps = f" {len(found.gaps)} gaps are listed in its manifest." if found.gaps else ""
        text = (
            f":lock: {mention(actor)} archived evidence of *{escape(command.service)}* "
            f"(logs of {pods} pods, events, rollout history and this incident's log, last "
            f"{format_duration(command.since)}): `{escape(archive.path.name)}`, "
            f"{archive.size} bytes, SHA-256 `{archive.sha256}`. It is in {ENV}, not in Slack: "
            f"it is not redacted.{gaps}"
        )
        enqueue(session, incident.id, "post", now, channel=incident.channel_id, text=text)
        return queued_in(session)


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()
