"""Paging end to end: the real app over HTTP, the Slack emulator, and the PagerDuty and
Statuspage fakes on loopback; nothing of ours is mocked. The clock is an OffsetClock so
a retry's backoff passes without sleeping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from bot.clock import OffsetClock
from bot.mrkdwn import from_slack
from bot.paging.delivery import PAGE, enqueue_call
from bot.paging.service import public_plain
from emulator.pagerduty import PagerDutyEmulator, sign
from emulator.statuspage import StatuspageEmulator
from storage import outbox as outbox_store
from storage.models import Event, Incident, OutboxMessage
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak

SECRET = "webhook-secret"


@dataclass
class Rig:
    slack: Harness
    pd: PagerDutyEmulator
    sp: StatuspageEmulator
    clock: OffsetClock
    base_url: str

    async def declare(self, text: str) -> str:
        await self.slack.command(f"declare {text}")
        return self.slack.incident_channels()[-1].id

    async def events(self, prefix: str) -> list[Event]:
        def query(session: Any) -> list[Event]:
            rows = session.scalars(select(Event).order_by(Event.id))
            return [e for e in rows if e.type.startswith(prefix)]

        return list(await self.slack.app.services.db.run(query))

    async def incident_id(self) -> int:
        return int(await self.slack.app.services.db.run(lambda s: s.scalar(select(Incident.id))))

    async def sweep_later(self, delta: timedelta = timedelta(minutes=6)) -> None:
        self.clock.advance(delta)
        await self.slack.app.services.sweep()
        await self.slack.settle()

    async def post_webhook(self, body: bytes, signature: str) -> int:
        headers = {"X-PagerDuty-Signature": signature, "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.base_url}/alerts/pagerduty", data=body, headers=headers) as r,
        ):
            status = r.status
        await self.slack.settle()
        return status


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    clock = OffsetClock()
    async with (
        PagerDutyEmulator() as pd,
        StatuspageEmulator() as sp,
        running_firebreak(
            database_url,
            clock=clock,
            PAGERDUTY_API_TOKEN="pd-test-token",
            PAGERDUTY_FROM_EMAIL="alice@example.com",
            PAGERDUTY_WEBHOOK_SECRET=SECRET,
            PAGERDUTY_API_URL=pd.api_url,
            STATUSPAGE_API_KEY="sp-test-key",
            STATUSPAGE_PAGE_ID="fbpage01",
            STATUSPAGE_API_URL=sp.api_url,
        ) as slack,
    ):
        base_url = slack.driver.app_url.removesuffix("/slack/events")
        pd.subscribe(f"{base_url}/alerts/pagerduty", SECRET)
        yield Rig(slack, pd, sp, clock, base_url)


async def test_declaring_at_a_paging_severity_pages_the_named_service_once(rig: Rig) -> None:
    channel = await rig.declare("P1 checkout API returning 502s")
    incident_id = await rig.incident_id()
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PCHKOUT"
    assert paged["incident_key"] == f"firebreak-{incident_id}"
    assert paged["title"] == "[P1] checkout API returning 502s"
    assert any(
        "Paged *checkout* on PagerDuty: Bob Example is on call" in t
        for t in rig.slack.texts(channel)
    )
    [event] = await rig.events("paging.paged")
    assert event.payload["pagerduty_incident"] == paged["id"]
    # Paging again by hand finds the open incident: nobody is paged twice.
    await rig.slack.command("page checkout still down", channel=channel)
    assert len(rig.pd.state.incidents) == 1
    assert any("*checkout* was already paged" in t for t in rig.slack.texts(channel))


async def test_a_severity_that_does_not_page_pages_nobody_until_raised(rig: Rig) -> None:
    channel = await rig.declare("P2 checkout slow for some users")
    assert rig.pd.state.incidents == {}
    assert await rig.events("paging.") == []
    await rig.slack.command("severity P0", channel=channel)
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PCHKOUT"
    await rig.slack.command("severity P1", channel=channel)
    await rig.slack.command("severity P0", channel=channel)
    assert len(rig.pd.state.incidents) == 1  # paged once, not per raise
    assert len(await rig.events("paging.requested")) == 1


async def test_page_on_demand_and_an_unknown_service(rig: Rig) -> None:
    channel = await rig.declare("P2 slow search")
    await rig.slack.command("page payments card payments failing", channel=channel)
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PPAYMNT"
    assert paged["body"]["details"] == "card payments failing"
    await rig.slack.command("page <b>nope</b>", channel=channel)
    assert "No PagerDuty service is configured for `<b>nope</b>`" not in " ".join(
        rig.slack.ephemeral_texts()
    )
    assert any("No PagerDuty service is configured" in t for t in rig.slack.ephemeral_texts())
    await rig.slack.command("page payments call <@U0BOB>", channel=channel)
    assert any("write names instead of @mentions" in t for t in rig.slack.ephemeral_texts())


async def test_pagerduty_down_the_page_is_queued_reported_and_sent_later(rig: Rig) -> None:
    rig.pd.fail_next(1, status=503)  # the look-up before the page fails
    channel = await rig.declare("P0 checkout down everywhere")
    assert rig.pd.state.incidents == {}
    said = " ".join(rig.slack.texts(channel))
    assert "PagerDuty did not answer (`http_503`): the page for *checkout* is queued" in said
    await rig.sweep_later()
    assert len(rig.pd.state.incidents) == 1
    assert any("Paged *checkout*" in t for t in rig.slack.texts(channel))
    # Told once, not once per retry.
    assert " ".join(rig.slack.texts(channel)).count("did not answer") == 1


async def test_one_delivery_sends_a_page_beside_a_message_and_then_the_page_report(
    rig: Rig,
) -> None:
    """A page and a Slack message queued together for one incident: a single `deliver`
    sends both (the page's destination and the channel side by side) and then the
    message reporting the page, which names whom PagerDuty's answer says is on call."""
    await rig.slack.app.scheduler.shutdown()  # no sweep delivers any of it in between
    channel = await rig.declare("P2 checkout slow")  # P2 pages nobody by itself
    incident_id = await rig.incident_id()
    services = rig.slack.app.services
    [target] = services.paging.services_named("checkout")
    assert target.pagerduty is not None

    def queue(session: Any) -> tuple[int, int]:
        incident = session.get(Incident, incident_id)
        now = rig.clock.now()
        page = enqueue_call(
            session,
            incident,
            PAGE,
            now,
            service=target.name,
            service_id=target.pagerduty.service_id,
            escalation_policy_id=target.pagerduty.escalation_policy_id,
            title="[P2] checkout slow",
            details="checkout slow",
            actor=ALICE,
        )
        note = outbox_store.enqueue(
            session, incident_id, "post", now, channel=channel, text="queued with the page"
        )
        session.flush()
        return page.id, note.id

    page_row, note_row = await services.db.run(queue)
    assert rig.pd.state.incidents == {}
    report = await services.outbox.deliver(incident_id)
    assert (report.delivered, report.stalled) == (3, set())  # page, message, page's report
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PCHKOUT"
    *_, note, page_report = rig.slack.texts(channel)
    assert note == "queued with the page"
    assert "Paged *checkout* on PagerDuty: Bob Example is on call" in page_report

    def outbox(session: Any) -> list[OutboxMessage]:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    rows = await services.db.run(outbox)
    assert all(r.delivered_at is not None for r in rows if r.failed_at is None)
    [reported] = [r for r in rows if "Paged *checkout*" in r.text]
    assert page_row < reported.id and note_row < reported.id  # queued once the page went


async def test_an_acknowledgement_is_recorded_and_the_on_call_becomes_commander(rig: Rig) -> None:
    channel = await rig.declare("P1 checkout API returning 502s")
    [paged] = rig.pd.state.incidents.values()
    assert await rig.pd.acknowledge(paged["id"], "PBOB001") == 202
    await rig.slack.settle()
    [ack] = await rig.events("paging.acknowledged")
    assert ack.actor == BOB and ack.payload["by"] == "Bob Example"
    incident = await rig.slack.app.services.db.run(lambda s: s.scalar(select(Incident)))
    assert incident.role("commander") == BOB
    assert any("Bob Example acknowledged the page" in t for t in rig.slack.texts(channel))
    assert BOB in rig.slack.workspace.channels[channel].members
    # The same webhook delivered again changes nothing.
    event = rig.pd.state.webhook_event(paged, "incident.acknowledged", "PBOB001")
    body = json.dumps(event).encode()
    assert await rig.post_webhook(body, sign(SECRET, body)) == 202
    assert await rig.post_webhook(body, sign(SECRET, body)) == 202
    assert len(await rig.events("paging.acknowledged")) == 2  # two distinct event IDs


async def test_a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(rig: Rig) -> None:
    await rig.declare("P1 checkout API returning 502s")
    [paged] = rig.pd.state.incidents.values()
    event = rig.pd.state.webhook_event(paged, "incident.acknowledged", "PBOB001")
    body = json.dumps(event).encode()
    assert await rig.post_webhook(body, sign("wrong", body)) == 401
    assert await rig.post_webhook(body, "") == 401
    assert await rig.post_webhook(b"{not json", sign(SECRET, b"{not json")) == 400
    assert await rig.events("paging.acknowledged") == []


async def test_resolving_either_side_reaches_the_other(rig: Rig) -> None:
    channel = await rig.declare("P1 checkout API returning 502s")
    [paged] = rig.pd.state.incidents.values()
    await rig.slack.command("resolve rolled back", channel=channel)
    assert paged["status"] == "resolved"
    assert [e.payload["pagerduty_incidents"] for e in await rig.events("paging.resolve_sent")] == [
        [paged["id"]]
    ]
    # Resolved in PagerDuty while Firebreak's incident is open: said in the channel.
    second = await rig.declare("P0 payments failing")
    [other] = [i for i in rig.pd.state.incidents.values() if i["id"] != paged["id"]]
    await rig.pd.resolve(other["id"], "PCAROL1")
    await rig.slack.settle()
    assert any(
        "PagerDuty incident was resolved by Carol Example" in t for t in rig.slack.texts(second)
    )
    assert len(await rig.events("paging.resolved")) >= 1


async def test_oncall_says_who_and_invites_the_first_level(rig: Rig) -> None:
    channel = await rig.declare("P2 checkout slow")
    assert BOB not in rig.slack.workspace.channels[channel].members
    await rig.slack.command("oncall checkout", channel=channel)
    said = rig.slack.ephemeral_texts()[-1]
    assert "Bob Example (level 1)" in said and "Carol Example (level 2)" in said
    assert BOB in rig.slack.workspace.channels[channel].members
    assert CAROL not in rig.slack.workspace.channels[channel].members
    [invited] = await rig.events("paging.oncall_invited")
    assert invited.payload["users"] == [BOB]


async def publish_preview(rig: Rig, channel: str, user: str) -> None:
    message = next(
        m
        for m in reversed(rig.slack.workspace.messages(channel))
        if "Status page preview" in str(m.get("text"))
    )
    await rig.slack.driver.click_button(user, channel, message["ts"], "statuspage_publish")
    await rig.slack.settle()


async def test_statuspage_publish_needs_commander_or_comms_and_then_goes_out(rig: Rig) -> None:
    channel = await rig.declare("P1 checkout API returning 502s")
    await rig.slack.command(f"lead <@{CAROL}>", channel=channel)  # invited; not a publisher
    await rig.slack.command("statuspage investigating", user=CAROL, channel=channel)
    preview = " ".join(rig.slack.texts(channel))
    assert "We are investigating reports of problems with Checkout." in preview
    await publish_preview(rig, channel, CAROL)
    assert rig.sp.state.incidents == {}
    refusals = rig.slack.ephemeral_texts(CAROL)
    assert any("Only the commander or the comms lead" in t for t in refusals)
    await rig.slack.command(f"assign comms <@{CAROL}>", channel=channel)
    await publish_preview(rig, channel, CAROL)
    [public] = rig.sp.state.incidents.values()
    assert public["name"] == "checkout API returning 502s"
    assert rig.sp.state.components["cmpchk01"]["status"] == "partial_outage"
    [published] = await rig.events("statuspage.published")
    assert published.actor == CAROL
    # Later publishes add updates; resolving offers the resolved one.
    await rig.slack.command(
        "statuspage identified Bad deploy found; rolling back.", channel=channel
    )
    await publish_preview(rig, channel, ALICE)  # not commander yet either
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel)
    await publish_preview(rig, channel, ALICE)
    assert [u["status"] for u in public["incident_updates"]] == ["identified", "investigating"]
    await rig.slack.command("resolve rolled back", channel=channel)
    # Resolving posts the resolved update's preview itself, with Publish and Cancel;
    # nothing reaches customers until someone publishes it.
    drafts = await rig.events("statuspage.drafted")
    assert drafts[-1].payload["status"] == "resolved" and public["status"] == "identified"
    await publish_preview(rig, channel, ALICE)
    assert public["status"] == "resolved"
    assert rig.sp.state.components["cmpchk01"]["status"] == "operational"
    assert len(rig.sp.state.incidents) == 1
    # The post-mortem lists every published update, with its time and author.
    postmortems = rig.slack.app.services.postmortems
    markdown = await postmortems.render(str(await rig.incident_id()), "md")
    public = markdown.split("## Public communication")[1].split("\n## ")[0]
    lines = [line for line in public.splitlines() if line.startswith("- ")]
    assert len(lines) == 3
    assert "**Investigating** · We are investigating reports of problems with Checkout." in lines[0]
    assert "_(Carol Example)_" in lines[0]
    assert "**Identified** · Bad deploy found; rolling back. _(Alice Example)_" in lines[1]
    assert "**Resolved**" in lines[2]


