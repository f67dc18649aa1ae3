"""A stateful Atlassian Statuspage (REST API v1) on loopback: one page, its components
and incidents.

`POST /pages/{page}/incidents` opens an incident with its first update and sets the
affected components' status; `PATCH …/incidents/{id}` with a status and body adds an
update (an `incident_update`), as the real API does. Authentication is
`Authorization: OAuth <key>`. `down = True` answers 503 like an outage, so tests can
check that an update waits and is delivered later.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from emulator.loopback import LoopbackServer

Obj = dict[str, Any]
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class StatuspageState:
    page_id: str = "fbpage01"
    api_key: str = "sp-test-key"
    components: dict[str, Obj] = field(default_factory=dict)
    incidents: dict[str, Obj] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_component(self, component_id: str, name: str) -> Obj:
        component = {
            "id": component_id,
            "page_id": self.page_id,
            "group_id": None,
            "created_at": _now(),
            "updated_at": _now(),
            "group": False,
            "name": name,
            "description": None,
            "position": len(self.components) + 1,
            "status": "operational",
            "showcase": True,
            "only_show_if_degraded": False,
            "automation_email": f"component+{component_id}@notifications.statuspage.io",
            "start_date": None,
        }
        self.components[component_id] = component
        return component

    def updates(self) -> list[Obj]:
        """Every published update, oldest first, across incidents."""
        found = [u for i in self.incidents.values() for u in i["incident_updates"]]
        return sorted(found, key=lambda u: u["id"])

    def _update(self, incident: Obj, status: str, body: str, components: dict[str, str]) -> Obj:
        affected = []
        for component_id, new in components.items():
            component = self.components[component_id]
            affected.append(
                {
                    "code": component_id,
                    "name": component["name"],
                    "old_status": component["status"],
                    "new_status": new,
                }
            )
            component["status"] = new
            component["updated_at"] = _now()
        update = {
            "id": f"upd{next(self._ids):06d}",
            "incident_id": incident["id"],
            "status": status,
            "body": body,
            "created_at": _now(),
            "display_at": _now(),
            "updated_at": _now(),
            "affected_components": affected or None,
            "deliver_notifications": True,
            "custom_tweet": None,
            "tweet_id": None,
            "twitter_updated_at": None,
            "wants_twitter_update": False,
        }
        incident["incident_updates"].insert(0, update)  # newest first, as the API lists them
        incident["status"] = status
        incident["updated_at"] = _now()
        if status in ("monitoring", "resolved"):
            incident[f"{status}_at"] = _now()
        incident["components"] = [
            self.components[c] for c in incident["component_ids"] if c in self.components
        ]
        return update


def demo_state() -> StatuspageState:
    state = StatuspageState()
    state.add_component("cmpchk01", "Checkout")
    state.add_component("cmppay01", "Payments")
    return state


class StatuspageEmulator(LoopbackServer):
    """Serves a :class:`StatuspageState` on an ephemeral 127.0.0.1 port (``async with``)."""

    def __init__(self, state: StatuspageState | None = None, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.state = state or demo_state()
        self.down = False

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        base = "/pages/{page}"
        app.router.add_get(f"{base}/components", self._components)
        app.router.add_get(f"{base}/incidents", self._incidents)
        app.router.add_get(f"{base}/incidents/unresolved", self._unresolved)
        app.router.add_post(f"{base}/incidents", self._create)
        app.router.add_get(f"{base}/incidents/{{id}}", self._get)
        app.router.add_patch(f"{base}/incidents/{{id}}", self._patch)
        return app

    @property
    def api_url(self) -> str:
        """What `STATUSPAGE_API_URL` should be (the `/v1` prefix is the real one's)."""
        return self.base_url

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return web.json_response({"error": "Service Unavailable"}, status=503)
        if request.headers.get("Authorization") != f"OAuth {self.state.api_key}":
            return web.json_response({"error": "Could not authenticate"}, status=401)
        if request.match_info.get("page") != self.state.page_id:
            return web.json_response({"error": "Page not found"}, status=404)
        response: web.StreamResponse = await handler(request)
        return response

    async def _components(self, _: web.Request) -> web.Response:
        return web.json_response(list(self.state.components.values()))

    async def _incidents(self, _: web.Request) -> web.Response:
        return web.json_response(list(reversed(self.state.incidents.values())))

    async def _unresolved(self, _: web.Request) -> web.Response:
        found = [i for i in self.state.incidents.values() if i["status"] != "resolved"]
        return web.json_response(list(reversed(found)))

    async def _get(self, request: web.Request) -> web.Response:
        incident = self.state.incidents.get(request.match_info["id"])
        if incident is None:
            return web.json_response({"error": "Incident not found"}, status=404)
        return web.json_response(incident)

    async def _create(self, request: web.Request) -> web.Response:
        spec, problem = await self._spec(request)
        if problem:
            return problem
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            return _invalid("name can't be blank")
        incident_id = f"inc{next(self.state._ids):06d}"
        components = spec.get("components") or {}
        incident = {
            "id": incident_id,
            "page_id": self.state.page_id,
            "name": name,
            "status": spec.get("status", "investigating"),
            "impact": spec.get("impact_override") or "minor",
            "created_at": _now(),
            "updated_at": _now(),
            "started_at": _now(),
            "monitoring_at": None,
            "resolved_at": None,
            "shortlink": f"https://stspg.io/{incident_id}",
            "component_ids": list(spec.get("component_ids") or components),
            "components": [],
            "incident_updates": [],
            "metadata": spec.get("metadata") or {},
        }
        self.state.incidents[incident_id] = incident
        self.state._update(incident, incident["status"], str(spec.get("body", "")), components)
        return web.json_response(incident, status=201)

    async def _patch(self, request: web.Request) -> web.Response:
        incident = self.state.incidents.get(request.match_info["id"])
        if incident is None:
            return web.json_response({"error": "Incident not found"}, status=404)
        spec, problem = await self._spec(request)
        if problem:
            return problem
        components = spec.get("components") or {}
        for component_id in components:
            if component_id not in incident["component_ids"]:
                incident["component_ids"].append(component_id)
        status = str(spec.get("status", incident["status"]))
        self.state._update(incident, status, str(spec.get("body", "")), components)
        return web.json_response(incident)

    async def _spec(self, request: web.Request) -> tuple[Obj, web.Response | None]:
        try:
            body = await request.json()
        except ValueError:
            return {}, _invalid("body is not JSON")
        spec = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            return {}, _invalid("incident is missing")
        if spec.get("status", "investigating") not in INCIDENT_STATUSES:
            return {}, _invalid("status is not included in the list")
        components = spec.get("components") or {}
        if not isinstance(components, dict):
            return {}, _invalid("components must be an object")
        for component_id, status in components.items():
            if component_id not in self.state.components or status not in COMPONENT_STATUSES:
                return {}, _invalid(f"component {component_id} is invalid")
        return spec, None


def _invalid(message: str) -> web.Response:
    return web.json_response({"error": [message]}, status=422)
