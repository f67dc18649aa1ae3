"""Hostile deliveries to the alert endpoints: random and damaged JSON, huge label sets, unicode.

Every answer is a 202 (a delivery that is still valid) or a 4xx with a reason, never a
5xx; nothing unauthenticated is recorded, let alone opens an incident; and whatever
was accepted is processed without an unexpected error (nothing logged at ERROR,
no delivery left unprocessed).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from emulator.alerts import example
from storage.models import AlertDelivery, Incident
from tests.databases import fresh_database
from tests.harness import Harness, running_firebreak
from tests.test_hostile_payloads import HYPOTHESIS, JSON, damage, ops

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "hostile-alert-token"
STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# What an HTTP client can put in a header: no control characters.
# What a client can put in a header: printable Latin-1 (aiohttp refuses control characters).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=["Cc"]),
    max_size=60,
)
ENDPOINTS = st.sampled_from(["alertmanager", "generic"])
UNICODE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=60
)


class Intake:
    def __init__(self, slack: Harness) -> None:
        self.slack = slack
        self.url = slack.driver.app_url.removesuffix("/slack/events")

    def __repr__(self) -> str:
        return "Intake(…)"

    async def post(self, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.url}/alerts/{path}"
        # A stream, not bytes: aiohttp warns that a large raw body may block its loop.
        data = io.BytesIO(body)
        async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def counts(self) -> tuple[int, int, int]:
        def read(session: Any) -> tuple[int, int, int]:
            def count(query: Any) -> int:
                return int(session.scalar(query))

            return (
                count(select(func.count()).select_from(AlertDelivery)),
                count(
                    select(func.count())
                    .select_from(AlertDelivery)
                    .where(AlertDelivery.processed_at.is_(None))
                ),
                count(select(func.count()).select_from(Incident)),
            )

        return await self.slack.app.services.db.run(read)


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["sqlite", "postgres"])
async def intake(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Intake]:
    tmp_path: Path = tmp_path_factory.mktemp("hostile-alerts")
    with fresh_database(request.param, tmp_path) as url:
        async with running_firebreak(url, FIREBREAK_ALERT_TOKEN=TOKEN) as slack:
            yield Intake(slack)


def valid(path: str) -> dict[str, Any]:
    if path == "alertmanager":
        return example("checkout-5xx", STARTED)
    return {"title": "Payments down", "dedup_key": "payments", "severity": "critical"}


async def settled(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    await intake.slack.settle()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    caplog.clear()
    assert errors == []
    _, unprocessed, _ = await intake.counts()
    assert unprocessed == 0


def answered(status: int, answer: Any) -> None:
    assert status in (202, 400, 413), (status, answer)
    if status != 202:
        assert answer["ok"] is False and answer["error"]


@HYPOTHESIS
@given(path=ENDPOINTS, body=JSON)
async def test_random_json(
    intake: Intake, caplog: pytest.LogCaptureFixture, path: str, body: Any
) -> None:
    answered(*await intake.post(path, json.dumps(body).encode()))
    await settled(intake, caplog)


@HYPOTHESIS
@given(path=ENDPOINTS, raw=st.binary(max_size=200))
async def test_random_bytes(
    intake: Intake, caplog: pytest.LogCaptureFixture, path: str, raw: bytes
) -> None:
    answered(*await intake.post(path, raw))
    await settled(intake, caplog)


@HYPOTHESIS
@given(path=ENDPOINTS, damage_ops=ops)
async def test_damaged_real_deliveries(
    intake: Intake, caplog: pytest.LogCaptureFixture, path: str, damage_ops: list[Any]
) -> None:
    body = damage(valid(path), damage_ops)
    answered(*await intake.post(path, json.dumps(body).encode()))
    await settled(intake, caplog)


@HYPOTHESIS
@given(
    labels=st.dictionaries(UNICODE, UNICODE, max_size=30),
    many=st.integers(min_value=0, max_value=3000),
    text=UNICODE,
)
async def test_huge_label_sets_and_unicode(
    intake: Intake,
    caplog: pytest.LogCaptureFixture,
    labels: dict[str, str],
    many: int,
    text: str,
) -> None:
    body = example("disk-filling", STARTED)
    body["groupKey"] = "unicode:" + text
    alert = body["alerts"][0]
    alert["labels"] = {**alert["labels"], **labels, **{f"l{n}": text * 3 for n in range(many)}}
    alert["annotations"]["summary"] = text or "x"
    body["commonAnnotations"] = {"summary": text, "description": text * 50}
    answered(*await intake.post("alertmanager", json.dumps(body).encode()))
    await settled(intake, caplog)


@HYPOTHESIS
@given(path=ENDPOINTS, token=st.one_of(st.none(), HEADER_TEXT.filter(lambda t: t != TOKEN)))
async def test_unauthenticated_deliveries_are_never_recorded(
    intake: Intake, path: str, token: str | None
) -> None:
    before = await intake.counts()
    status, answer = await intake.post(path, json.dumps(valid(path)).encode(), token)
    assert status == 401, answer
    await intake.slack.settle()
    assert await intake.counts() == before
