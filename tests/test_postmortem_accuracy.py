"""The post-mortem tells the truth: acknowledgement, threads on Firebreak's
messages, pins on them, who joined (issue 20, items 2, 5, 6 and 8).

The same scripted set-up as tests/test_postmortem.py: the real app over
signed HTTP, the Slack emulator, a fixed clock, SQLite and Postgres.
"""

from __future__ import annotations

import json
from typing import Any

from emulator.models import Channel
from tests import test_postmortem
from tests.harness import ALICE, BOB, CAROL
from tests.test_postmortem import Scene

scene = test_postmortem.scene  # the same fixture: a scripted incident on a fixed clock
DANA = "U0DANA"


async def closed_document(scene: Scene, channel: Channel) -> tuple[dict[str, Any], str]:
    outcome = await scene.close(channel)
    assert "Closed" in outcome.text, outcome.text
    markdown = (scene.folder / f"postmortem-{channel.name}.md").read_text(encoding="utf-8")
    document = json.loads((scene.folder / f"postmortem-{channel.name}.json").read_text())
    return document, markdown


def firebreak_message(scene: Scene, channel: Channel, contains: str) -> str:
    """The ts of Firebreak's message in the channel that contains `contains`."""
    bot = scene.slack.workspace.bot_user_id
    [ts] = [
        m["ts"]
        for m in scene.slack.workspace.messages(channel.id)
        if m.get("user") == bot and contains in str(m.get("text"))
    ]
    return str(ts)


async def test_a_declarer_acting_alone_acknowledged_it_by_declaring(scene: Scene) -> None:
    """No commander, only status changes: acknowledged at the declaration, not "not recorded"."""
    await scene.slack.command("declare P2 checkout errors", user=ALICE)
    channel = scene.slack.only_incident_channel()
    for command in ("status identified", "status monitoring", "resolve rolled back"):
        await scene.command(command, ALICE, channel)
    document, markdown = await closed_document(scene, channel)

    assert (
        document["times"]["acknowledged"] == "2024-03-01T23:30:00Z" == document["times"]["declared"]
    )
    assert document["metrics"]["time_to_acknowledge"] == 0.0
    assert "| Acknowledged | 2024-03-01 23:30 UTC · target within 1 hour: met |" in markdown
    assert "| Time to acknowledge | under a second | acknowledged, as defined above" in markdown
    # The definition is stated where the number is.
    assert "**Acknowledged** is when a person is known to be on the incident" in markdown


async def test_acknowledged_is_not_later_than_resolution(scene: Scene) -> None:
    await scene.slack.command("declare P2 checkout errors", user=ALICE)
    channel = scene.slack.only_incident_channel()
    scene.clock.advance(seconds=2)
    await scene.slack.command("status resolved", user=BOB, channel=channel.id)
    scene.clock.advance(seconds=4)
    await scene.slack.command("update all clear", user=BOB, channel=channel.id)
    # The summary given after resolving is recorded; it does not move the resolution time.
    await scene.slack.command("resolve rolled back", user=BOB, channel=channel.id)
    document, _ = await closed_document(scene, channel)
    times = document["times"]
    assert times["acknowledged"] <= times["resolved"] == "2024-03-01T23:30:02Z"


async def test_an_update_with_replies_is_one_entry_with_its_thread(scene: Scene) -> None:
    await scene.slack.command("declare P2 checkout errors", user=ALICE)
    channel = scene.slack.only_incident_channel()
    await scene.command("update Rolled back; watching the error rate", BOB, channel)
    update = firebreak_message(scene, channel, "watching the error rate")
    scene.say(channel, CAROL, "Error rate is down to 0.1%", thread=update)
    await scene.command("note The deploy skipped canary", CAROL, channel)
    note = firebreak_message(scene, channel, "skipped canary")
    scene.say(channel, ALICE, "Filed a ticket for the canary gate", thread=note)
    await scene.command("resolve rolled back", BOB, channel)
    document, markdown = await closed_document(scene, channel)

    entries = {e["type"]: e for e in document["timeline"] if e["kind"] == "event"}
    assert [r["text"] for r in entries["update"]["replies"]] == ["Error rate is down to 0.1%"]
    assert [r["who"] for r in entries["note"]["replies"]] == ["Alice Example"]
    # Shown once: the event with its thread, not also Firebreak's copy of it.
    assert not [e for e in document["timeline"] if e.get("firebreak")]
    assert "Firebreak:" not in markdown
    assert markdown.count("watching the error rate") == 1
    assert (
        "**Update** · Rolled back; watching the error rate _(Bob Example)_\n"
        "  - 23:32 — Carol Example: Error rate is down to 0.1%\n"
    ) in markdown


async def test_a_pin_or_pushpin_on_a_firebreak_message_is_a_key_moment(scene: Scene) -> None:
    workspace = scene.slack.workspace
    await scene.slack.command("declare P2 checkout errors", user=ALICE)
    channel = scene.slack.only_incident_channel()
    await scene.command("update Rolled back to v1.4.2", BOB, channel)
    workspace.add_reaction(
        channel.id, firebreak_message(scene, channel, "Rolled back"), "pushpin", ALICE
    )
    await scene.command("severity P1", BOB, channel)  # its message is pinned by a person
    severity = firebreak_message(scene, channel, "changed the severity")
    channel.pins.append(
        {"type": "message", "channel": channel.id, "created": 0, "created_by": CAROL,
         "message": channel.messages[severity], "ts": severity}
    )  # fmt: skip
    await scene.command("resolve rolled back", BOB, channel)
    document, markdown = await closed_document(scene, channel)

    moments = document["key_moments"]
    assert len(moments) == 2 and moments[0]["text"] == "Rolled back to v1.4.2"
    assert "P1" in moments[1]["text"] and moments[1]["link"]
    assert "📌 **Key moment** · **Update** · Rolled back to v1.4.2 _(Bob Example)_" in markdown
    # The checklist, pinned by Firebreak itself, is still folded away.
    assert document["folded"]["firebreak_messages"] >= 1
    assert not any("Checklist for" in m["text"] for m in moments)


async def test_joins_are_named(scene: Scene) -> None:
    workspace = scene.slack.workspace
    workspace.add_user(DANA, "dana", real_name="Dana Example")
    await scene.slack.command("declare P2 checkout errors", user=ALICE)
    channel = scene.slack.only_incident_channel()
    channel.members.append(DANA)
    workspace.system_message(channel, "channel_join", DANA, f"<@{DANA}> has joined the channel")
    await scene.command("resolve rolled back", ALICE, channel)
    document, markdown = await closed_document(scene, channel)
    assert document["joined_without_posting"] == ["Dana Example"]
    assert "- Joined without posting: Dana Example" in markdown and DANA not in markdown
