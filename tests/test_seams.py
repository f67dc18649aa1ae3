"""Seams between features, probed end to end as a hostile user would: alert intake,
paging, the status page, the lifecycle and the outbox together, over real HTTP against
the Slack emulator and the PagerDuty and Statuspage fakes. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.clock import OffsetClock
from emulator.alerts import example
from emulator.pagerduty import PagerDutyEmulator, sign
from emulator.statuspage import StatuspageEmulator
from storage.models import Event, Incident
from tests.harness import ALICE, Harness, running_firebreak
from tests.test_alerts import runbooks_with

ALERT_TOKEN = "alert-token-for-seams"
PD_SECRET = "webhook-secret"


@dataclass
class Rig:
    slack: Harness
    pd: PagerDutyEmulator
    sp: StatuspageEmulator
    clock: OffsetClock
    base_url: str

    async def alert(self, body: dict[str, Any], *, settle: bool = True) -> int:
        headers = {"Authorization": f"Bearer {ALERT_TOKEN}", "Content-Type": "application/json"}
        data = io.BytesIO(json.dumps(body).encode())
        url = f"{self.base_url}/alerts/alertmanager"
        async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as r:
            status = r.status
        if settle:
            await self.slack.settle()
        return status

    async def webhook(self, event: dict[str, Any]) -> int:
        body = json.dumps(event).encode()
        headers = {"X-PagerDuty-Signature": sign(PD_SECRET, body)}
        url = f"{self.base_url}/alerts/pagerduty"
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            status = r.status
        await self.slack.settle()
        return status

    async def sweep_later(self, delta: timedelta = timedelta(minutes=6)) -> None:
        self.clock.advance(delta)
        await self.slack.app.services.sweep()
        await self.slack.settle()

    async def events(self) -> list[Event]:
        def query(session: Any) -> list[Event]:
            return list(session.scalars(select(Event).order_by(Event.id)))

        return list(await self.slack.app.services.db.run(query))

    async def incident(self) -> Incident:
        return await self.slack.app.services.db.run(lambda s: s.scalar(select(Incident)))

    async def postmortem(self) -> str:
        incident = await self.incident()
        postmortems = self.slack.app.services.postmortems
        return str(await postmortems.render(str(incident.id), "md"))

    async def click_last(self, channel: str, marker: str, action_id: str, user: str) -> None:
        message = next(
            m
            for m in reversed(self.slack.workspace.messages(channel))
            if marker in str(m.get("text")) or marker in json.dumps(m.get("blocks", []))
        )
        await self.slack.driver.click_button(user, channel, message["ts"], action_id)
        await self.slack.settle()


@asynccontextmanager
async def seam_rig(database_url: str, **env: str) -> AsyncIterator[Rig]:
    clock = OffsetClock()
    async with (
        PagerDutyEmulator() as pd,
        StatuspageEmulator() as sp,
        running_firebreak(
            database_url,
            clock=clock,
            FIREBREAK_ALERT_TOKEN=ALERT_TOKEN,
            PAGERDUTY_API_TOKEN="pd-test-token",
            PAGERDUTY_FROM_EMAIL="alice@example.com",
            PAGERDUTY_WEBHOOK_SECRET=PD_SECRET,
            PAGERDUTY_API_URL=pd.api_url,
            STATUSPAGE_API_KEY="sp-test-key",
            STATUSPAGE_PAGE_ID="fbpage01",
            STATUSPAGE_API_URL=sp.api_url,
            **env,
        ) as slack,
    ):
        base_url = slack.driver.app_url.removesuffix("/slack/events")
        pd.subscribe(f"{base_url}/alerts/pagerduty", PD_SECRET)
        yield Rig(slack, pd, sp, clock, base_url)


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    async with seam_rig(database_url) as rig:
        yield rig


def critical(status: str = "firing", starts: datetime | None = None) -> dict[str, Any]:
    started = starts or datetime.now(UTC) - timedelta(minutes=5)
    return example("checkout-5xx", started, status)


RAW_MARKUP = re.compile(r"<[@#!]|<https?:|&lt;|&gt;|&amp;")


# 1. Alert -> incident -> paged once -> acknowledged -> resolved -> closed --------------


async def test_an_alert_storm_pages_once_and_the_whole_lifecycle_reaches_pagerduty(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=5)
    statuses = await asyncio.gather(
        *(rig.alert(critical(starts=started), settle=False) for _ in range(20))
    )
    assert statuses == [202] * 20
    await rig.slack.settle()
    channel = rig.slack.only_incident_channel().id
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PCHKOUT"
    assert [e.type for e in await rig.events()].count("paging.paged") == 1
    assert " ".join(rig.slack.texts(channel)).count("Paged *checkout*") == 1
    # Firebreak declared it: nobody to tell, so no ephemeral to a user called "firebreak".
    assert not [r for r in caplog.records if "could not answer the declarer" in r.message]

    assert await rig.pd.acknowledge(paged["id"], "PBOB001") == 202
    await rig.slack.settle()
    await rig.slack.command("resolve rolled back the deploy", channel=channel)
    assert paged["status"] == "resolved"
    await rig.slack.command("close", channel=channel)
    incident = await rig.incident()
    assert incident.closed_at is not None
    assert len(rig.pd.state.incidents) == 1  # nothing paged again along the way

    markdown = await rig.postmortem()
    assert "| Time to acknowledge | not recorded |" not in markdown
    assert "| Time to acknowledge |" in markdown
    assert "## Alert" in markdown and "`service=checkout`" in markdown
    assert "checkout on PagerDuty (on call: " in markdown
    assert "by Bob Example in PagerDuty" in markdown
    assert not RAW_MARKUP.search(markdown), RAW_MARKUP.findall(markdown)


# 2. A closed incident is final, whatever reaches it from outside ----------------------


async def test_a_closed_incident_answers_late_webhooks_alerts_and_clicks_and_stays_closed(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.alert(critical())
    channel = rig.slack.only_incident_channel()
    [paged] = rig.pd.state.incidents.values()
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel.id)
    await rig.slack.command("statuspage investigating", channel=channel.id)
    await rig.slack.command("resolve rolled back", channel=channel.id)
    await rig.slack.command("close", channel=channel.id)
    closed = await rig.incident()
    assert closed.closed_at is not None
    kinds_at_close = [e.type for e in await rig.events()]
    answers_at_close = len(rig.slack.ephemeral_texts(ALICE))

    # PagerDuty tells us late: acknowledged and resolved on its side.
    for kind in ("incident.acknowledged", "incident.resolved"):
        event = rig.pd.state.webhook_event(paged, kind, "PBOB001")
        assert await rig.webhook(event) < 300
    # Alertmanager says the alert resolved, then fires it again the same episode.
    assert await rig.alert(critical("resolved")) == 202
    # Old buttons: the first status page preview, and a checklist box.
    await rig.click_last(channel.id, "Status page preview", "statuspage_publish", ALICE)
    assert rig.sp.state.incidents == {}
    await rig.slack.driver.toggle_checkbox(
        ALICE, channel.id, channel.pins[0]["ts"], "checklist:0:0", ["triage.acknowledge"]
    )
    await rig.slack.settle()
    # And by hand: page again, draft the status page.
    await rig.slack.command("page checkout it is back", channel=channel.id)
    await rig.slack.command("statuspage resolved", channel=channel.id)

    answers = rig.slack.ephemeral_texts(ALICE)[answers_at_close:]
    assert len(answers) == 4, answers
    assert all("was closed on" in a and "follow-up" in a for a in answers), answers
    after = await rig.incident()
    assert (after.status, after.closed_at) == (closed.status, closed.closed_at)
    assert [e.type for e in await rig.events()] == kinds_at_close
    assert len(rig.pd.state.incidents) == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "CRITICAL"]


# 3. No broadcast channel, PagerDuty down, and an alert offer at once ------------------


async def test_without_the_broadcast_channel_and_pagerduty_the_incident_channel_still_works(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with seam_rig(database_url, FIREBREAK_ANNOUNCE_CHANNEL="no-such-channel") as rig:
        rig.pd.fail_next(4, status=503)  # the first attempt and three sweeps' retries
        assert await rig.alert(example("disk-filling", datetime.now(UTC))) == 202
        assert await rig.alert(critical()) == 202
        for _ in range(3):
            await rig.sweep_later()
        channel = rig.slack.only_incident_channel().id
        said = " ".join(rig.slack.texts(channel))
        # The incident channel has its messages, and each failure is said there once.
        assert "Opened from an alert" in said and "Detection &amp; Triage" in said
        assert said.count("PagerDuty did not answer (`http_503`)") == 1
        assert said.count("Could not announce this incident in #no-such-channel") == 1
        # The offer has no incident channel to report to: logged once, not once a sweep.
        offer_failures = [r for r in caplog.records if "offer" in r.getMessage()]
        assert len(offer_failures) == 1, [r.getMessage() for r in caplog.records]
        assert "FIREBREAK_ANNOUNCE_CHANNEL" in offer_failures[0].getMessage()
        assert not [r for r in caplog.records if "refused conversations" in r.getMessage()]
        # PagerDuty back: the page goes out, once.
        await rig.sweep_later()
        assert len(rig.pd.state.incidents) == 1
        assert " ".join(rig.slack.texts(channel)).count("Paged *checkout*") == 1


# 4. Hostile text through every lane ---------------------------------------------------

HOSTILE = "<!channel> see <https://evil.example|click> &amp; &lt;b&gt; x"
# What Slack sends when someone types `see https://evil.example & <b>&amp;</b> *x*`.
SLACK_TYPED = "see <https://evil.example|click> &amp; &lt;b&gt;&amp;amp;&lt;/b&gt; *x*"


def slack_payloads(rig: Rig) -> list[str]:
    """Everything Firebreak sent to Slack, as JSON text: messages and ephemerals."""
    workspace = rig.slack.workspace
    sent = [m for c in workspace.channels.values() for m in workspace.messages(c.id)]
    sent += [e for u in (ALICE,) for e in workspace.ephemerals(u)]
    return [json.dumps(m) for m in sent]


async def test_hostile_text_reaches_slack_pagerduty_and_statuspage_inert(rig: Rig) -> None:
    body = critical()
    body["commonAnnotations"]["summary"] = f"Checkout down {HOSTILE}"
    body["commonAnnotations"]["description"] = HOSTILE
    body["alerts"][0]["annotations"]["summary"] = f"Checkout down {HOSTILE}"
    await rig.alert(body)
    channel = rig.slack.only_incident_channel().id
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel)
    await rig.slack.command(f"page payments {HOSTILE}", channel=channel)
    await rig.slack.command(f"statuspage identified {HOSTILE}", channel=channel)
    await rig.slack.command(f"page payments {SLACK_TYPED}", channel=channel)
    await rig.slack.command(f"statuspage identified {SLACK_TYPED}", channel=channel)
    await rig.click_last(channel, "Status page preview", "statuspage_publish", ALICE)
    # Typed @-mentions (and a typed `<!channel>`, the same once decoded) are refused.
    refusals = rig.slack.ephemeral_texts()
    assert sum("goes outside Slack" in t for t in refusals) == 2, refusals
    # Slack: nothing of the text is live markup anywhere Firebreak posted.
    for payload in slack_payloads(rig):
        assert "<!channel>" not in payload and "<https://evil.example" not in payload, payload
    preview = next(p for p in slack_payloads(rig) if "Publish confirmed" in p)
    assert "&lt;https://evil.example|click&gt; &amp;amp; &amp;lt;b&amp;gt;" in preview
    # PagerDuty and Statuspage: the text as the alert or the person wrote it, plain,
    # with none of Slack's escaping leaking in.
    alert_page, typed_page = sorted(rig.pd.state.incidents.values(), key=lambda i: i["id"])
    assert alert_page["title"] == f"[P1] Checkout down {HOSTILE}"
    assert alert_page["body"]["details"] == HOSTILE
    assert typed_page["body"]["details"] == SLACK_TYPED
    [update] = rig.sp.state.updates()
    assert update["body"] == SLACK_TYPED
    [public] = rig.sp.state.incidents.values()
    assert public["name"] == f"Checkout down {HOSTILE}"


# 5. An offered alert, declared by a click, then raised to a paging severity -----------


async def test_an_offered_alert_raised_to_a_paging_severity_pages_the_alerts_service(
    rig: Rig,
) -> None:
    """The title does not name the service; the alert's service label is enough, also
    when the page comes from raising the severity rather than from the declaration."""
    body = {
        "title": "Card authorisations slower than usual",
        "severity": "warning",
        "service": "payments",
        "dedup_key": "card-auth-slow",
    }
    headers = {"Authorization": f"Bearer {ALERT_TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rig.base_url}/alerts/generic", json=body, headers=headers) as r,
    ):
        assert r.status == 202
    await rig.slack.settle()
    await rig.click_last(rig.slack.announce, "Card authorisations", "alert_declare", ALICE)
    channel = rig.slack.only_incident_channel().id
    assert rig.pd.state.incidents == {}
    await rig.slack.command("severity P1", channel=channel)
    [paged] = rig.pd.state.incidents.values()
    assert paged["service"]["id"] == "PPAYMNT"


# 6. An alert that resolves itself resolves the page too ------------------------------


async def test_an_auto_resolved_alert_resolves_its_page_in_pagerduty(
    database_url: str, tmp_path: Path
) -> None:
    folder = runbooks_with(
        tmp_path,
        "rules:\n  - name: critical\n    match: {severity: critical}\n"
        "    action: declare\n    severity: P1\n    auto_resolve: true\n",
    )
    async with seam_rig(database_url, FIREBREAK_RUNBOOKS=str(folder)) as rig:
        await rig.alert(critical())
        [paged] = rig.pd.state.incidents.values()
        await rig.alert(critical("resolved"))
        assert (await rig.incident()).status == "resolved"
        assert paged["status"] == "resolved"
        assert len(rig.pd.state.incidents) == 1


async def test_the_resolved_update_can_still_be_published_after_the_close(rig: Rig) -> None:
    """Closed before anyone clicked Publish on the resolved update: customers must not be
    left reading an unresolved incident, so that one preview still works."""
    await rig.alert(critical())
    channel = rig.slack.only_incident_channel().id
    await rig.slack.command(f"commander <@{ALICE}>", channel=channel)
    await rig.slack.command("statuspage investigating", channel=channel)
    await rig.click_last(channel, "Status page preview", "statuspage_publish", ALICE)
    await rig.slack.command("resolve rolled back", channel=channel)
    await rig.slack.command("close", channel=channel)
    await rig.click_last(channel, "Status page preview", "statuspage_publish", ALICE)
    [public] = rig.sp.state.incidents.values()
    assert public["status"] == "resolved"
    assert rig.sp.state.components["cmpchk01"]["status"] == "operational"
