"""A checklist click changes only what its sender changed (issue 20, item 1).

Slack sends a checkboxes click with the group's whole new selection and the
message as the sender saw it, which may be older than someone else's tick.
Two replicas racing is in tests/test_replicas_truth.py; here one app, a
stale screen, on SQLite and Postgres.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from emulator import payloads
from emulator.models import Channel
from storage.models import ChecklistItem, Event
from tests.harness import ALICE, BOB, CAROL, Harness

CHECKLIST = "checklist:0:0"


def click(slack: Harness, user: str, channel: Channel, selected: list[str]) -> dict[str, Any]:
    """The click `user` makes now, leaving `selected` ticked on the screen they have now."""
    ts = channel.pins[0]["ts"]
    return payloads.block_actions(
        slack.workspace, user, channel.id, ts, {"checkboxes"}, CHECKLIST, selected=selected
    )


async def send(slack: Harness, payload: dict[str, Any]) -> None:
    await slack.driver.post(urlencode({"payload": json.dumps(payload)}))
    await slack.settle()


async def state(slack: Harness) -> tuple[set[str], list[tuple[str, str, str]]]:
    def read(session):  # type: ignore[no-untyped-def]
        items = session.scalars(select(ChecklistItem).where(ChecklistItem.checked))
        events = session.scalars(select(Event).where(Event.type.like("checklist_%")))
        return (
            {i.key for i in items},
            [(e.type.removeprefix("checklist_"), e.payload["key"], e.actor) for e in events],
        )

    return await slack.app.services.db.run(read)


async def test_a_click_from_a_stale_screen_changes_only_its_own_box(slack: Harness) -> None:
    await slack.command("declare P1 checkout down")
    channel = slack.only_incident_channel()
    # Bob's screen still shows nothing ticked when Alice's tick lands; then he ticks his box.
    bobs_click = click(slack, BOB, channel, ["triage.channel"])
    await send(slack, click(slack, ALICE, channel, ["triage.acknowledge"]))
    await send(slack, bobs_click)
    assert await state(slack) == (
        {"triage.acknowledge", "triage.channel"},
        [("checked", "triage.acknowledge", ALICE), ("checked", "triage.channel", BOB)],
    )

    # Carol and Alice both see the two boxes ticked. Carol unticks Alice's box; Alice,
    # her screen not yet updated, unticks Bob's. Alice's click still carries her own
    # box as selected, which must not tick it again in her name.
    carols_click = click(slack, CAROL, channel, ["triage.channel"])
    alices_click = click(slack, ALICE, channel, ["triage.acknowledge"])
    await send(slack, carols_click)
    await send(slack, alices_click)
    ticked, log = await state(slack)
    assert ticked == set()
    assert log[2:] == [
        ("unchecked", "triage.acknowledge", CAROL),
        ("unchecked", "triage.channel", ALICE),
    ]
    message = slack.workspace.channels[channel.id].messages[channel.pins[0]["ts"]]
    assert "initial_options" not in message["blocks"][2]["elements"][0]  # shown as stored