async def test_statuspage_down_the_update_is_queued_and_delivered_later(rig: Rig) -> None:
    channel = await rig.declare("P0 checkout down")
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel)
    rig.sp.down = True
    await rig.slack.command("statuspage investigating Checkout is failing.", channel=channel)
    await publish_preview(rig, channel, ALICE)
    assert rig.sp.state.incidents == {}
    assert any("Statuspage did not answer" in t for t in rig.slack.texts(channel))
    rig.sp.down = False
    await rig.sweep_later()
    [public] = rig.sp.state.incidents.values()
    assert public["incident_updates"][0]["body"] == "Checkout is failing."
    assert rig.sp.state.components["cmpchk01"]["status"] == "major_outage"
    await rig.sweep_later()
    assert len(rig.sp.state.updates()) == 1


async def test_a_refused_page_is_reported_once_and_not_retried(rig: Rig) -> None:
    rig.pd.state.token = "rotated"  # Firebreak's key was revoked: retrying cannot help
    channel = await rig.declare("P1 checkout API returning 502s")
    said = " ".join(rig.slack.texts(channel))
    assert "PagerDuty refused the page for *checkout* (`unauthorized`)" in said
    assert "and page by phone" in said
    rig.pd.state.token = "pd-test-token"
    await rig.sweep_later()
    assert rig.pd.state.incidents == {}
    [failed] = await rig.events("pagerduty.call_failed")
    assert failed.payload["permanent"] is True


