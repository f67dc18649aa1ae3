"""What other parts of the domain add to a declaration or a resolve, in its transaction.

Paging is the one today (`bot/paging`): a page owed by a declaration is written with
the declaration, so no crash can declare without paging or page twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from storage.models import Incident


class IncidentHooks(Protocol):
    def declared(
        self, session: Session, incident: Incident, now: datetime, service: str | None
    ) -> None: ...

    def severity_changed(self, session: Session, incident: Incident, now: datetime) -> None: ...

    def resolved(self, session: Session, incident: Incident, actor: str, now: datetime) -> None: ...
