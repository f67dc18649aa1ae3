"""The narrow interfaces through which the domain talks to PagerDuty and Statuspage.

Like `ChatGateway`, they speak the domain's words (page a service, who is on call,
publish an update), never HTTP; the aiohttp implementations live in
`handlers/paging_clients.py`. Failures come back as `ExternalError`: `permanent`
when asking again cannot help (a bad token, an unknown service), otherwise the
call is retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ExternalError(Exception):
    """A call to PagerDuty or Statuspage failed; `code` is short and safe to show."""

    def __init__(self, system: str, code: str, *, permanent: bool = False) -> None:
        super().__init__(f"{system}: {code}")
        self.system = system
        self.code = code
        self.permanent = permanent


@dataclass(frozen=True)
class PagedIncident:
    """A PagerDuty incident: who it is assigned to, and where to see it."""

    id: str
    html_url: str
    assignees: tuple[str, ...]  # names
    already_open: bool = False  # the incident_key was paged before: nobody paged twice


@dataclass(frozen=True)
class OnCall:
    name: str
    email: str
    level: int


class PagerGateway(Protocol):
    async def page(
        self,
        *,
        service_id: str,
        escalation_policy_id: str,
        incident_key: str,
        title: str,
        details: str,
    ) -> PagedIncident:
        """Open an incident on the service; if one with `incident_key` is open, return it."""
        ...

    async def resolve(self, *, service_id: str, incident_key: str) -> list[str]:
        """Resolve the open incidents with `incident_key` on the service; their IDs."""
        ...

    async def oncalls(self, escalation_policy_id: str) -> list[OnCall]:
        """Who is on call now, first escalation level first."""
        ...

    async def user_email(self, user_id: str) -> str | None: ...


@dataclass(frozen=True)
class PublicUpdate:
    status: str  # investigating | identified | monitoring | resolved
    body: str


class StatusPageGateway(Protocol):
    async def find_incident(self, marker: str) -> str | None:
        """The unresolved public incident opened for `marker` (our incident), if any."""
        ...

    async def create_incident(
        self, *, marker: str, name: str, update: PublicUpdate, components: dict[str, str]
    ) -> str:
        """Open a public incident with its first update; returns its ID."""
        ...

    async def has_update(self, incident_id: str, update: PublicUpdate) -> bool:
        """Whether this exact update is already published (a retry after a crash)."""
        ...

    async def add_update(
        self, incident_id: str, update: PublicUpdate, components: dict[str, str]
    ) -> None: ...
