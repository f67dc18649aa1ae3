"""PagerDuty webhooks v3: the signature is checked before anything is read, and any body
is answered with a 4xx and its reason or a 202, never a 5xx or a crash."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from bot.paging.webhook import BadWebhook, parse_event, signature_valid
from emulator.pagerduty import PagerDutyState, demo_state, sign
from tests.harness import running_firebreak

SECRET = "whsec"
LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def real_event() -> dict[str, Any]:
    state: PagerDutyState = demo_state()
    incident = {
        "id": "Q1",
        "self": "x",
        "html_url": "x",
        "incident_number": 1,
        "status": "acknowledged",
        "incident_key": "firebreak-1",
        "created_at": "2026-01-01T00:00:00Z",
        "title": "t",
        "service": {},
        "assignments": [],
        "escalation_policy": {},
        "urgency": "high",
    }
    return state.webhook_event(incident, "incident.acknowledged", "PBOB001")


@given(body=st.binary(max_size=300), header=st.text(max_size=80))
def test_a_forged_signature_never_matches(body: bytes, header: str) -> None:
    assert not signature_valid(SECRET, body, header) or header.strip() == sign(SECRET, body)
    assert signature_valid(SECRET, body, f"v1=bad, {sign(SECRET, body)}")  # rotation
    assert not signature_valid("", body, sign("", body))  # no secret: nothing is valid


@given(document=JSON)
def test_any_json_is_an_event_none_or_a_reason(document: Any) -> None:
    try:
        event = parse_event(json.dumps(document).encode())
    except BadWebhook as exc:
        assert str(exc)
    else:
        assert event is None or event.type.startswith("incident.")


@given(
    event=st.fixed_dictionaries(
        {},
        optional={
            "id": JSON,
            "event_type": st.sampled_from(["incident.acknowledged", "incident.resolved"]) | JSON,
            "occurred_at": JSON,
            "agent": JSON,
            "data": st.fixed_dictionaries({}, optional={"id": JSON, "incident_key": JSON}) | JSON,
        },
    )
)
def test_damaged_real_events_are_read_or_refused_with_a_reason(event: dict[str, Any]) -> None:
    try:
        parse_event(json.dumps({"event": event}).encode())
    except BadWebhook as exc:
        assert str(exc)


async def test_the_route_over_http(database_url: str) -> None:
    valid = json.dumps(real_event()).encode()
    cases: list[tuple[bytes, str | None, int]] = [
        (valid, sign(SECRET, valid), 202),
        (valid, sign("other", valid), 401),
        (valid, None, 401),
        (valid + b" ", sign(SECRET, valid), 401),  # tampered after signing
        (b"\xff\xfe not utf-8", sign(SECRET, b"\xff\xfe not utf-8"), 400),
        (b"[]", sign(SECRET, b"[]"), 400),
        (b'{"event": {"event_type": "incident.acknowledged"}}', None, 401),
        (b'{"event": {"event_type": "service.updated"}}', None, 401),
        (b"x" * 300_000, sign(SECRET, b"x" * 300_000), 413),
    ]
    ignored = b'{"event": {"id": "E1", "event_type": "service.updated"}}'
    cases.append((ignored, sign(SECRET, ignored), 202))
    paging = {
        "PAGERDUTY_API_TOKEN": "t",
        "PAGERDUTY_FROM_EMAIL": "alice@example.com",
        "PAGERDUTY_API_URL": "http://127.0.0.1:9",  # nothing listens: look-ups fail, fast
    }
    async with running_firebreak(database_url, PAGERDUTY_WEBHOOK_SECRET=SECRET, **paging) as slack:
        url = slack.driver.app_url.removesuffix("/slack/events") + "/alerts/pagerduty"
        async with aiohttp.ClientSession() as http:
            for body, signature, expected in cases:
                headers = {"X-PagerDuty-Signature": signature} if signature else {}
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == expected, (body[:60], await response.text())
                    if expected >= 400:
                        assert (await response.json())["error"]
        await slack.settle()
    async with (
        running_firebreak(database_url, **paging) as slack,
        aiohttp.ClientSession() as http,
        http.post(
            slack.driver.app_url.removesuffix("/slack/events") + "/alerts/pagerduty",
            data=valid,
            headers={"X-PagerDuty-Signature": sign("", valid)},
        ) as response,
    ):
        assert response.status == 404  # no secret configured: the route is not there
