"""/metrics in Prometheus format, and JSON logs with request context and no secrets."""

from __future__ import annotations

import contextvars
import json
import logging

import aiohttp

from bot import logs
from storage.incidents import by_channel
from tests.harness import Harness


async def scrape(slack: Harness) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(slack.driver.app_url.replace("/slack/events", "/metrics")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_metrics_count_incidents_acks_slack_calls_and_retries(slack: Harness) -> None:
    slack.emulator.inject_fault("pins.add", status=429, retry_after=0, count=1)
    await slack.command("declare P1 checkout down")
    await slack.command("frobnicate")
    text = await scrape(slack)
    assert 'firebreak_incidents{severity="P1",status="investigating"} 1.0' in text
    assert 'firebreak_ack_seconds_count{command="declare",kind="command"} 1.0' in text
    assert 'firebreak_ack_seconds_count{command="-",kind="command"} 1.0' in text
    assert 'firebreak_slack_api_calls_total{method="conversations.create",outcome="ok"} 1.0' in text
    assert 'firebreak_slack_api_calls_total{method="pins.add",outcome="ok"} 1.0' in text
    assert 'firebreak_slack_api_retries_total{method="pins.add",reason="ratelimited"} 1.0' in text


def test_json_logs_carry_context_and_never_a_secret() -> None:
    # In a context of its own, so the IDs don't leak into the tests that follow.
    contextvars.copy_context().run(json_logs_carry_context_and_never_a_secret)


def json_logs_carry_context_and_never_a_secret() -> None:
    formatter = logs.JsonFormatter()
    logs.incident_id.set(42)
    logs.request_id.set("13345224609.738474920.8088930838d88f008e0")
    logs.user_id.set("U0ALICE")
    record = logging.LogRecord(
        "firebreak",
        logging.WARNING,
        __file__,
        1,
        "posting with xoxb-1234-5678-abcdefghijkl to postgresql://app:hunter2@db/prod",
        None,
        None,
    )
    entry = json.loads(formatter.format(record))
    assert entry["incident_id"] == 42 and entry["user_id"] == "U0ALICE"
    assert entry["request_id"].startswith("13345224609")
    assert entry["level"] == "warning" and entry["logger"] == "firebreak"
    assert "xoxb-1234" not in entry["message"] and "hunter2" not in entry["message"]
    text = logs.TextFormatter().format(record)
    assert "hunter2" not in text and "incident_id=42" in text


async def test_metrics_time_commands_and_count_runbook_actions(slack: Harness) -> None:
    """`diag db-size` without the target database's URL: counted as unavailable."""
    await slack.command("declare P2 slow checkout")
    await slack.command("diag db-size checkout", channel=slack.only_incident_channel().id)
    text = await scrape(slack)
    assert (
        'firebreak_runbook_actions_total{action="db-size",kind="diagnostic",'
        'result="unavailable"} 1.0'
    ) in text
    assert 'firebreak_command_seconds_count{command="diag"} 1.0' in text
    assert 'firebreak_command_seconds_count{command="declare"} 1.0' in text


class ContextRecorder(logging.Handler):
    """Each record with the incident ID its task had when it was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), logs.incident_id.get()))


async def test_log_lines_about_an_incident_carry_its_id(slack: Harness) -> None:
    """The outbox gives up a post into the archived channel: its warning names the incident,
    though the request that caused it arrived without one."""
    await slack.command("declare P1 checkout down")
    channel = slack.only_incident_channel()
    incident = await slack.app.services.db.run(by_channel, channel.id)
    assert incident is not None
    channel.archived = True
    recorder = ContextRecorder()
    logging.getLogger("bot").addHandler(recorder)
    try:
        await slack.command("update failing over to the standby", channel=channel.id)
    finally:
        logging.getLogger("bot").removeHandler(recorder)
    given_up = [context for message, context in recorder.seen if "undeliverable" in message]
    assert given_up and set(given_up) == {incident.id}, recorder.seen
