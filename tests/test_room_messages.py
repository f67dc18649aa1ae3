"""The seeds' message templates: the announcement (status, impact, started, lead), the
update (status, actions taken, next steps, next update at, from the update modal too),
and the close message (duration, root cause, fix, follow-up); user text escaped."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.clock import OffsetClock
from storage.models import Event, Incident
from tests.harness import ALICE, BOB, Harness, running_firebreak


async def test_the_announcement_says_status_impact_started_and_lead(slack: Harness) -> None:
    await slack.command("")
    [view] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(
        ALICE,
        view["id"],
        {
            "title": {"title": {"type": "plain_text_input", "value": "Checkout down"}},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P1"}}},
            "description": {
                "description": {"type": "plain_text_input", "value": "Card payments fail <!here>"}
            },
            "commander": {"commander": {"type": "users_select", "selected_user": BOB}},
        },
    )
    await slack.settle()
    channel = slack.only_incident_channel()
    [announced] = [t for t in slack.texts(slack.announce) if "incident declared" in t]
    started = slack.app.services.clock.now().strftime("%Y-%m-%d")
    assert "*P1 incident declared:* Checkout down" in announced
    assert "*Status:* Investigating" in announced
    assert "*Impact:* Card payments fail &lt;!here&gt;" in announced  # no ping
    assert f"*Started:* {started}" in announced
    assert f"*Lead:* <@{BOB}>" in announced
    assert f"Updates in <#{channel.id}>" in announced


async def test_the_update_modal_has_the_seed_fields_and_the_message_says_them(
    database_url: str,
) -> None:
    clock = OffsetClock()
    async with running_firebreak(database_url, clock=clock) as slack:
        await update_through_the_nudge(slack, clock)


async def update_through_the_nudge(slack: Harness, clock: OffsetClock) -> None:
    await slack.command("declare P1 checkout errors")
    channel = slack.only_incident_channel().id
    clock.advance(timedelta(minutes=16))
    await slack.app.services.reminders.send_due()
    await slack.settle()
    [nudge] = [m for m in slack.workspace.messages(channel) if "status update is due" in m["text"]]
    await slack.driver.click_button(BOB, channel, nudge["ts"], "nudge:post_update")
    await slack.settle()
    [view] = slack.workspace.open_views(BOB)
    labels = [b["label"]["text"] for b in view["blocks"]]
    assert labels == ["Status", "Actions taken", "Next steps", "Impact so far"]
    await slack.driver.submit_view(
        BOB,
        view["id"],
        {
            "status": "identified",
            "update": "Rolled back to 1.4.1",
            "next_steps": "Watch the error rate for 15 minutes",
            "impact": "5% of checkouts fail <b>",
        },
    )
    await slack.settle()
    posted = slack.texts(channel)[-1]
    due = await slack.app.services.db.run(lambda s: s.scalar(select(Incident.next_update_due_at)))
    assert "*Status:* Identified" in posted
    assert "*Actions taken:* Rolled back to 1.4.1" in posted
    assert "*Next steps:* Watch the error rate for 15 minutes" in posted
    assert "*Impact:* 5% of checkouts fail &lt;b&gt;" in posted
    assert f"*Next update at:* {due:%H:%M} UTC" in posted
    updates = await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == "update").order_by(Event.id)))
    )
    assert updates[-1].payload["next_steps"] == "Watch the error rate for 15 minutes"
    # The read-in takes the impact as last stated.
    await slack.command("summary", channel=channel, user=ALICE)
    assert "*Impact so far:* 5% of checkouts fail &lt;b&gt;" in slack.ephemeral_texts(ALICE)[-1]


async def test_the_close_message_says_duration_root_cause_fix_and_follow_up(
    slack: Harness,
) -> None:
    await slack.command("declare P2 search slow")
    channel = slack.only_incident_channel().id
    await slack.command(
        "action Alert on index lag <@U0BOB> category=detection due=2026-12-31", channel=channel
    )
    await slack.command(
        "resolve Reindexed the cluster. Root cause: a mapping change doubled the index size",
        channel=channel,
    )
    for text in (slack.texts(channel)[-1], slack.texts(slack.announce)[-1]):
        assert "*Resolved:*" in text and "*Duration:*" in text
        assert "*Root cause:* a mapping change doubled the index size" in text
        assert "*Fix:* Reindexed the cluster" in text
        assert f"• Alert on index lag (detection, due 2026-12-31) <@{BOB}>" in text
    [resolved] = await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == "resolved")))
    )
    assert resolved.payload["root_cause"] == "a mapping change doubled the index size"
    assert resolved.payload["summary"] == "Reindexed the cluster"
