"""Resolution summaries and closed incidents, end to end.

A summary given after the incident was resolved (by `status resolved` or the
update form) is recorded, and `close` asks for one when it is missing. A
closed incident refuses changes and points to a follow-up incident.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from emulator.models import Channel
from storage.models import Event, Incident, Postmortem
from tests.harness import ALICE, BOB, Harness, running_firebreak
from tests.test_reminders import ManualClock, tick


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def slack(database_url: str, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Harness]:
    folder = str(tmp_path / "postmortems")
    async with running_firebreak(
        database_url, clock=clock, FIREBREAK_POSTMORTEM_DIR=folder
    ) as harness:
        await harness.app.scheduler.shutdown()
        yield harness


async def declare(slack: Harness) -> Channel:
    await slack.command("declare P1 checkout errors")
    return slack.only_incident_channel()


async def rows(slack: Harness) -> tuple[Incident, list[str], Postmortem | None]:
    def read(session):  # type: ignore[no-untyped-def]
        incident = session.scalars(select(Incident)).one()
        kinds = list(session.scalars(select(Event.type).order_by(Event.id)))
        return incident, kinds, session.scalars(select(Postmortem)).one_or_none()

    return await slack.app.services.db.run(read)


def resolution_section(row: Postmortem | None) -> str:
    assert row is not None and row.status == "exported"
    return row.markdown.split("## Resolution", 1)[1].split("##", 1)[0].strip()


async def test_a_summary_given_after_resolving_is_recorded_and_used(slack: Harness) -> None:
    channel = await declare(slack)
    await slack.command("status resolved", channel=channel.id)
    await slack.command("resolve", channel=channel.id)
    assert slack.ephemeral_texts(ALICE)[-1].endswith(
        "Say how with `/incident resolve <summary>`; the post-mortem uses it."
    )
    answers = len(slack.ephemeral_texts(ALICE))
    await slack.command("resolve Rolled back the bad deploy", user=BOB, channel=channel.id)
    assert len(slack.ephemeral_texts(ALICE)) == answers
    assert not any("already resolved" in t for t in slack.ephemeral_texts(BOB))
    assert slack.texts(channel.id)[-1] == (
        f":white_check_mark: <@{BOB}> recorded how it was resolved:\n> Rolled back the bad deploy"
    )
    incident, kinds, _ = await rows(slack)
    assert incident.resolution_summary == "Rolled back the bad deploy"
    assert kinds.count("resolved") == 1 and kinds[-1] == "resolution_summary"

    await slack.command("close", channel=channel.id)
    assert slack.workspace.open_views(ALICE) == []  # nothing to ask
    _, kinds, row = await rows(slack)
    assert kinds[-1] == "closed"
    assert resolution_section(row).startswith("Rolled back the bad deploy _(Bob Example,")


async def test_close_asks_for_the_summary_the_update_form_left_out(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack)
    assert await tick(slack, clock, 16) == 1
    nudge = next(
        m for m in slack.workspace.messages(channel.id) if "update is due" in str(m.get("text"))
    )
    await slack.driver.click_button(ALICE, channel.id, nudge["ts"], "nudge:post_update")
    await slack.settle()
    [form] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(
        ALICE, form["id"], {"status": "resolved", "update": "error rate is back to normal"}
    )
    await slack.settle()
    incident, _, _ = await rows(slack)
    assert incident.status == "resolved" and incident.resolution_summary is None

    await slack.command("close", channel=channel.id)
    assert slack.ephemeral_texts(ALICE)[-1].startswith(
        "This incident is resolved, but nobody said how."
    )
    [asked] = [v for v in slack.workspace.open_views(ALICE) if v["id"] != form["id"]]
    assert asked["title"]["text"] == "Close"
    _, kinds, row = await rows(slack)
    assert row is None and "closed" not in kinds
    await slack.driver.submit_view(ALICE, asked["id"], {"summary": "Restarted the checkout pods"})
    await slack.settle()
    incident, kinds, row = await rows(slack)
    assert incident.resolution_summary == "Restarted the checkout pods"
    assert kinds[-2:] == ["resolution_summary", "closed"] and kinds.count("resolved") == 1
    assert resolution_section(row).startswith("Restarted the checkout pods")


async def test_a_closed_incident_refuses_changes_and_points_to_a_follow_up(
    slack: Harness,
) -> None:
    channel = await declare(slack)
    await slack.command("resolve Restarted the pods", channel=channel.id)
    await slack.command("close", channel=channel.id)
    _, kinds_at_close, row = await rows(slack)
    assert row is not None and row.status == "exported"

    for command in (
        "status investigating",
        "severity P0",
        "update still broken",
        "note the pods crash again",
        "resolve Restarted them again",
        f"commander <@{BOB}|bob>",
        "action Add an alert category=response due=7d",
        "diag pods checkout",
        "mitigate restart checkout",
    ):
        await slack.command(command, channel=channel.id)
        assert slack.ephemeral_texts(ALICE)[-1] == (
            "Incident #1 was closed on 2026-11-23 09:00 UTC and its post-mortem covers it "
            "until then, so it can't change any more. If the work goes on, declare a "
            "follow-up from this channel, e.g. `/incident declare P2 <title>`: Firebreak "
            "links it to #1."
        ), command
    answers = slack.ephemeral_texts(ALICE)
    await slack.driver.toggle_checkbox(
        ALICE, channel.id, channel.pins[0]["ts"], "checklist:0:0", ["triage.acknowledge"]
    )
    await slack.settle()
    assert slack.ephemeral_texts(ALICE) == [*answers, answers[-1]]  # the same refusal
    incident, kinds, _ = await rows(slack)
    assert kinds == kinds_at_close
    assert incident.status == "resolved" and incident.next_update_due_at is None
    await slack.command("close", channel=channel.id)
    assert "already closed" in slack.ephemeral_texts(ALICE)[-1]

    await slack.command("declare P2 checkout errors are back", channel=channel.id)
    follow_up = next(c for c in slack.incident_channels() if c.id != channel.id)
    assert slack.texts(channel.id)[-1] == (
        f":arrow_right_hook: Follow-up incident #2 declared: <#{follow_up.id}> "
        "checkout errors are back"
    )
    assert f":link: Follow-up of incident #1 (<#{channel.id}>): checkout errors" in slack.texts(
        follow_up.id
    )
    assert slack.texts(slack.announce)[-1].endswith(f" · Follow-up of <#{channel.id}>")
    await slack.command("resolve Scaled the pool", channel=follow_up.id)
    await slack.command("close", channel=follow_up.id)

    def second(session):  # type: ignore[no-untyped-def]
        incident = session.get(Incident, 2)
        return incident, session.scalars(
            select(Postmortem).where(Postmortem.incident_id == 2)
        ).one()

    incident, postmortem = await slack.app.services.db.run(second)
    assert incident.follow_up_of == 1
    assert f"| Follow-up of | #1 · #{channel.name} |" in postmortem.markdown