async def test_a_publish_whose_record_was_lost_is_not_published_twice(rig: Rig) -> None:
    """As if the bot died after Statuspage took the update and before it recorded that:
    the call is queued again, and the retry finds the update instead of repeating it."""
    channel = await rig.declare("P1 checkout API returning 502s")
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel)
    for status in ("investigating", "identified"):
        await rig.slack.command(f"statuspage {status}", channel=channel)
        await publish_preview(rig, channel, ALICE)
    assert len(rig.sp.state.updates()) == 2

    def forget_deliveries(session: Any) -> None:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.channel == "statuspage")
            .values(delivered_at=None, next_attempt_at=rig.clock.now())
        )

    await rig.slack.app.services.db.run(forget_deliveries)
    await rig.sweep_later()
    assert len(rig.sp.state.incidents) == 1
    assert [u["status"] for u in rig.sp.state.updates()] == ["investigating", "identified"]


async def test_without_the_email_scope_oncall_says_so_and_acks_are_still_recorded(
    rig: Rig,
) -> None:
    channel = await rig.declare("P1 checkout API returning 502s")
    rig.slack.emulator.inject_fault("users.lookupByEmail", error="missing_scope", count=5)
    await rig.slack.command("oncall", channel=channel)
    assert "needs the `users:read.email` scope" in rig.slack.ephemeral_texts()[-1]
    [paged] = rig.pd.state.incidents.values()
    assert await rig.pd.acknowledge(paged["id"], "PBOB001") == 202
    await rig.slack.settle()
    [ack] = await rig.events("paging.acknowledged")
    assert ack.payload["by"] == "Bob Example" and ack.actor == "pagerduty"
    assert any("Bob Example acknowledged the page" in t for t in rig.slack.texts(channel))


