"""Request signing: anything not signed by Slack, just now, over this exact body, is refused.

Every request below is a real, otherwise valid one: a slash command that would declare
an incident, a Confirm click on a live mitigation proposal and a declare-form submission.
Each is sent forged (wrong secret, stale or future timestamp, body changed after signing,
headers missing or malformed) and must get 401 with nothing processed: no Slack call, no
database row. Then the same request, signed properly, is processed, which shows that the
refusals were the signature's doing and not a broken request.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from emulator import payloads
from storage.models import Event, HandledRequest, Incident
from tests.harness import ALICE, Harness, running_firebreak


@pytest_asyncio.fixture
async def slack(tmp_path: Path) -> AsyncIterator[Harness]:
    """Signatures do not depend on the database: SQLite is enough."""
    async with running_firebreak(f"sqlite:///{tmp_path / 'firebreak.db'}") as harness:
        yield harness


async def raw_post(slack: Harness, body: str, headers: dict[str, str]) -> int:
    """POST with exactly these headers (the driver always adds a signature)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.post(
            slack.driver.app_url,
            data=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        ) as response,
    ):
        await response.read()
        return response.status


async def footprint(slack: Harness) -> tuple[int, int, int, int]:
    """Slack calls made, and incident, event and request-key rows: all must stay put."""

    def rows(session):  # type: ignore[no-untyped-def]
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Incident, Event, HandledRequest)
        )

    counts = await slack.app.services.db.run(rows)
    calls = len([c for c in slack.workspace.call_log if c.method != "auth.test"])
    return (calls, *counts)


def forgeries(slack: Harness, body: str) -> dict[str, dict[str, str]]:
    """Header sets for `body` that Slack did not (or not just now) produce."""
    now = int(time.time())
    good = slack.driver.sign(body)
    other_body = slack.driver.sign(body + "&text=declare+P0+evil")
    return {
        "wrong secret": slack.driver.sign(body, secret="not-the-secret"),
        "empty secret": slack.driver.sign(body, secret=""),
        "stale timestamp": slack.driver.sign(body, timestamp=now - 6 * 60),
        "future timestamp": slack.driver.sign(body, timestamp=now + 6 * 60),
        "signature of another body": other_body,
        "timestamp changed after signing": {**good, "X-Slack-Request-Timestamp": str(now - 1)},
        "no signature": {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]},
        "no timestamp": {"X-Slack-Signature": good["X-Slack-Signature"]},
        "no headers": {},
        "empty signature": {**good, "X-Slack-Signature": ""},
        "signature without v0=": {
            **good,
            "X-Slack-Signature": good["X-Slack-Signature"].removeprefix("v0="),
        },
        "v1 scheme": {**good, "X-Slack-Signature": "v1=" + good["X-Slack-Signature"][3:]},
        "uppercase hex": {
            **good,
            "X-Slack-Signature": "v0=" + good["X-Slack-Signature"][3:].upper(),
        },
    }


async def assert_all_refused(slack: Harness, body: str, tampered: str | None = None) -> None:
    """Every forgery of `body` (and `tampered`, a changed copy sent under `body`'s
    good signature) gets 401 and changes nothing."""
    before = await footprint(slack)
    ephemerals = len(slack.workspace.ephemeral_messages)
    cases = list(forgeries(slack, body).items())
    if tampered is not None:
        cases.append(("body tampered after signing", slack.driver.sign(body)))
    for name, headers in cases:
        sent = tampered if name == "body tampered after signing" else body
        assert sent is not None
        status = await raw_post(slack, sent, headers)
        await slack.settle()
        assert status == 401, f"{name}: got {status}"
        assert await footprint(slack) == before, f"{name}: something was processed"
    assert len(slack.workspace.ephemeral_messages) == ephemerals


async def test_forged_slash_commands_are_refused(slack: Harness) -> None:
    form = payloads.slash_command(
        slack.workspace, ALICE, slack.general, "declare P1 payments down", "/incident"
    )
    body = urlencode(form)
    tampered = urlencode({**form, "text": "declare P0 everything is on fire", "user_id": "U0BOB"})
    await assert_all_refused(slack, body, tampered)
    assert slack.incident_channels() == []

    # The very same request, signed as Slack signs it, declares the incident.
    assert (await slack.driver.post(body)).status == 200
    await slack.settle()
    assert len(slack.incident_channels()) == 1


async def test_forged_clicks_and_submissions_are_refused(slack: Harness) -> None:
    await slack.command("declare P2 search is slow")
    channel = slack.only_incident_channel()
    ts = channel.pins[0]["ts"]
    click = payloads.block_actions(
        slack.workspace,
        ALICE,
        channel.id,
        ts,
        {"checkboxes"},
        "checklist:0:0",
        selected=["triage.acknowledge"],
    )
    body = urlencode({"payload": json.dumps(click)})
    tampered_click = json.loads(json.dumps(click))
    tampered_click["user"]["id"] = "U0BOB"
    await assert_all_refused(slack, body, urlencode({"payload": json.dumps(tampered_click)}))

    await slack.command("declare")
    [view] = slack.workspace.open_views(ALICE)
    submission = payloads.view_submission(
        slack.workspace,
        ALICE,
        view["id"],
        {"title": "db on fire", "severity": "P1"},
    )
    form = urlencode({"payload": json.dumps(submission)})
    await assert_all_refused(slack, form)
    assert len(slack.incident_channels()) == 1

    # Properly signed, the click ticks the box.
    assert (await slack.driver.post(body)).status == 200
    await slack.settle()

    def ticked(session):  # type: ignore[no-untyped-def]
        return session.scalar(
            select(func.count()).select_from(Event).where(Event.type == "checklist_checked")
        )

    assert await slack.app.services.db.run(ticked) == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data"])
async def test_unsigned_bodies_of_any_type_are_refused(slack: Harness, content_type: str) -> None:
    """An attacker does not get past the signature by changing the content type."""
    body: Any = json.dumps({"type": "url_verification", "challenge": "x"})
    before = await footprint(slack)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            slack.driver.app_url, data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        assert response.status == 401
    assert await footprint(slack) == before


@pytest.mark.parametrize("timestamp", ["soon", "1700000000.5", "", "0x65"])
async def test_a_malformed_timestamp_is_refused_not_a_crash(slack: Harness, timestamp: str) -> None:
    """A timestamp header that is not an integer is as unsigned as a missing one: 401,
    not the 500 of slack_sdk's verifier raising on `int(timestamp)`."""
    form = payloads.slash_command(slack.workspace, ALICE, slack.general, "list", "/incident")
    body = urlencode(form)
    headers = {**slack.driver.sign(body), "X-Slack-Request-Timestamp": timestamp}
    before = await footprint(slack)
    assert await raw_post(slack, body, headers) == 401
    assert await footprint(slack) == before


@pytest.mark.parametrize(
    "garbage",
    [
        "payload=not-json",
        "payload=%7B",
        "payload=null",
        "%ff%fe",
        "a=b&c",
    ],
)
async def test_a_body_tampered_into_garbage_is_unsigned_not_malformed(
    slack: Harness, garbage: str
) -> None:
    """Sent under another body's good signature, an unparseable body is a forgery (401),
    whatever a parser would make of it; a parse error must not answer first."""
    form = payloads.slash_command(slack.workspace, ALICE, slack.general, "list", "/incident")
    headers = slack.driver.sign(urlencode(form))
    before = await footprint(slack)
    assert await raw_post(slack, garbage, headers) == 401
    assert await footprint(slack) == before
