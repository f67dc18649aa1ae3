"""Private (security) incidents, end to end: the real Bolt app over signed HTTP, the
Slack emulator enforcing private-channel rules and the manifest's scopes.

Every path that writes to the broadcast channel is driven for a private incident
(declare, status, update, severity escalation, resolve, reopen, escalated reminders,
an undeliverable notice, the post-mortem, a follow-up), and the broadcast channel
must hold the one notice and nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot import commands as c
from bot.incidents import privacy
from bot.runbooks import Runbooks
from emulator.models import Channel
from storage.models import Event, Incident, OutboxMessage, Postmortem
from storage.outbox import enqueue
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak
from tests.test_paging import Rig as PagingRig
from tests.test_paging import rig  # noqa: F401  (the PagerDuty + Statuspage rig)
from tests.test_reminders import ManualClock

DAVE, ERIN = "U0DAVE", "U0ERIN"
SECURITY_GROUP = "S0SEC"
TITLE = "Suspicious logins on payments admin"
MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"


def manifest_scopes() -> frozenset[str]:
    """The bot scopes manifest.yml asks for: the emulator grants exactly these."""
    doc = yaml.safe_load(MANIFEST.read_text())
    return frozenset(doc["oauth_config"]["scopes"]["bot"])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def slack(database_url: str, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Harness]:
    targets = tmp_path / "targets.yml"
    targets.write_text(
        "services:\n  payments:\n    http: {health: 'http://127.0.0.1:9/health'}\n"
        f"security_responders: [{SECURITY_GROUP}, {ERIN}]\n"
    )
    async with running_firebreak(
        database_url,
        clock=clock,
        FIREBREAK_TARGETS=str(targets),
        FIREBREAK_POSTMORTEM_DIR=str(tmp_path / "postmortems"),
    ) as harness:
        await harness.app.scheduler.shutdown()
        harness.workspace.scopes = manifest_scopes()
        harness.workspace.add_user(DAVE, "dave", real_name="Dave Security")
        harness.workspace.add_user(ERIN, "erin", real_name="Erin Security")
        harness.workspace.add_usergroup(SECURITY_GROUP, "security", [DAVE])
        yield harness


async def incident(slack: Harness) -> Incident:
    return await slack.app.services.db.run(lambda s: s.scalars(select(Incident)).one())


async def events(slack: Harness, kind: str) -> list[Event]:
    return await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == kind).order_by(Event.id)))
    )


def broadcast(slack: Harness) -> list[str]:
    return slack.texts(slack.announce)


def leaks(slack: Harness) -> list[str]:
    """Broadcast messages that say anything of the incident beyond the notice."""
    return [
        t
        for t in broadcast(slack)
        if any(w in t for w in ("Suspicious", "payments", "P0", "P1", "esolved", "post-mortem"))
    ]


async def declare_private(slack: Harness, text: str = f"declare P1 --private {TITLE}") -> Channel:
    await slack.command(text)
    return slack.only_incident_channel()


# -- grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("declare P1 --private leaked key", c.Declare("P1", "leaked key", private=True)),
        ("declare --private P0 leaked key", c.Declare("P0", "leaked key", private=True)),
        ("declare --PRIVATE leaked key", c.Declare("P2", "leaked key", private=True)),
        ("declare P1 leaked --private key", c.Declare("P1", "leaked --private key")),
        ("declare P1 --private", c.OpenDeclareForm("P1", private=True)),
        ("declare P1 checkout down", c.Declare("P1", "checkout down")),
    ],
)
def test_the_private_flag(runbooks: Runbooks, text: str, expected: c.Command) -> None:
    assert c.parse(text, runbooks.severities) == expected


# -- declare ---------------------------------------------------------------------------


async def test_a_private_incident_is_set_up_privately(slack: Harness) -> None:
    channel = await declare_private(slack)
    assert channel.is_private
    assert "suspicious" not in channel.name and channel.name.endswith("-private-1")
    [create] = slack.workspace.calls("conversations.create", ok=True)
    assert create.args["is_private"] in (True, "true", "1")
    # The declarer and the security responders (the group expanded, and one user).
    assert {ALICE, DAVE, ERIN} <= set(channel.members)
    assert BOB not in channel.members and CAROL not in channel.members
    assert slack.workspace.count("usergroups.users.list") == 1
    # The broadcast channel: the notice, and not a word more.
    assert broadcast(slack) == [
        f":lock: A private incident was declared; ask the commander (<@{ALICE}>) for access."
    ]
    row = await incident(slack)
    assert row.private and row.setup_complete
    [declared] = await events(slack, "declared")
    assert declared.payload["private"] is True
    assert any("Declared *P1* incident" in t for t in slack.ephemeral_texts(ALICE))


async def test_the_modal_checkbox_makes_it_private(slack: Harness) -> None:
    await slack.command("declare P1 --private")
    [view] = slack.workspace.open_views(ALICE)
    [box] = [b for b in view["blocks"] if b["block_id"] == "private"]
    assert box["element"]["initial_options"][0]["value"] == "private"  # `--private` ticks it
    await slack.driver.submit_view(
        ALICE,
        view["id"],
        {
            "title": {"title": {"type": "plain_text_input", "value": TITLE}},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P1"}}},
            "commander": {"commander": {"type": "users_select", "selected_user": BOB}},
            "private": {
                "private": {"type": "checkboxes", "selected_options": [{"value": "private"}]}
            },
        },
    )
    await slack.settle()
    channel = slack.only_incident_channel()
    assert channel.is_private and BOB in channel.members
    assert broadcast(slack) == [
        f":lock: A private incident was declared; ask the commander (<@{BOB}>) for access."
    ]


async def test_an_unticked_checkbox_declares_a_public_incident(slack: Harness) -> None:
    await slack.command("")
    [view] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(ALICE, view["id"], {"title": "checkout down", "severity": "P1"})
    await slack.settle()
    assert not slack.only_incident_channel().is_private
    assert any("checkout down" in t for t in broadcast(slack))


async def test_a_private_channel_made_before_a_crash_is_adopted(slack: Harness) -> None:
    """conversations.create answered `name_taken` for a channel of ours the last try
    made: it is found among the bot's private channels (groups:read) and adopted."""
    bot = slack.workspace.bot_user_id
    made = slack.workspace.add_channel(
        "incident-20261123-private-1", members=[bot], is_private=True, creator=bot
    )
    channel = await declare_private(slack)
    assert channel.id == made.id and len(slack.incident_channels()) == 1
    listed = {c.args["types"] for c in slack.workspace.calls("conversations.list", ok=True)}
    assert "private_channel" in listed, listed
    assert ALICE in channel.members and (await incident(slack)).channel_id == made.id