async def test_an_incident_from_an_alert_pages_the_alerts_service(database_url: str) -> None:
    """The title need not name the service: the alert's service label is enough."""
    async with (
        PagerDutyEmulator() as pd,
        running_firebreak(
            database_url,
            FIREBREAK_ALERT_TOKEN="alert-token",
            PAGERDUTY_API_TOKEN="pd-test-token",
            PAGERDUTY_FROM_EMAIL="alice@example.com",
            PAGERDUTY_API_URL=pd.api_url,
        ) as slack,
    ):
        alert = {
            "title": "Card authorisations failing",
            "severity": "critical",
            "service": "payments",
            "dedup_key": "card-auth",
        }
        url = slack.driver.app_url.removesuffix("/slack/events") + "/alerts/generic"
        headers = {"Authorization": "Bearer alert-token"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=alert, headers=headers) as r,
        ):
            assert r.status == 202
        await slack.settle()
        [paged] = pd.state.incidents.values()
        assert paged["service"]["id"] == "PPAYMNT"
        assert paged["title"] == "[P1] Card authorisations failing"


@pytest.mark.parametrize(
    ("sent", "plain"),
    [
        ("see <https://g.example.com/d/1|the board>", "see the board (https://g.example.com/d/1)"),
        ("<https://status.example.com|status.example.com> red", "https://status.example.com red"),
        ("<https://x.example.com/a?b=1&amp;c=2>", "https://x.example.com/a?b=1&c=2"),
        ("mail <mailto:ops@example.com|ops@example.com>", "mail ops@example.com"),
        # Typed markup arrives escaped: it stays the user's literal text.
        ("&lt;https://evil.example|click&gt;", "<https://evil.example|click>"),
        (
            "<https://evil.example|trusted.example.com>",
            "trusted.example.com (https://evil.example)",
        ),
    ],
)
def test_slack_links_arrive_as_plain_text_that_shows_where_they_go(sent: str, plain: str) -> None:
    assert from_slack(sent) == plain


def test_channel_references_reach_pagerduty_and_statuspage_as_names() -> None:
    assert public_plain("in <#C0123ABCD|ops-war-room>  now") == "in #ops-war-room now"
