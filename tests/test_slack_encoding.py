"""`&`, `<` and `>` survive Slack's encoding: decoded once when read, escaped once when shown.

Slack sends slash-command text with these three as `&amp;`, `&lt;` and `&gt;` (the
emulator encodes it exactly so). Firebreak used to escape them again, so
`API 5xx > 10% & climbing` became `#incident-…-api-5xx-gt-10-amp-climbing` and a topic
reading "API 5xx &gt; 10% &amp; climbing" (issue 19, item 4). Every free-text command
is round-tripped here: stored as typed, sent to Slack escaped exactly once (so Slack
shows what was typed), and written into the post-mortem as typed.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.mrkdwn import escape, from_slack
from emulator.composer import encode
from storage.models import Event, Incident, Postmortem
from tests.harness import ALICE, Harness, running_firebreak

TITLE = "API 5xx > 10% & climbing"
TYPED = {
    "update": "p99 < 200ms & falling, was >2s",
    "note": "saw x>3 && y<2 at 14:02",
    "action": "page when errors > 5% & rising",
    "resolve": "rolled back <v1.4.2> & flushed; a typed &amp; stays as typed",
}
EVENT_OF = {"update": "update", "note": "note", "action": "action_item", "resolve": "resolved"}


@pytest.fixture
async def slack(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_firebreak(database_url, FIREBREAK_POSTMORTEM_DIR=str(tmp_path)) as harness:
        yield harness


def test_the_emulator_encodes_as_slack_does(slack: Harness) -> None:
    assert encode(slack.workspace, TITLE) == "API 5xx &gt; 10% &amp; climbing"
    assert encode(slack.workspace, "<!channel> & @channel @bob") == (
        "&lt;!channel&gt; &amp; <!channel> <@U0BOB|bob>"
    )
    assert from_slack(encode(slack.workspace, TYPED["resolve"])) == TYPED["resolve"]


async def test_every_free_text_command_round_trips(slack: Harness) -> None:
    await slack.command(f"declare P2 {TITLE}")
    channel = slack.only_incident_channel()
    assert channel.name.endswith("-api-5xx-10-climbing")
    shown = escape(TITLE)  # what Slack shows as TITLE: escaped exactly once
    assert shown == "API 5xx &gt; 10% &amp; climbing"
    assert channel.topic["value"].endswith(f"· {shown}")
    assert any(shown in t for t in slack.texts(slack.announce))
    [checklist] = slack.checklists(channel.id)
    assert shown in checklist["blocks"][0]["text"]["text"] and shown in checklist["text"]

    for verb, text in TYPED.items():
        suffix = " category=response due=7d" if verb == "action" else ""
        await slack.command(f"{verb} {text}{suffix}", channel=channel.id)
        assert any(escape(text) in t for t in slack.texts(channel.id)), (verb, text)
    assert not [t for t in slack.ephemeral_texts(ALICE) if "&amp;gt;" in t or "keep it" in t]

    def stored(session):  # type: ignore[no-untyped-def]
        incident = session.scalars(select(Incident)).one()
        texts = {
            e.type: e.payload.get("text", e.payload.get("summary"))
            for e in session.scalars(select(Event))
        }
        return incident.title, texts

    title, texts = await slack.app.services.db.run(stored)
    assert title == TITLE
    assert {verb: texts[EVENT_OF[verb]] for verb in TYPED} == TYPED

    await slack.command("close", channel=channel.id)
    markdown = await slack.app.services.db.run(
        lambda session: session.scalars(select(Postmortem)).one().markdown
    )
    as_read = html.unescape(markdown)  # Markdown shows entities decoded
    for text in (TITLE, *TYPED.values()):
        assert text in as_read, text
    assert "&amp;gt;" not in markdown and "&amp;lt;" not in markdown


async def test_a_modal_title_is_taken_as_typed(slack: Harness) -> None:
    """Slack sends plain-text inputs as typed, not encoded: nothing to decode there."""
    await slack.command("declare")
    [view] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(ALICE, view["id"], {"title": TITLE, "severity": "P1"})
    await slack.settle()
    channel = slack.only_incident_channel()
    assert channel.name.endswith("-api-5xx-10-climbing")
    assert channel.topic["value"].endswith(f"· {escape(TITLE)}")
