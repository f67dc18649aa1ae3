"""PagerDuty REST API v2 and Statuspage API v1 over aiohttp: the gateways of `bot.paging`.

Why not PagerDuty's own `pagerduty` package: it extends `httpx.Client`, a blocking
client, so each call would hold a thread (or block the loop that also runs the acks,
reminders and Slack work). The few calls Firebreak makes are plain
JSON over HTTPS, so they are made here with the aiohttp the app already serves
with, with a timeout on every call and errors mapped to `ExternalError`: 429, 5xx,
timeouts and refused connections are transient (retried by the delivery), anything
else the API refuses is permanent.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.paging.gateways import ExternalError, OnCall, PagedIncident, PublicUpdate
from bot.paging.settings import PagerDutySettings, StatuspageSettings

TIMEOUT = aiohttp.ClientTimeout(total=10)
OPEN = ("triggered", "acknowledged")


class _Json:
    """One lazily opened session (it must be made on the loop that uses it)."""

    system = ""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self._base = base_url.rstrip("/")
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=TIMEOUT)
        try:
            async with self._session.request(
                method, self._base + path, params=params, json=body, headers=headers
            ) as response:
                status = response.status
                try:
                    document = await response.json(content_type=None)
                except ValueError:
                    document = None
        except TimeoutError as exc:
            raise ExternalError(self.system, "timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ExternalError(self.system, "unreachable") from exc
        if status == 429 or status >= 500:
            raise ExternalError(self.system, f"http_{status}")
        return status, document

    def refused(self, status: int, document: Any) -> ExternalError:
        if status in (401, 403):
            return ExternalError(self.system, "unauthorized", permanent=True)
        if status == 404:
            return ExternalError(self.system, "not_found", permanent=True)
        return ExternalError(self.system, f"http_{status}", permanent=True)


class PagerDutyClient(_Json):
    system = "PagerDuty"

    def __init__(self, settings: PagerDutySettings) -> None:
        super().__init__(
            settings.api_url,
            {
                "Authorization": f"Token token={settings.api_token}",
                "Accept": "application/vnd.pagerduty+json;version=2",
            },
        )
        self._from = {"From": settings.from_email}

    async def page(
        self,
        *,
        service_id: str,
        escalation_policy_id: str,
        incident_key: str,
        title: str,
        details: str,
    ) -> PagedIncident:
        # Looked up first: after a crash between PagerDuty's answer and our record, the
        # incident is open already and paging again would be refused (or worse, doubled).
        found = await self._open_incident(service_id, incident_key)
        if found is not None:
            return _paged(found, already_open=True)
        body = {
            "incident": {
                "type": "incident",
                "title": title[:255],
                "service": {"id": service_id, "type": "service_reference"},
                "escalation_policy": {
                    "id": escalation_policy_id,
                    "type": "escalation_policy_reference",
                },
                "incident_key": incident_key,
                "urgency": "high",
                "body": {"type": "incident_body", "details": details},
            }
        }
        status, document = await self.call("POST", "/incidents", body=body, headers=self._from)
        if status == 201 and isinstance(document, dict):
            return _paged(document["incident"], already_open=False)
        if status == 400:  # PagerDuty refuses a duplicate incident_key: another sender won
            found = await self._open_incident(service_id, incident_key)
            if found is not None:
                return _paged(found, already_open=True)
        raise self.refused(status, document)

    async def resolve(self, *, service_id: str, incident_key: str) -> list[str]:
        resolved: list[str] = []
        for _ in range(5):  # one open incident per key and service; a few in a race
            found = await self._open_incident(service_id, incident_key)
            if found is None:
                break
            body = {"incident": {"type": "incident_reference", "status": "resolved"}}
            status, document = await self.call(
                "PUT", f"/incidents/{found['id']}", body=body, headers=self._from
            )
            if status != 200:
                raise self.refused(status, document)
            resolved.append(str(found["id"]))
        return resolved

    async def oncalls(self, escalation_policy_id: str) -> list[OnCall]:
        params = [
            ("escalation_policy_ids[]", escalation_policy_id),
            ("include[]", "users"),
            ("earliest", "true"),
        ]
        status, document = await self.call("GET", "/oncalls", params=params)
        if status != 200 or not isinstance(document, dict):
            raise self.refused(status, document)
        found = []
        for entry in document.get("oncalls", []):
            user = entry.get("user") or {}
            found.append(
                OnCall(
                    name=str(user.get("name") or user.get("summary") or "someone"),
                    email=str(user.get("email") or ""),
                    level=int(entry.get("escalation_level") or 1),
                )
            )
        return sorted(found, key=lambda o: o.level)

    async def user_email(self, user_id: str) -> str | None:
        status, document = await self.call("GET", f"/users/{user_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(document, dict):
            raise self.refused(status, document)
        return str(document.get("user", {}).get("email") or "") or None

    async def _open_incident(self, service_id: str, incident_key: str) -> dict[str, Any] | None:
        params = [
            ("incident_key", incident_key),
            ("service_ids[]", service_id),
            *(("statuses[]", s) for s in OPEN),
        ]
        status, document = await self.call("GET", "/incidents", params=params)
        if status != 200 or not isinstance(document, dict):
            raise self.refused(status, document)
        incidents = [i for i in document.get("incidents", []) if i.get("status") in OPEN]
        return incidents[0] if incidents else None


def _paged(incident: dict[str, Any], *, already_open: bool) -> PagedIncident:
    assignees = tuple(
        str(a.get("assignee", {}).get("summary", "")) for a in incident.get("assignments", [])
    )
    return PagedIncident(
        id=str(incident["id"]),
        html_url=str(incident.get("html_url", "")),
        assignees=tuple(a for a in assignees if a),
        already_open=already_open,
    )


class StatuspageClient(_Json):
    system = "Statuspage"

    def __init__(self, settings: StatuspageSettings) -> None:
        super().__init__(settings.api_url, {"Authorization": f"OAuth {settings.api_key}"})
        self._page = f"/pages/{settings.page_id}"

    async def find_incident(self, marker: str) -> str | None:
        status, document = await self.call("GET", f"{self._page}/incidents")
        if status != 200 or not isinstance(document, list):
            raise self.refused(status, document)
        for incident in document:  # newest first
            metadata = incident.get("metadata") or {}
            if (metadata.get("firebreak") or {}).get("incident") == marker:
                return str(incident["id"])
        return None

    async def create_incident(
        self, *, marker: str, name: str, update: PublicUpdate, components: dict[str, str]
    ) -> str:
        body = {
            "incident": {
                "name": name,
                "status": update.status,
                "body": update.body,
                "component_ids": list(components),
                "components": components,
                "metadata": {"firebreak": {"incident": marker}},
                "deliver_notifications": True,
            }
        }
        status, document = await self.call("POST", f"{self._page}/incidents", body=body)
        if status != 201 or not isinstance(document, dict):
            raise self.refused(status, document)
        return str(document["id"])

    async def has_update(self, incident_id: str, update: PublicUpdate) -> bool:
        status, document = await self.call("GET", f"{self._page}/incidents/{incident_id}")
        if status != 200 or not isinstance(document, dict):
            raise self.refused(status, document)
        return any(
            u.get("status") == update.status and u.get("body") == update.body
            for u in document.get("incident_updates", [])
        )

    async def add_update(
        self, incident_id: str, update: PublicUpdate, components: dict[str, str]
    ) -> None:
        body = {
            "incident": {
                "status": update.status,
                "body": update.body,
                "components": components,
                "deliver_notifications": True,
            }
        }
        status, document = await self.call(
            "PATCH", f"{self._page}/incidents/{incident_id}", body=body
        )
        if status != 200:
            raise self.refused(status, document)
