"""A stateful PagerDuty: REST API v2 (incidents, on-calls, users) and webhooks v3, on loopback.

It speaks the real shapes the bot reads and enforces the rules it relies on:
`Authorization: Token token=…` and a `From` header naming a known user on
writes, and PagerDuty's de-duplication: a second `POST /incidents` with the
`incident_key` of an open incident on the same service is refused with 400,
so a retried page never pages twice. Acknowledging or resolving (from the test,
the shell or the demo, as a person on the phone would) changes the incident and
sends a signed v3 webhook (`X-PagerDuty-Signature: v1=<HMAC-SHA256>`) to the
subscribed URL. Outages are injected with `fail_next`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from emulator.loopback import LoopbackServer

Obj = dict[str, Any]
HTML = "https://firebreak-demo.pagerduty.com"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PagerDutyState:
    """Users, services, escalation policies with who is on call, and incidents."""

    token: str = "pd-test-token"
    users: dict[str, Obj] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)
    policies: dict[str, Obj] = field(default_factory=dict)
    oncall: dict[str, list[str]] = field(default_factory=dict)  # policy id -> user ids by level
    incidents: dict[str, Obj] = field(default_factory=dict)
    # Every write the API accepted: (method, path, body), for assertions.
    writes: list[tuple[str, str, Obj]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_user(self, user_id: str, name: str, email: str) -> Obj:
        user = {
            "id": user_id,
            "type": "user",
            "summary": name,
            "name": name,
            "email": email,
            "self": f"/users/{user_id}",
            "html_url": f"{HTML}/users/{user_id}",
            "time_zone": "Etc/UTC",
            "role": "user",
        }
        self.users[user_id] = user
        return user

    def add_service(self, service_id: str, name: str, policy_id: str, oncall: list[str]) -> None:
        """A service, its escalation policy, and who is on call at each level now."""
        self.policies[policy_id] = {
            "id": policy_id,
            "type": "escalation_policy",
            "summary": f"{name} escalation",
            "name": f"{name} escalation",
            "self": f"/escalation_policies/{policy_id}",
            "html_url": f"{HTML}/escalation_policies/{policy_id}",
        }
        self.oncall[policy_id] = list(oncall)
        self.services[service_id] = {
            "id": service_id,
            "type": "service",
            "summary": name,
            "name": name,
            "self": f"/services/{service_id}",
            "html_url": f"{HTML}/service-directory/{service_id}",
            "escalation_policy": _ref(self.policies[policy_id]),
            "status": "active",
        }

    def by_key(self, incident_key: str) -> list[Obj]:
        return [i for i in self.incidents.values() if i["incident_key"] == incident_key]

    def set_status(self, incident_id: str, status: str, user_id: str) -> Obj:
        incident = self.incidents[incident_id]
        incident["status"] = status
        incident["updated_at"] = incident["last_status_change_at"] = _now()
        if status == "acknowledged":
            incident["acknowledgements"].append(
                {"at": _now(), "acknowledger": _ref(self.users[user_id])}
            )
        return incident

    def webhook_event(self, incident: Obj, event_type: str, agent_id: str | None) -> Obj:
        """A v3 webhook envelope, as PagerDuty posts it."""
        data = {
            "id": incident["id"],
            "type": "incident",
            "self": incident["self"],
            "html_url": incident["html_url"],
            "number": incident["incident_number"],
            "status": incident["status"],
            "incident_key": incident["incident_key"],
            "created_at": incident["created_at"],
            "title": incident["title"],
            "service": incident["service"],
            "assignees": [a["assignee"] for a in incident["assignments"]],
            "escalation_policy": incident["escalation_policy"],
            "teams": [],
            "priority": None,
            "urgency": incident["urgency"],
            "conference_bridge": None,
            "resolve_reason": None,
        }
        agent = _ref(self.users[agent_id]) if agent_id else None
        return {
            "event": {
                "id": f"01{next(self._ids):08d}EVENT",
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": _now(),
                "agent": agent,
                "client": None,
                "data": data,
            }
        }


def _ref(obj: Obj) -> Obj:
    kind = obj["type"]
    return {
        "id": obj["id"],
        "type": f"{kind}_reference",
        "summary": obj["summary"],
        "self": obj["self"],
        "html_url": obj["html_url"],
    }


def sign(secret: str, body: bytes) -> str:
    """The `X-PagerDuty-Signature` value for a body."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def demo_state() -> PagerDutyState:
    """The shell's and demo's PagerDuty: checkout and payments, each with an on-call."""
    state = PagerDutyState()
    state.add_user("PBOB001", "Bob Example", "bob@example.com")
    state.add_user("PCAROL1", "Carol Example", "carol@example.com")
    state.add_user("PALICE1", "Alice Example", "alice@example.com")
    state.add_service("PCHKOUT", "Checkout", "PEPCHK1", ["PBOB001", "PCAROL1"])
    state.add_service("PPAYMNT", "Payments", "PEPPAY1", ["PCAROL1"])
    return state


