"""Alert intake end to end: real HTTP into the app, the Slack emulator, SQLite and Postgres.

Alerts are posted the way Alertmanager (and any other sender) posts them, over
loopback HTTP with the bearer token; the offer's buttons are clicked the way
Slack sends a click. What is checked is what Slack shows and what the database
holds.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.alerts import payloads
from bot.clock import OffsetClock
from emulator.alerts import example
from runbooks import BUNDLED
from storage.models import AlertDelivery, AlertGroup, Event, Incident
from tests.harness import ALICE, BOB, Harness, running_firebreak

TOKEN = "alert-token-for-tests"
STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Alerts:
    """Posts alerts to a running Firebreak, and reads back what it did."""

    def __init__(self, slack: Harness, url: str) -> None:
        self.slack = slack
        self.url = url

    async def post(
        self,
        body: Any,
        *,
        path: str = "alertmanager",
        token: str | None = TOKEN,
        settle: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
        url = f"{self.url}/alerts/{path}"
        async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as r:
            answer = await r.json(content_type=None)
            status = r.status
        if settle:
            await self.slack.settle()
        return status, answer

    async def count(self, model: type[Any]) -> int:
        def read(session: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model)))

        return await self.slack.app.services.db.run(read)

    async def events(self, kind: str) -> list[Event]:
        def read(session: Any) -> list[Event]:
            return list(session.scalars(select(Event).where(Event.type == kind)))

        return await self.slack.app.services.db.run(read)

    async def incidents(self) -> list[Incident]:
        def read(session: Any) -> list[Incident]:
            return list(session.scalars(select(Incident).order_by(Incident.id)))

        return await self.slack.app.services.db.run(read)

    def offers(self) -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.workspace.messages(self.slack.announce)
            if any(str(b.get("block_id", "")).startswith("fb-alert-offer-") for b in m["blocks"])
        ]


def base_url(slack: Harness) -> str:
    return slack.driver.app_url.removesuffix("/slack/events")


@pytest.fixture
async def alerts(database_url: str) -> AsyncIterator[Alerts]:
    async with running_firebreak(database_url, FIREBREAK_ALERT_TOKEN=TOKEN) as slack:
        yield Alerts(slack, base_url(slack))


def runbooks_with(tmp_path: Path, alerts_yml: str) -> Path:
    folder = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (folder / "alerts.yml").write_text(alerts_yml, encoding="utf-8")
    return folder


def critical(status: str = "firing", starts: datetime = STARTED) -> dict[str, Any]:
    return example("checkout-5xx", starts, status)


# Authentication and bad input ---------------------------------------------------


async def test_without_a_token_configured_the_endpoints_do_not_exist(slack: Harness) -> None:
    intake = Alerts(slack, base_url(slack))
    for path in ("alertmanager", "generic"):
        status, answer = await intake.post(critical(), path=path)
        assert status == 404, answer
        assert "FIREBREAK_ALERT_TOKEN" in answer["error"]
    assert await intake.count(AlertDelivery) == 0
    assert slack.incident_channels() == []


async def test_a_wrong_or_missing_token_is_refused_and_nothing_is_processed(
    alerts: Alerts,
) -> None:
    for token in (None, "", "wrong", TOKEN + "x", TOKEN.upper()):
        status, answer = await alerts.post(critical(), token=token)
        assert status == 401, (token, answer)
        assert answer == {"ok": False, "error": "missing or wrong bearer token"}
    status, _ = await alerts.post(b"not even json", token="wrong")
    assert status == 401  # authenticated before parsing: the body is never looked at
    assert await alerts.count(AlertDelivery) == 0
    assert alerts.slack.incident_channels() == []


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("alertmanager", b"{not json", "malformed JSON"),
        ("alertmanager", b"[1, 2]", "must be a JSON object"),
        ("alertmanager", b"\xff\xfe", "not UTF-8"),
        ("alertmanager", {"status": "firing", "alerts": []}, "`groupKey` is required"),
        ("alertmanager", {"groupKey": "g", "status": "firing", "alerts": []}, "non-empty list"),
        ("alertmanager", {"groupKey": "g", "status": "on", "alerts": [{}]}, "firing or resolved"),
        ("alertmanager", {**critical(), "version": "3"}, "unsupported payload version"),
        ("generic", {"dedup_key": "x"}, "`title` is required"),
        ("generic", {"title": "x"}, "`dedup_key` is required"),
        ("generic", {"title": "x", "dedup_key": "k", "status": "gone"}, "firing or resolved"),
        ("generic", {"title": 5, "dedup_key": "k"}, "`title` must be a string"),
    ],
)
async def test_malformed_or_incomplete_deliveries_get_400_with_the_reason(
    alerts: Alerts, path: str, body: Any, reason: str
) -> None:
    status, answer = await alerts.post(body, path=path)
    assert status == 400
    assert reason in answer["error"]
    assert await alerts.count(AlertDelivery) == 0


async def test_an_oversized_body_gets_413_with_the_reason(alerts: Alerts) -> None:
    body = critical()
    body["commonAnnotations"]["description"] = "x" * (2 * 1024 * 1024)
    status, answer = await alerts.post(body)
    assert status == 413 and "larger than 1 MiB" in answer["error"]
    assert await alerts.count(AlertDelivery) == 0


async def test_a_missing_field_inside_an_alert_is_named(alerts: Alerts) -> None:
    body = critical()
    del body["alerts"][0]["startsAt"]
    status, answer = await alerts.post(body)
    assert (status, answer["error"]) == (400, "`alerts[0].startsAt` is required")


# Declare, offer, ignore -----------------------------------------------------------


async def test_a_critical_alert_declares_an_incident_that_records_its_source(
    alerts: Alerts,
) -> None:
    status, answer = await alerts.post(critical())
    assert status == 202 and answer["ok"] and not answer["duplicate"]
    channel = alerts.slack.only_incident_channel()
    assert channel.name.endswith("checkout-api-returning-502s")
    (incident,) = await alerts.incidents()
    assert (incident.severity, incident.declared_by) == ("P1", "firebreak")
    assert incident.setup_complete  # channel, checklist posted and pinned
    (source,) = await alerts.events("alert_source")
    assert source.payload["labels"]["service"] == "checkout"
    assert source.payload["starts_at"] == STARTED.isoformat()
    assert source.payload["generator_url"].startswith("http://prometheus.example.com:9090/")
    posted = "\n".join(alerts.slack.texts(channel.id))
    assert "Opened from an alert" in posted
    assert "<https://runbooks.example.com/checkout/high-error-rate|Runbook>" in posted
    assert alerts.offers() == []
    announced = "\n".join(alerts.slack.texts(alerts.slack.announce))
    assert "*P1 incident declared:* Checkout API returning 502s" in announced
    assert "Opened from an alert" in announced


async def test_a_warning_is_offered_once_and_declare_incident_opens_it(alerts: Alerts) -> None:
    body = example("disk-filling", STARTED)
    for _ in range(5):  # Alertmanager's repeat_interval and retries
        await alerts.post(body)
    body["alerts"][0]["labels"]["extra"] = "changed"  # news about the group: still one offer
    await alerts.post(body)
    (offer,) = alerts.offers()
    assert alerts.slack.incident_channels() == []
    assert "orders-db volume will be full" in offer["text"]
    slack = alerts.slack
    # Two people click at once (the second before the buttons are gone): one incident.
    await asyncio.gather(
        slack.driver.click_button(ALICE, slack.announce, offer["ts"], "alert_declare", "1"),
        slack.driver.click_button(BOB, slack.announce, offer["ts"], "alert_declare", "1"),
    )
    await slack.settle()
    channel = slack.only_incident_channel()
    (incident,) = await alerts.incidents()
    assert incident.severity == "P3"
    winner, loser = (ALICE, BOB) if incident.declared_by == ALICE else (BOB, ALICE)
    assert any("Declared *P3* incident" in t for t in slack.ephemeral_texts(winner))
    assert any("already declared" in t for t in slack.ephemeral_texts(loser))
    (offer,) = alerts.offers()
    assert f"Declared by <@{winner}>" in offer["text"] and f"<#{channel.id}>" in offer["text"]
    assert not [b for b in offer["blocks"] if b["type"] == "actions"]  # buttons gone


async def test_dismiss_keeps_the_alert_quiet_until_it_resolves(alerts: Alerts) -> None:
    slack = alerts.slack
    await alerts.post(example("disk-filling", STARTED))
    (offer,) = alerts.offers()
    await slack.driver.click_button(BOB, slack.announce, offer["ts"], "alert_dismiss", "1")
    await slack.settle()
    assert any("Dismissed" in t for t in slack.ephemeral_texts(BOB))
    assert "Dismissed by <@U0BOB>" in alerts.offers()[0]["text"]
    await alerts.post(example("disk-filling", STARTED))
    assert len(alerts.offers()) == 1 and slack.incident_channels() == []
    # It resolves, then fires again: a new episode, offered again.
    await alerts.post(example("disk-filling", STARTED, "resolved"))
    await alerts.post(example("disk-filling", STARTED + timedelta(hours=1)))
    assert len(alerts.offers()) == 2


async def test_an_offer_that_resolves_before_anyone_declares_loses_its_buttons(
    alerts: Alerts,
) -> None:
    slack = alerts.slack
    await alerts.post(example("disk-filling", STARTED))
    await alerts.post(example("disk-filling", STARTED, "resolved"))
    (offer,) = alerts.offers()
    assert "Resolved before anyone declared an incident" in offer["text"]
    assert not [b for b in offer["blocks"] if b["type"] == "actions"]
    # A click from a client that still shows the buttons: refused, nothing declared.
    await slack.driver.post(
        urlencode(
            {
                "payload": json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": ALICE},
                        "channel": {"id": slack.announce},
                        "trigger_id": "t1",
                        "actions": [
                            {"action_id": "alert_declare", "value": "1", "action_ts": "1.5"}
                        ],
                    }
                )
            }
        )
    )
    await slack.settle()
    assert slack.incident_channels() == []
    assert any("resolved before anyone declared" in t for t in slack.ephemeral_texts(ALICE))


async def test_an_ignored_alert_does_nothing(alerts: Alerts) -> None:
    status, _ = await alerts.post(example("watchdog", STARTED))
    assert status == 202
    assert alerts.offers() == [] and alerts.slack.incident_channels() == []
    assert await alerts.count(AlertGroup) == 1  # recorded, and routed to `ignore`


# Idempotency ------------------------------------------------------------------------


async def test_a_hundred_deliveries_of_one_group_make_one_incident(alerts: Alerts) -> None:
    sequential = [await alerts.post(critical(), settle=False) for _ in range(50)]
    assert all(status == 202 for status, _ in sequential)
    assert sum(not answer["duplicate"] for _, answer in sequential) == 1
    at_once = await asyncio.gather(*(alerts.post(critical(), settle=False) for _ in range(50)))
    assert all(status == 202 for status, _ in at_once)
    await alerts.slack.settle()
    assert len(await alerts.incidents()) == 1
    assert len(alerts.slack.incident_channels()) == 1
    assert len(await alerts.events("alert_source")) == 1


async def test_a_hundred_concurrent_deliveries_with_different_news_make_one_incident(
    alerts: Alerts,
) -> None:
    """Each delivery adds another alert to the group, all at once: one incident, each
    alert once on its timeline."""

    def with_pod(n: int) -> dict[str, Any]:
        body = critical()
        alert = body["alerts"][0]
        alert["labels"] = {**alert["labels"], "pod": f"checkout-{n}"}
        alert["fingerprint"] = f"fp{n:04d}"
        return body

    answers = await asyncio.gather(*(alerts.post(with_pod(n), settle=False) for n in range(100)))
    assert all(status == 202 for status, _ in answers)
    await alerts.slack.settle()
    assert len(await alerts.incidents()) == 1
    assert len(alerts.slack.incident_channels()) == 1
    firing = await alerts.events("alert_firing")
    assert len(firing) == 99  # the first opened the incident; each other one is news, once
    assert len({e.payload["fingerprint"] for e in firing}) == 99


# Timeline and resolution -------------------------------------------------------------


async def test_a_resolved_alert_is_posted_but_people_resolve_the_incident(
    alerts: Alerts,
) -> None:
    await alerts.post(critical())
    await alerts.post(critical("resolved"))
    channel = alerts.slack.only_incident_channel()
    assert any("Alert resolved" in t for t in alerts.slack.texts(channel.id))
    (incident,) = await alerts.incidents()
    assert incident.status == "investigating"
    assert len(await alerts.events("alert_resolved")) == 1
    # The same alert firing again, while the incident is open: on its timeline, no new one.
    await alerts.post(critical(starts=STARTED + timedelta(minutes=30)))
    assert len(await alerts.incidents()) == 1
    assert len(await alerts.events("alert_firing")) == 1


async def test_auto_resolve_resolves_the_incident_and_a_later_alert_opens_a_new_one(
    database_url: str, tmp_path: Path
) -> None:
    folder = runbooks_with(
        tmp_path,
        "rules:\n  - name: critical\n    match: {severity: critical}\n"
        "    action: declare\n    severity: P1\n    auto_resolve: true\n",
    )
    env = {"FIREBREAK_ALERT_TOKEN": TOKEN, "FIREBREAK_RUNBOOKS": str(folder)}
    async with running_firebreak(database_url, **env) as slack:
        alerts = Alerts(slack, base_url(slack))
        await alerts.post(critical())
        await alerts.post(critical("resolved"))
        (incident,) = await alerts.incidents()
        assert incident.status == "resolved"
        assert "auto_resolve" in str(incident.resolution_summary)
        await alerts.post(critical())  # the same alert again, stale: nothing new
        assert len(await alerts.incidents()) == 1
        await alerts.post(critical(starts=STARTED + timedelta(hours=2)))
        assert len(await alerts.incidents()) == 2


async def test_alert_text_is_escaped(alerts: Alerts) -> None:
    body = critical()
    body["commonAnnotations"]["summary"] = "<!channel> *ping* <https://evil.example|docs>"
    body["commonAnnotations"]["runbook_url"] = "https://ok.example/a|b>c"
    await alerts.post(body)
    channel = alerts.slack.only_incident_channel()
    posted = "\n".join(alerts.slack.texts(channel.id))
    assert "<!channel>" not in posted and "&lt;!channel&gt;" in posted
    assert "<https://evil.example" not in posted
    assert "ok.example/a|b" not in posted  # not a link: it would break out of the markup


async def test_the_generic_form_declares_offers_and_resolves(alerts: Alerts) -> None:
    body = {
        "title": "Payments provider timing out",
        "dedup_key": "payments-timeouts",
        "severity": "critical",
        "service": "payments",
        "description": "p99 above 10 s",
        "source_url": "https://status.example.com/payments",
    }
    status, _ = await alerts.post(body, path="generic")
    assert status == 202
    (incident,) = await alerts.incidents()
    assert incident.title == "Payments provider timing out"
    status, answer = await alerts.post(body, path="generic")
    assert answer["duplicate"]
    await alerts.post({**body, "status": "resolved"}, path="generic")
    assert len(await alerts.events("alert_resolved")) == 1


async def test_the_postmortem_has_impact_began_time_to_detect_and_links(
    alerts: Alerts,
) -> None:
    slack = alerts.slack
    started = datetime.now(UTC) - timedelta(minutes=7)
    await alerts.post(critical(starts=started))
    channel = slack.only_incident_channel()
    await slack.command("resolve Rolled back", channel=channel.id)
    await slack.command("close", channel=channel.id)
    (incident,) = await alerts.incidents()
    markdown = await slack.app.services.postmortems.render(str(incident.id), "md")
    assert f"| Impact began | {started:%Y-%m-%d %H:%M} UTC (the alert started firing) |" in markdown
    assert "| Time to detect | 7m |" in markdown
    assert "[Runbook](https://runbooks.example.com/checkout/high-error-rate)" in markdown
    assert "## Alert" in markdown and "`service=checkout`" in markdown


# Crashes and replicas ----------------------------------------------------------------


async def test_a_delivery_left_unprocessed_by_a_crash_is_processed_by_the_sweep(
    database_url: str,
) -> None:
    """Recorded and answered, then the process died before routing it: the sweep routes it."""
    clock = OffsetClock()
    async with running_firebreak(database_url, clock=clock, FIREBREAK_ALERT_TOKEN=TOKEN) as slack:
        alerts = Alerts(slack, base_url(slack))
        services = slack.app.services
        # What the endpoint does before answering, without the hand-off that a crash lost.
        await services.alerts.receive(payloads.alertmanager(critical()))
        await services.sweep()
        assert slack.incident_channels() == []  # not stale yet: its worker may be running
        clock.advance(timedelta(minutes=1))
        await services.sweep()
        await slack.settle()
        assert len(slack.incident_channels()) == 1
        assert len(await alerts.incidents()) == 1
        assert await alerts.count(AlertDelivery) == 1


async def test_two_replicas_taking_deliveries_of_one_group_at_once_make_one_incident(
    database_url: str,
) -> None:
    """Each replica serialises a group's deliveries in memory; across replicas the
    database does (one live episode per group), so two replicas still open one incident."""

    def with_pod(n: int) -> dict[str, Any]:
        body = critical()
        body["alerts"][0]["fingerprint"] = f"fp{n:04d}"
        return body

    env = {"FIREBREAK_ALERT_TOKEN": TOKEN}
    async with (
        running_firebreak(database_url, **env) as one,
        running_firebreak(database_url, **env) as two,
    ):
        replicas = [Alerts(one, base_url(one)), Alerts(two, base_url(two))]
        answers = await asyncio.gather(
            *(replicas[n % 2].post(with_pod(n), settle=False) for n in range(100))
        )
        assert all(status == 202 for status, _ in answers)
        await one.settle()
        await two.settle()
        assert len(await replicas[0].incidents()) == 1
        assert await replicas[0].count(AlertGroup) == 1
        assert await replicas[0].count(AlertDelivery) == 100
