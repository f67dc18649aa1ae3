"""What other parts of the domain add to a declaration or a resolve, in its transaction.

Paging (`bot/paging`) and the status page are the ones today: a page owed by a
declaration is written with the declaration, so no crash can declare without paging or
page twice; a resolve owes the status page's resolved update its preview.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from bot.commands import Declare
from storage.models import Incident


class IncidentHooks(Protocol):
    def declared(
        self, session: Session, incident: Incident, now: datetime, service: str | None
    ) -> None: ...

    def severity_changed(self, session: Session, incident: Incident, now: datetime) -> None: ...

    def resolved(self, session: Session, incident: Incident, actor: str, now: datetime) -> None: ...


class AllHooks:
    """Several parts' hooks as one, called in the order given."""

    def __init__(self, *hooks: IncidentHooks) -> None:
        self._hooks = hooks

    def declared(
        self, session: Session, incident: Incident, now: datetime, service: str | None
    ) -> None:
        for hook in self._hooks:
            hook.declared(session, incident, now, service)

    def severity_changed(self, session: Session, incident: Incident, now: datetime) -> None:
        for hook in self._hooks:
            hook.severity_changed(session, incident, now)

    def resolved(self, session: Session, incident: Incident, actor: str, now: datetime) -> None:
        for hook in self._hooks:
            hook.resolved(session, incident, actor, now)


class Triage(Protocol):
    """The triage at declare (`bot/triage`): a guess written with the declaration, then
    started once the saga is complete, as background work under a lease of its own."""

    def declared(
        self, session: Session, incident: Incident, command: Declare, now: datetime
    ) -> None: ...

    def start(self, incident_id: int) -> None: ...
