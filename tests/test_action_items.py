"""Action items carry a category and a due date, validated, and the post-mortem shows both."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from storage.models import Event
from tests.harness import ALICE, Harness


async def declared(slack: Harness) -> str:
    await slack.command("declare P2 checkout slow")
    return slack.only_incident_channel().id


async def test_category_and_due_date_are_required_and_checked(slack: Harness) -> None:
    channel = await declared(slack)
    cases = {
        "action Add an alert due=7d": "Give the action item a category",
        "action Add an alert category=blame due=7d": "(got `blame`)",
        "action Add an alert category=detection": "Give the action item a due date",
        "action Add an alert category=detection due=soon": "`soon` is not a due date",
        "action Add an alert category=detection due=2001-01-01": "is in the past",
        "action Add an alert category=detection due=900d": "1 to 366 days away",
        "action category=detection due=7d": "Add some text",
    }
    for text, answer in cases.items():
        response = await slack.command(text, channel=channel)
        shown = str(response.body) + " ".join(slack.ephemeral_texts(ALICE)[-1:])
        assert answer in shown, (text, shown)
    events = await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == "action_item")))
    )
    assert events == []


async def test_an_action_item_is_posted_recorded_and_in_the_postmortem(slack: Harness) -> None:
    channel = await declared(slack)
    today = slack.app.services.clock.now().date()
    await slack.command(
        "action Alert on pool saturation <@U0BOB> cat=Detection due=2w", channel=channel
    )
    await slack.command(
        f"action Write the runbook category=documentation due={today}", channel=channel
    )
    due = (today + timedelta(days=14)).isoformat()
    assert any(
        f"Action item (detection, due {due})" in t and "Alert on pool saturation" in t
        for t in slack.texts(channel)
    )
    await slack.command("resolve pool raised", channel=channel)
    await slack.command("close", channel=channel)
    document = json.loads(await slack.app.services.postmortems.render("1", "json"))
    assert [(i["text"], i["category"], i["due"], i["owner"]) for i in document["action_items"]] == [
        ("Alert on pool saturation", "detection", due, "U0BOB"),
        ("Write the runbook", "documentation", today.isoformat(), None),
    ]
    markdown = await slack.app.services.postmortems.render("1", "md")
    assert f"| Alert on pool saturation | detection | Bob Example | {due} |" in markdown
