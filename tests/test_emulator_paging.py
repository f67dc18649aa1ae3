"""The PagerDuty and Statuspage fakes keep the real services' rules the bot relies on."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from emulator.pagerduty import PagerDutyEmulator, sign
from emulator.statuspage import StatuspageEmulator

PD_HEADERS = {
    "Authorization": "Token token=pd-test-token",
    "Accept": "application/vnd.pagerduty+json;version=2",
    "From": "alice@example.com",
}


def incident_body(key: str) -> dict[str, Any]:
    return {
        "incident": {
            "type": "incident",
            "title": "checkout down",
            "service": {"id": "PCHKOUT", "type": "service_reference"},
            "incident_key": key,
        }
    }


async def test_pagerduty_refuses_a_second_open_incident_with_the_same_key() -> None:
    async with PagerDutyEmulator() as pd, aiohttp.ClientSession() as http:
        url = f"{pd.api_url}/incidents"
        async with http.post(url, json=incident_body("fb-1"), headers=PD_HEADERS) as first:
            assert first.status == 201
            created = (await first.json())["incident"]
        assert created["assignments"][0]["assignee"]["summary"] == "Bob Example"
        async with http.post(url, json=incident_body("fb-1"), headers=PD_HEADERS) as again:
            assert again.status == 400
            assert "dedup key" in (await again.json())["error"]["errors"][0]
        async with http.get(url, params={"incident_key": "fb-1"}, headers=PD_HEADERS) as found:
            assert [i["id"] for i in (await found.json())["incidents"]] == [created["id"]]
        assert len(pd.state.incidents) == 1


async def test_pagerduty_checks_the_token_and_the_from_header() -> None:
    async with PagerDutyEmulator() as pd, aiohttp.ClientSession() as http:
        url = f"{pd.api_url}/incidents"
        bad_token = {**PD_HEADERS, "Authorization": "Token token=wrong"}
        async with http.post(url, json=incident_body("k"), headers=bad_token) as response:
            assert response.status == 401
        no_from = {k: v for k, v in PD_HEADERS.items() if k != "From"}
        async with http.post(url, json=incident_body("k"), headers=no_from) as response:
            assert response.status == 400
        assert pd.state.incidents == {}


async def test_pagerduty_oncalls_include_the_users_emails() -> None:
    async with PagerDutyEmulator() as pd, aiohttp.ClientSession() as http:
        params = [("escalation_policy_ids[]", "PEPCHK1"), ("include[]", "users")]
        async with http.get(f"{pd.api_url}/oncalls", params=params, headers=PD_HEADERS) as r:
            oncalls = (await r.json())["oncalls"]
        assert [(o["escalation_level"], o["user"]["email"]) for o in oncalls] == [
            (1, "bob@example.com"),
            (2, "carol@example.com"),
        ]


async def test_pagerduty_acknowledging_sends_a_signed_v3_webhook() -> None:
    received: list[tuple[str, bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((request.headers["X-PagerDuty-Signature"], await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with PagerDutyEmulator() as pd, aiohttp.ClientSession() as http:
            pd.subscribe(f"http://127.0.0.1:{port}/hook", "s3cret")
            async with http.post(
                f"{pd.api_url}/incidents", json=incident_body("fb-2"), headers=PD_HEADERS
            ) as response:
                incident_id = (await response.json())["incident"]["id"]
            assert await pd.acknowledge(incident_id, "PBOB001") == 202
    finally:
        await runner.cleanup()
    signature, body = received[0]
    assert signature == sign("s3cret", body)
    event = json.loads(body)["event"]
    assert event["event_type"] == "incident.acknowledged"
    assert event["data"]["incident_key"] == "fb-2"
    assert event["agent"]["summary"] == "Bob Example"


async def test_statuspage_creates_updates_and_goes_down() -> None:
    headers = {"Authorization": "OAuth sp-test-key"}
    async with StatuspageEmulator() as sp, aiohttp.ClientSession() as http:
        base = f"{sp.api_url}/pages/{sp.state.page_id}/incidents"
        spec = {
            "name": "Checkout errors",
            "status": "investigating",
            "body": "We are investigating.",
            "components": {"cmpchk01": "partial_outage"},
        }
        async with http.post(base, json={"incident": spec}, headers=headers) as response:
            assert response.status == 201
            incident = await response.json()
        assert sp.state.components["cmpchk01"]["status"] == "partial_outage"
        patch = {"status": "resolved", "body": "Fixed.", "components": {"cmpchk01": "operational"}}
        async with http.patch(
            f"{base}/{incident['id']}", json={"incident": patch}, headers=headers
        ) as response:
            updated = await response.json()
        assert [u["status"] for u in updated["incident_updates"]] == ["resolved", "investigating"]
        async with http.post(base, json={"incident": spec}, headers={}) as response:
            assert response.status == 401
        sp.down = True
        async with http.get(f"{base}/unresolved", headers=headers) as response:
            assert response.status == 503