class PagerDutyEmulator(LoopbackServer):
    """Serves a :class:`PagerDutyState` on an ephemeral 127.0.0.1 port (``async with``)."""

    def __init__(self, state: PagerDutyState | None = None, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.state = state or demo_state()
        self._faults: deque[tuple[int, float]] = deque()
        self._holds: dict[tuple[str, str], float] = {}
        self.webhook_url: str | None = None
        self.webhook_secret: str = ""

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/incidents", self._list_incidents)
        app.router.add_post("/incidents", self._create_incident)
        app.router.add_get("/incidents/{id}", self._get_incident)
        app.router.add_put("/incidents/{id}", self._update_incident)
        app.router.add_get("/oncalls", self._oncalls)
        app.router.add_get("/users/{id}", self._get_user)
        return app

    @property
    def api_url(self) -> str:
        """What `PAGERDUTY_API_URL` should be."""
        return self.base_url

    def fail_next(self, count: int = 1, *, status: int = 503, delay: float = 0.0) -> None:
        """The next `count` API calls answer `status` (0: carry them out) after `delay` s."""
        self._faults.extend([(status, delay)] * count)

    def hold_answer(self, method: str, path: str, seconds: float) -> None:
        """Carry out the next `method path` call, then answer it only after `seconds`:
        PagerDuty did the work and the caller has not heard (a kill -9 test kills it then)."""
        self._holds[(method, path)] = seconds

    def subscribe(self, url: str, secret: str) -> None:
        """Where webhooks v3 go, and the secret they are signed with."""
        self.webhook_url, self.webhook_secret = url, secret

    async def acknowledge(self, incident_id: str, user_id: str) -> int | None:
        """The on-call presses acknowledge: change the incident and send the webhook."""
        incident = self.state.set_status(incident_id, "acknowledged", user_id)
        return await self.send_webhook(
            self.state.webhook_event(incident, "incident.acknowledged", user_id)
        )

    async def resolve(self, incident_id: str, user_id: str) -> int | None:
        incident = self.state.set_status(incident_id, "resolved", user_id)
        return await self.send_webhook(
            self.state.webhook_event(incident, "incident.resolved", user_id)
        )

    async def send_webhook(self, event: Obj, *, secret: str | None = None) -> int | None:
        """POST one signed webhook; returns the receiver's HTTP status (None: no subscriber)."""
        if self.webhook_url is None:
            return None
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-Webhook-Id": event["event"]["id"],
            "X-PagerDuty-Signature": sign(self.webhook_secret if secret is None else secret, body),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, data=body, headers=headers) as response,
        ):
            return response.status

    # ------------------------------------------------------------------ the API

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._faults:
            status, delay = self._faults.popleft()
            if delay:
                await asyncio.sleep(delay)
            if status:
                return _error(status, "Service unavailable", 0)
        if request.headers.get("Authorization") != f"Token token={self.state.token}":
            return _error(401, "Unauthorized", 2006)
        if request.method in ("POST", "PUT"):
            sender = request.headers.get("From", "")
            if not any(u["email"] == sender for u in self.state.users.values()):
                return _error(
                    400,
                    "Invalid Input Provided",
                    2001,
                    ['A valid user email is required in the "From" header.'],
                )
        response: web.StreamResponse = await handler(request)
        held = self._holds.pop((request.method, request.path), 0.0)
        if held:
            await asyncio.sleep(held)
        return response

    async def _list_incidents(self, request: web.Request) -> web.Response:
        incidents = list(self.state.incidents.values())
        if key := request.query.get("incident_key"):
            incidents = [i for i in incidents if i["incident_key"] == key]
        if statuses := request.query.getall("statuses[]", []):
            incidents = [i for i in incidents if i["status"] in statuses]
        if services := request.query.getall("service_ids[]", []):
            incidents = [i for i in incidents if i["service"]["id"] in services]
        return web.json_response(
            {"incidents": incidents, "limit": 25, "offset": 0, "more": False, "total": None}
        )

    async def _create_incident(self, request: web.Request) -> web.Response:
        body = await _json(request)
        spec = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(spec, dict) or spec.get("type") != "incident":
            return _error(400, "Invalid Input Provided", 2001, ["incident.type must be incident"])
        service = self.state.services.get(str((spec.get("service") or {}).get("id")))
        title = spec.get("title")
        if service is None or not isinstance(title, str) or not title:
            return _error(400, "Invalid Input Provided", 2001, ["Service or title is invalid"])
        key = str(spec.get("incident_key") or f"auto-{next(self.state._ids)}")
        open_same = [
            i
            for i in self.state.by_key(key)
            if i["status"] != "resolved" and i["service"]["id"] == service["id"]
        ]
        if open_same:
            return _error(
                400,
                "Invalid Input Provided",
                2001,
                ["Open incident with matching dedup key already exists on this service"],
            )
        policy_id = str((spec.get("escalation_policy") or {}).get("id") or "")
        policy = (
            self.state.policies.get(policy_id)
            or self.state.policies[service["escalation_policy"]["id"]]
        )
        first = self.state.oncall.get(policy["id"], [])[:1]
        number = len(self.state.incidents) + 1
        incident_id = f"Q{number:05d}PD"
        incident = {
            "id": incident_id,
            "type": "incident",
            "summary": f"[#{number}] {title}",
            "self": f"{self.api_url}/incidents/{incident_id}",
            "html_url": f"{HTML}/incidents/{incident_id}",
            "incident_number": number,
            "title": title,
            "description": title,
            "created_at": _now(),
            "updated_at": _now(),
            "status": "triggered",
            "incident_key": key,
            "service": _ref(service),
            "assignments": [{"at": _now(), "assignee": _ref(self.state.users[u])} for u in first],
            "acknowledgements": [],
            "last_status_change_at": _now(),
            "escalation_policy": _ref(policy),
            "urgency": spec.get("urgency") or "high",
            "body": spec.get("body") or {"type": "incident_body", "details": ""},
            "teams": [],
            "priority": None,
            "resolve_reason": None,
        }
        self.state.incidents[incident_id] = incident
        self.state.writes.append(("POST", "/incidents", body))
        return web.json_response({"incident": incident}, status=201)

    async def _get_incident(self, request: web.Request) -> web.Response:
        incident = self.state.incidents.get(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found", 2100)
        return web.json_response({"incident": incident})

    async def _update_incident(self, request: web.Request) -> web.Response:
        incident = self.state.incidents.get(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found", 2100)
        body = await _json(request)
        spec = body.get("incident") if isinstance(body, dict) else None
        status = spec.get("status") if isinstance(spec, dict) else None
        if status not in ("acknowledged", "resolved"):
            return _error(400, "Invalid Input Provided", 2001, ["status is invalid"])
        sender = request.headers["From"]
        user = next(u for u in self.state.users.values() if u["email"] == sender)
        if incident["status"] != "resolved":
            self.state.set_status(incident["id"], status, user["id"])
        self.state.writes.append(("PUT", f"/incidents/{incident['id']}", body))
        return web.json_response({"incident": incident})

    async def _oncalls(self, request: web.Request) -> web.Response:
        wanted = request.query.getall("escalation_policy_ids[]", [])
        full = "users" in request.query.getall("include[]", [])
        oncalls = []
        for policy_id, users in self.state.oncall.items():
            if wanted and policy_id not in wanted:
                continue
            for level, user_id in enumerate(users, start=1):
                user = self.state.users[user_id]
                oncalls.append(
                    {
                        "escalation_policy": _ref(self.state.policies[policy_id]),
                        "escalation_level": level,
                        "schedule": None,
                        "user": dict(user) if full else _ref(user),
                        "start": None,
                        "end": None,
                    }
                )
        return web.json_response(
            {"oncalls": oncalls, "limit": 25, "offset": 0, "more": False, "total": None}
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.state.users.get(request.match_info["id"])
        if user is None:
            return _error(404, "Not Found", 2100)
        return web.json_response({"user": user})


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _error(status: int, message: str, code: int, errors: list[str] | None = None) -> web.Response:
    """PagerDuty's error body: `{"error": {"message", "code", "errors"}}`."""
    return web.json_response(
        {"error": {"message": message, "code": code, "errors": errors or []}}, status=status
    )