async def test_without_the_groups_scopes_the_declare_says_so(slack: Harness) -> None:
    """Slack checks `groups:write` for a private channel: a manifest without it fails
    the declare with Slack's own error, and the incident is kept to be finished."""
    slack.workspace.scopes = manifest_scopes() - {"groups:write"}
    await slack.command(f"declare P1 --private {TITLE}")
    assert slack.incident_channels() == []
    assert "missing_scope" in slack.ephemeral_texts(ALICE)[-1]
    assert broadcast(slack) == []
    slack.workspace.scopes = manifest_scopes()
    await slack.app.services.incidents.resume_unfinished()
    assert slack.only_incident_channel().is_private


# -- every broadcast path --------------------------------------------------------------


async def test_nothing_else_reaches_the_broadcast_channel(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare_private(slack)
    here = channel.id
    await slack.command("status identified", channel=here)
    await slack.command("update Rotated the admin credentials", channel=here)
    await slack.command("severity P0", channel=here)  # an escalation is broadcast
    await slack.command("resolve Keys rotated, sessions revoked", channel=here)
    await slack.command("status monitoring", channel=here)  # a reopen is broadcast
    await slack.command("resolve", channel=here)
    await slack.command("close", channel=here)
    assert leaks(slack) == [] and len(broadcast(slack)) == 1
    texts = slack.texts(here)
    assert any("Rotated the admin credentials" in t for t in texts)
    assert any("Resolved" in t for t in texts)
    reply = slack.ephemeral_texts(ALICE)[-1]
    assert "kept out of #incidents (a private incident)" in reply, reply
    row = await slack.app.services.db.run(lambda s: s.scalars(select(Postmortem)).one())
    assert row.file_id and not row.announced_ts  # shared in the channel, not announced
    assert await events(slack, "broadcast_withheld") == []  # each path asked first


async def test_escalated_reminders_stay_in_the_channel(slack: Harness, clock: ManualClock) -> None:
    channel = await declare_private(slack)
    await slack.command(f"comms <@{DAVE}>", channel=channel.id)
    for _ in range(3):
        clock.advance(timedelta(minutes=16))
        assert await slack.app.services.reminders.send_due() == 1
        await slack.settle()
    nudges = [t for t in slack.texts(channel.id) if "a status update is due" in t]
    assert "a private incident, so not escalated to the broadcast channel" in nudges[-1]
    assert [e.payload["escalated"] for e in await events(slack, "nudge")][-1] is True
    assert leaks(slack) == [] and len(broadcast(slack)) == 1


async def test_an_archived_private_channel_is_not_named_in_the_broadcast_channel(
    slack: Harness,
) -> None:
    channel = await declare_private(slack)
    channel.archived = True
    await slack.command("note the attacker used a reused password", channel=channel.id)
    assert leaks(slack) == [] and len(broadcast(slack)) == 1
    [failure] = await events(slack, "delivery_failed")
    assert failure.payload["reason"] == "is_archived" and failure.payload["reported"] is False


async def test_a_private_follow_up_is_not_announced_in_the_earlier_channel(
    slack: Harness,
) -> None:
    await slack.command("declare P2 checkout errors")
    earlier = slack.only_incident_channel()
    await slack.command("resolve fixed", channel=earlier.id)
    await slack.command("close", channel=earlier.id)
    before = slack.texts(earlier.id)
    await slack.command(f"declare P1 --private {TITLE}", channel=earlier.id)
    [follow_up] = [ch for ch in slack.incident_channels() if ch.is_private]
    assert slack.texts(earlier.id) == before  # nothing of the private one there
    assert any("Follow-up of incident #1" in t for t in slack.texts(follow_up.id))
    assert not any(TITLE in t for t in broadcast(slack))


async def test_a_public_follow_up_of_a_private_incident_omits_its_title(
    slack: Harness,
) -> None:
    earlier = await declare_private(slack)
    await slack.command("resolve contained", channel=earlier.id)
    await slack.command("close", channel=earlier.id)
    await slack.command("declare P2 harden the admin login", channel=earlier.id)
    [public] = [ch for ch in slack.incident_channels() if not ch.is_private]
    [link] = [t for t in slack.texts(public.id) if "Follow-up of incident #1" in t]
    assert TITLE not in link
    assert not any(TITLE in t for t in broadcast(slack))


async def test_pagerduty_is_paged_without_the_title(rig: PagingRig) -> None:  # noqa: F811
    channel = await rig.declare("P1 --private checkout admin credentials leaked")
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PCHKOUT"  # the service's on-call is still paged
    assert paged["title"] == "[P1] Private incident #1: details in its Slack channel"
    assert "leaked" not in json.dumps(rig.pd.state.incidents)
    assert any("Paged *checkout* on PagerDuty" in t for t in rig.slack.texts(channel))
    await rig.slack.command("page payments rotate the payments keys now", channel=channel)
    typed = [i for i in rig.pd.state.incidents.values() if i["service"]["id"] == "PPAYMNT"]
    assert typed[0]["body"]["details"] == "rotate the payments keys now"


async def test_the_incident_list_names_no_private_title(slack: Harness) -> None:
    await declare_private(slack)
    await slack.command("declare P2 checkout slow", user=BOB)
    await slack.command("list", user=CAROL)
    listed = slack.ephemeral_texts(CAROL)[-1]
    assert "checkout slow" in listed and TITLE not in listed
    assert f":lock: A private incident · ask the commander (<@{ALICE}>) for access" in listed


async def test_the_outbox_withholds_what_a_path_forgot(slack: Harness) -> None:
    """The backstop: a broadcast queued by a path that did not ask `privacy.broadcasts`
    (simulated by queueing one directly) is given up, logged, and never sent; the
    requester is not told of a failure."""
    await declare_private(slack)
    row = await incident(slack)

    def forget(session: Any) -> int:
        message = enqueue(
            session,
            row.id,
            "post",
            slack.app.services.clock.now(),
            channel="incidents",
            text=f"*{row.severity}* {row.title}",
        )
        session.flush()
        return message.id

    row_id = await slack.app.services.db.run(forget)
    report = await slack.app.services.outbox.deliver(row.id)
    assert report.stalled == set()  # given up, not left to retry
    assert leaks(slack) == [] and len(broadcast(slack)) == 1
    [withheld] = await events(slack, "broadcast_withheld")
    assert withheld.payload == {"channel": "incidents", "kind": "post"}
    message = await slack.app.services.db.run(lambda s: s.get(OutboxMessage, row_id))
    assert message.last_error == privacy.WITHHELD and message.delivered_at is None
    assert await slack.app.services.outbox.settle(row.id, [row_id]) == ""


# -- the emulator's private channels ---------------------------------------------------


def test_the_emulator_keeps_private_channels_private() -> None:
    from emulator import Workspace

    ws = Workspace()
    ws.add_user(ALICE, "alice")
    secret = ws.add_channel("secret", members=[ALICE], is_private=True)  # bot not a member
    for method, args in (
        ("conversations.info", {"channel": secret.id}),
        ("conversations.history", {"channel": secret.id}),
        ("chat.postMessage", {"channel": secret.id, "text": "hi"}),
        ("chat.postMessage", {"channel": "#secret", "text": "hi"}),
    ):
        assert ws.call(method, args)["error"] == "channel_not_found", method
    listed = ws.call("conversations.list", {"types": "public_channel,private_channel"})
    assert [ch["name"] for ch in listed["channels"]] == []
    assert ws.call("conversations.join", {"channel": secret.id})["error"] == "channel_not_found"
    assert ws.call("conversations.create", {"name": "secret", "is_private": True})["error"] == (
        "name_taken"
    )

    ws.scopes = frozenset({"channels:manage", "channels:read", "channels:history"})
    refused = ws.call("conversations.create", {"name": "ir-1", "is_private": True})
    assert refused["error"] == "missing_scope" and refused["needed"] == "groups:write"
    ws.scopes = None
    mine = ws.call("conversations.create", {"name": "ir-1", "is_private": True})["channel"]
    assert mine["is_private"] is True
    assert ws.call("conversations.join", {"channel": mine["id"]})["error"] == (
        "method_not_supported_for_channel_type"  # only an invitation lets anyone in
    )
    ws.scopes = frozenset({"groups:write", "channels:read"})
    assert ws.call("conversations.invite", {"channel": mine["id"], "users": ALICE})["ok"]
    history = ws.call("conversations.history", {"channel": mine["id"]})
    assert history["error"] == "missing_scope" and history["needed"] == "groups:history"
    private_list = ws.call("conversations.list", {"types": "private_channel"})
    assert private_list["needed"] == "groups:read"
