"""Text Slack would refuse is refused when it arrives, with the limit and how far over (issue 19
item 1).

Slack counts a section's 3,000 characters as sent: escaped, so `&` takes 5. An update of
1,000 `&` or a pasted 2,000-character HTML page used to be accepted, then refused by Slack
(`invalid_blocks`) and retried forever. Now the rendered length is checked first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.incidents.limits import SECTION_MAX, TEXT_MAX
from bot.mrkdwn import escape
from emulator.models import Channel
from storage.models import Event, Incident
from tests.harness import ALICE, Harness

AMPERSANDS = "&" * 1000
# A pasted error page: 2,000 characters, far more once its markup is escaped.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>\n"
    + '<div class="err"><p>upstream &amp; proxy <b>timed out</b></p></div>\n' * 40
)[:2000]
AT_THE_LIMIT = "&" * (TEXT_MAX // 5)  # exactly TEXT_MAX once escaped


async def declared(slack: Harness, title: str = "checkout errors") -> Channel:
    await slack.command(f"declare P2 {title}")
    return slack.only_incident_channel()


async def event_types(slack: Harness) -> list[str]:
    return await slack.app.services.db.run(
        lambda session: [e.type for e in session.scalars(select(Event).order_by(Event.id))]
    )


def refused_posts(slack: Harness) -> list[Any]:
    """Messages Slack refused for their size (not_in_channel is the broadcast join)."""
    return [
        c
        for c in slack.workspace.calls(ok=False)
        if c.error in ("invalid_blocks", "msg_too_long", "invalid_arguments")
    ]


async def test_the_examples_are_what_the_issue_says() -> None:
    assert len(HTML_PAGE) == 2000 and len(escape(HTML_PAGE)) > SECTION_MAX
    assert len(escape(AT_THE_LIMIT)) == TEXT_MAX


async def test_over_the_limit_is_answered_at_once_with_how_far_over(slack: Harness) -> None:
    channel = await declared(slack)
    before = await event_types(slack)
    for verb, text in (
        ("update", AMPERSANDS),
        ("note", HTML_PAGE),
        ("action", HTML_PAGE),
        ("resolve", AMPERSANDS),
        ("update", AT_THE_LIMIT + "x"),
    ):
        response = await slack.command(f"{verb} {text}", channel=channel.id)
        length = len(escape(text))
        # The answer is the HTTP response to the command itself: nothing is queued.
        answer = str(response.body)
        assert f"comes to {length:,} characters" in answer, answer
        assert f"the limit is {TEXT_MAX:,}, so it is {length - TEXT_MAX:,} over" in answer
    assert await event_types(slack) == before
    assert refused_posts(slack) == []


async def test_at_the_limit_is_posted(slack: Harness) -> None:
    channel = await declared(slack)
    await slack.command(f"update {AT_THE_LIMIT}", channel=channel.id)
    await slack.command(f"note {AT_THE_LIMIT}", channel=channel.id)
    await slack.command(f"action {AT_THE_LIMIT} category=response due=7d", channel=channel.id)
    await slack.command(f"resolve {AT_THE_LIMIT}", channel=channel.id)
    assert refused_posts(slack) == []
    assert [t for t in slack.ephemeral_texts(ALICE) if "warning" in t] == []
    shown = escape(AT_THE_LIMIT)
    assert sum(shown in t for t in slack.texts(channel.id)) == 4  # update, note, action, resolve
    assert sum(shown in t for t in slack.texts(slack.announce)) == 2  # update and resolve
    types = await event_types(slack)
    assert {"update", "note", "action_item", "resolved"} <= set(types)


async def test_the_whole_message_is_checked_with_the_incident_around_it(slack: Harness) -> None:
    """A summary within the limit, but a title of 150 `&` in the same message: over 3,000."""
    channel = await declared(slack, "&" * 150)
    await slack.command(f"resolve {AT_THE_LIMIT}", channel=channel.id)
    [answer] = [t for t in slack.ephemeral_texts(ALICE) if "once formatted" in t]
    assert f"the limit is {SECTION_MAX:,}" in answer and "Shorten your text by" in answer
    incident = await slack.app.services.db.run(
        lambda session: session.scalars(select(Incident)).one()
    )
    assert incident.status != "resolved"
    assert "resolved" not in await event_types(slack)
    assert refused_posts(slack) == []


async def test_form_fields_are_checked_as_rendered(slack: Harness) -> None:
    await slack.command("declare")
    [view] = slack.workspace.open_views(ALICE)
    response = await slack.driver.submit_view(
        ALICE, view["id"], {"title": "disk full", "severity": "P2", "description": HTML_PAGE}
    )
    assert response.body["response_action"] == "errors"
    over = len(escape(HTML_PAGE)) - TEXT_MAX
    assert f"so it is {over:,} over" in response.body["errors"]["description"]
    await slack.settle()
    assert slack.incident_channels() == []

    channel = await declared(slack)
    await slack.command("close", channel=channel.id)  # unresolved: asks for a summary
    [form] = [v for v in slack.workspace.open_views(ALICE) if v["callback_id"].endswith("close")]
    response = await slack.driver.submit_view(ALICE, form["id"], {"summary": AMPERSANDS})
    assert "so it is 2,200 over" in response.body["errors"]["summary"]
    await slack.settle()
    assert "resolved" not in await event_types(slack)
