"""Assigning roles: only people the workspace knows, active and not bots (users.info).

End to end: signed commands into the app, `users.info` answered by the emulator
as Slack answers it (bots flagged, deactivated accounts marked deleted, unknown
IDs `user_not_found`).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from emulator.models import Channel
from storage.models import Event, Incident, OutboxMessage
from tests.harness import ALICE, BOB, Harness

DEPLOYBOT, DANA = "U0DEPLOYBOT", "U0DANA"


@pytest.fixture
async def channel(slack: Harness) -> Channel:
    slack.workspace.add_user(DEPLOYBOT, "deploybot", is_bot=True)
    slack.workspace.add_user(DANA, "dana", real_name="Dana Example")
    slack.workspace.deactivate_user(DANA)
    await slack.command("declare P1 checkout errors")
    return slack.only_incident_channel()


async def role_events(slack: Harness) -> list[Event]:
    query = select(Event).where(Event.type == "role")
    return await slack.app.services.db.run(lambda s: list(s.scalars(query)))


async def invites(slack: Harness) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.kind == "invite")
    return await slack.app.services.db.run(lambda s: list(s.scalars(query)))


@pytest.mark.parametrize(
    ("mention", "answer"),
    [
        ("<@UBOT|firebreak>", "Firebreak can't be the commander: roles go to people"),
        (f"<@{DEPLOYBOT}|deploybot>", f"<@{DEPLOYBOT}> is a bot, so it can't be the commander"),
        (
            f"<@{DANA}|dana>",
            "Dana Example's account is deactivated, so they can't be the commander",
        ),
        ("<@U0NOBODY>", "This workspace has no user `U0NOBODY`, so they can't be the commander"),
    ],
)
async def test_a_bot_a_deactivated_or_an_unknown_user_is_refused(
    slack: Harness, channel: Channel, mention: str, answer: str
) -> None:
    calls_before = slack.workspace.count("users.info")
    await slack.command(f"assign commander {mention}", channel=channel.id)
    [reply] = slack.ephemeral_texts(ALICE)[-1:]
    assert reply.startswith(answer) and "/incident assign commander @alice" in reply, reply
    assert await role_events(slack) == [] and await invites(slack) == []
    if mention != "<@UBOT|firebreak>":  # the bot's own ID is known without asking
        assert slack.workspace.count("users.info", ok=None) == calls_before + 1
    # Nothing was left to retry: the next assignment is answered cleanly, and lands.
    invites_before = slack.workspace.count("conversations.invite", ok=None)
    await slack.command(f"commander <@{BOB}|bob>", channel=channel.id)
    assert slack.ephemeral_texts(ALICE)[-1] == reply  # no new answer: it just worked
    assert slack.workspace.count("conversations.invite", ok=None) == invites_before + 1
    assert BOB in channel.members
    assert channel.topic["value"].startswith(f"P1 · investigating · IC <@{BOB}>")
    [event] = await role_events(slack)
    assert event.payload["user"] == BOB


async def test_when_slack_cannot_say_who_it_is_nothing_is_assigned(
    slack: Harness, channel: Channel
) -> None:
    slack.emulator.inject_fault("users.info", error="fatal_error")
    await slack.command(f"commander <@{BOB}|bob>", channel=channel.id)
    assert slack.ephemeral_texts(ALICE)[-1] == (
        ":warning: Slack refused `users.info` (`fatal_error`). Try again in a moment."
    )
    assert await role_events(slack) == []


async def declare_with_commander(slack: Harness, commander: str) -> Incident:
    await slack.command("")
    [view] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(
        ALICE,
        view["id"],
        {
            "title": {"title": {"type": "plain_text_input", "value": "Checkout down"}},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P1"}}},
            "commander": {"commander": {"type": "users_select", "selected_user": commander}},
        },
    )
    await slack.settle()
    return await slack.app.services.db.run(lambda s: s.scalars(select(Incident)).one())


async def test_a_bot_picked_in_the_declare_form_is_not_made_commander(slack: Harness) -> None:
    slack.workspace.add_user(DEPLOYBOT, "deploybot", is_bot=True)
    incident = await declare_with_commander(slack, DEPLOYBOT)
    assert incident.role("commander") is None
    assert DEPLOYBOT not in slack.only_incident_channel().members
    replies = slack.ephemeral_texts(ALICE)
    assert any("Declared" in t for t in replies)  # the saga's answer
    # and the declare's own: why the commander was left out
    assert any(f"<@{DEPLOYBOT}> is a bot, so it can't be the commander" in t for t in replies)


async def test_the_declare_form_does_not_fail_when_slack_cannot_check_the_commander(
    slack: Harness,
) -> None:
    slack.emulator.inject_fault("users.info", error="fatal_error")
    incident = await declare_with_commander(slack, BOB)
    assert incident.role("commander") == BOB  # the picker offers only real users
    assert BOB in slack.only_incident_channel().members
