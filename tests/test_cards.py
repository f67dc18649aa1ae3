"""Cards: the bot's own message shape, rendered to Block Kit only by the gateway.

What a card holds survives the outbox (JSON both ways), renders inside Slack's
limits, and rows queued as Slack blocks by the previous release are converted
by the migration so they still go out.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session

from bot.messages import Button, Buttons, Card, Checkboxes, Choice, Note, Section
from emulator import SlackEmulator, Workspace
from emulator.blockkit import check_message
from handlers import blockkit
from handlers.slack_gateway import SlackGateway, make_client
from storage.db import make_engine
from storage.migrate import MIGRATIONS, upgrade
from storage.models import Incident, OutboxMessage
from tests.test_outbox_rollout import OLD_RELEASE_BLOCKS

DONE_AT = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def sample() -> Card:
    return Card.of(
        Section("*Mitigation proposed* by <@U0ALICE>", marker="head"),
        Note("Expires soon"),
        Buttons(
            (Button("Confirm", "confirm", "42", primary=True), Button("Cancel", "cancel", "42")),
            marker="mitigation:42",
        ),
        Checkboxes(
            "checklist:0",
            tuple(Choice(f"k{i}", f"item {i}", i == 3, "U0BOB", DONE_AT) for i in range(23)),
            marker="checklist:0",
        ),
    )


def test_a_card_survives_the_outbox_as_json() -> None:
    card = sample()
    assert Card.from_json(card.to_json()) == card


def test_the_text_is_the_paragraphs_only_and_cut_inside_no_markup() -> None:
    assert blockkit.message(sample())["text"] == "*Mitigation proposed* by <@U0ALICE>"
    long = Card.of(Section("x" * 2000), Section("y" * 1990 + "<@U0BOB> &amp;" * 5))
    text = blockkit.message(long)["text"]
    assert len(text) <= 4000 and text.endswith("…")
    body = text[:-1]
    assert body.count("<") == body.count(">") and body.count("&") == body.count(";")


def test_rendering_keeps_markers_splits_long_checklists_and_stays_in_limits() -> None:
    message = blockkit.message(sample())
    check_message(**message)  # raises on any Block Kit violation
    blocks = message["blocks"]
    assert blocks[0]["block_id"] == "head"
    assert blocks[1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "Expires soon"}],
    }
    confirm, cancel = blocks[2]["elements"]
    assert (confirm["action_id"], confirm["value"], confirm["style"]) == (
        "confirm",
        "42",
        "primary",
    )
    assert "style" not in cancel
    boxes = [b for b in blocks if b["type"] == "actions" and b is not blocks[2]]
    assert [len(b["elements"][0]["options"]) for b in boxes] == [10, 10, 3]
    assert [b["block_id"] for b in boxes] == ["checklist:0:0", "checklist:0:10", "checklist:0:20"]
    [ticked] = boxes[0]["elements"][0]["initial_options"]
    assert ticked["value"] == "k3" and ticked["description"]["text"] == "<@U0BOB> · 09:15 UTC"


def test_a_section_over_slacks_limit_is_cut_between_entities() -> None:
    [block] = blockkit.blocks(Card.text("&amp;" * 1000))
    text = block["text"]["text"]
    assert len(text) <= 3000 and text.endswith("&amp;…")


async def test_a_card_cut_to_slacks_limit_notifies_nobody_it_does_not_show() -> None:
    """The notification is the sections as shown: a mention past a section's cut (the
    checklist's intro under a long description, say) pings nobody."""
    workspace = Workspace()
    channel = workspace.add_channel("incident-x", members=[workspace.bot_user_id])
    intro = "*P2 · Checkout down*\n> " + "word " * 600 + "<@U0LATE>"
    card = Card.of(Section(intro, marker="checklist-intro"), Section("*Triage* (0/3)"))
    async with SlackEmulator(bot_token="xoxb-test-token", workspace=workspace) as emulator:
        gateway = SlackGateway(make_client("xoxb-test-token", emulator.api_url))
        await gateway.post(channel.id, card)
    [message] = workspace.messages(channel.id)
    shown = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")
    pings = re.compile(r"<[@!#][^>]*>")
    assert pings.findall(message["text"]) == pings.findall(shown) == []
    assert message["text"].endswith("*Triage* (0/3)")


def test_rows_queued_as_blocks_before_the_deploy_become_cards(database_url: str) -> None:
    """Only rows still to be sent are rewritten (start-up migrates under a lock, and the
    outbox keeps every message ever sent), and a downgrade gives the queued ones back."""
    engine = make_engine(database_url)
    upgrade(engine, "0010_room")
    old_blocks = OLD_RELEASE_BLOCKS  # a status-page preview, as the old release queued it
    now = datetime(2026, 11, 30, tzinfo=UTC)
    # 0011 changes data only, so today's models still fit the 0010 schema.
    with Session(engine) as session, session.begin():
        incident = Incident(
            request_key="k", title="t", severity="P2", declared_by="U0ALICE", declared_at=now
        )
        session.add(incident)
        session.flush()
        for delivered_at in (None, now):
            session.add(
                OutboxMessage(
                    incident_id=incident.id,
                    kind="post_blocks",
                    destination="slack:C1",
                    channel="C1",
                    text=json.dumps(old_blocks),
                    created_at=now,
                    next_attempt_at=now,
                    attempts=0,
                    delivered_at=delivered_at,
                )
            )
    select = sa.text("SELECT kind, text FROM outbox ORDER BY id")
    upgrade(engine)
    with engine.connect() as conn:
        (kind, text), sent = conn.execute(select).all()
    assert kind == "card"
    assert blockkit.blocks(Card.from_json(text)) == old_blocks
    assert tuple(sent) == ("post_blocks", json.dumps(old_blocks))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010_room")
    with engine.connect() as conn:
        rows = conn.execute(select).all()
    assert [(kind, json.loads(text)) for kind, text in rows] == [("post_blocks", old_blocks)] * 2
    engine.dispose()


def test_the_retry_marker_lands_on_a_block_of_its_own() -> None:
    boxes = Checkboxes("c", (Choice("k", "item"),), marker="c")
    card = Card.of(boxes, Section("after the boxes")).marked("fb-out-9")
    ids = [b.get("block_id") for b in blockkit.blocks(card)]
    assert "fb-out-9" in ids and ids[0] == "c:0"
