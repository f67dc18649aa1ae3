"""Triage at declare, end to end: the real Bolt app over signed HTTP, the Slack emulator,
the fake Kubernetes API, a local health endpoint and the real Postgres as the target.

Declaring (by command, by the modal or from an alert) posts the scenario guessed with
its reasons, adds its checklist items, runs its read-only diagnostics and posts their
digest with the details in threads, unasked; a candidate mitigation's button starts
the usual dry run and confirmation; `/incident scenario` switches; retries, the sweep
and concurrent runs post nothing twice; the post-mortem tells the guess and the switch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from app.wiring import create_services
from bot import commands as c
from bot.actions import Executors
from bot.clock import Clock, OffsetClock, SystemClock
from bot.config import load_settings
from bot.incidents.lease import TTL
from bot.runbooks import Runbooks
from bot.services import Services
from bot.triage.views import OFFER_ACTION_PREFIX
from emulator.kubernetes import FakeKubernetes
from emulator.models import Channel
from handlers.background import BackgroundWork
from handlers.modals import parse_declare_form
from storage import triage as triage_store
from storage.models import Event, Incident, Triage
from tests.action_rig import firebreak_with_targets, rig_executors, rig_services
from tests.action_rig import health_fixture as health_fixture
from tests.action_rig import kube_fixture as kube_fixture
from tests.harness import ALICE, BOB, BOT_TOKEN, SIGNING_SECRET, Harness

TOKEN = "alert-token-for-triage"
DEPLOY = "declare P1 checkout returning 502s after deploy"
SCENARIO_ITEMS = {
    "What changed in the last deploy? Check the CI/CD logs",
    "Compare the running image with the last known good revision",
    "Decide early whether to roll back rather than fix forward",
}


@asynccontextmanager
async def triaging_firebreak(
    database_url: str, health: str, executors: Executors, folder: Path
) -> AsyncIterator[Harness]:
    async with firebreak_with_targets(
        database_url, rig_services(health), executors, folder, FIREBREAK_ALERT_TOKEN=TOKEN
    ) as (slack, _):
        await slack.app.executors.warm_up()  # as at start-up, before the first declare
        yield slack


@pytest_asyncio.fixture(name="slack")
async def slack_fixture(
    database_url: str, kube: FakeKubernetes, health: str, tmp_path: Path, checkout_db_url: str
) -> AsyncIterator[Harness]:
    executors = rig_executors(kube, None, tmp_path, checkout_db_url, kube_timeout=3)
    async with triaging_firebreak(database_url, health, executors, tmp_path) as slack:
        yield slack


@pytest_asyncio.fixture(name="patient")
async def patient_fixture(
    database_url: str, kube: FakeKubernetes, health: str, tmp_path: Path, checkout_db_url: str
) -> AsyncIterator[Harness]:
    """Firebreak whose Kubernetes client waits longer than the digest budget: a cluster
    that never answers holds a diagnostic for the whole budget."""
    executors = rig_executors(kube, None, tmp_path, checkout_db_url, kube_timeout=30)
    async with triaging_firebreak(database_url, health, executors, tmp_path) as slack:
        yield slack


@asynccontextmanager
async def replica(
    slack: Harness,
    database_url: str,
    kube: FakeKubernetes,
    folder: Path,
    checkout_db_url: str,
    clock: Clock,
) -> AsyncIterator[tuple[Services, BackgroundWork]]:
    """Another replica's services on the same database and Slack, and its background work
    (what its triage runs on)."""
    folder.mkdir()
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.emulator.api_url,
            "DATABASE_URL": database_url,
            "FIREBREAK_TARGETS": str(folder.parent / "targets.yml"),
        }
    )
    executors = rig_executors(kube, None, folder, checkout_db_url, kube_timeout=30)
    background = BackgroundWork()
    services = create_services(
        settings, executors=executors, spawn=background.spawn, clock=clock, replica_id="replica-b"
    )
    try:
        yield services, background
    finally:
        await background.drain()
        await services.db.close()
        executors.close()


def texts(slack: Harness, channel: Channel) -> list[str]:
    return [str(m.get("text", "")) for m in slack.workspace.messages(channel.id)]


def digests(slack: Harness, channel: Channel) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.workspace.messages(channel.id)
        if str(m.get("text", "")).startswith("*Triage of")
    ]


def thread(slack: Harness, channel: Channel, ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.workspace.messages(channel.id)
        if m.get("thread_ts") == ts and m["ts"] != ts
    ]


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def events(slack: Harness, *kinds: str) -> list[Event]:
    def read(session: Any) -> list[Event]:
        query = select(Event).where(Event.type.in_(kinds)).order_by(Event.id)
        return list(session.scalars(query))

    return await slack.app.services.db.run(read)


async def only_incident(slack: Harness) -> Incident:
    def read(session: Any) -> list[Incident]:
        return list(session.scalars(select(Incident)))

    [incident] = await slack.app.services.db.run(read)
    return incident


async def triage_of(slack: Harness, incident_id: int) -> Triage:
    triage = await slack.app.services.db.run(triage_store.get, incident_id)
    assert triage is not None
    return triage


async def diagnosing(slack: Harness, kube: FakeKubernetes) -> Incident:
    """Wait for the declare's saga to be complete (the declarer answered, the incident's
    lease released) while its triage waits on the cluster; the incident."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        incidents = await slack.app.services.db.run(lambda s: list(s.scalars(select(Incident))))
        if not incidents or not incidents[0].declarer_answered:
            continue
        [incident] = incidents
        triage = await triage_of(slack, incident.id)
        if triage.state == "diagnose" and kube.requests:
            return incident
    raise AssertionError("the declare did not complete while its triage was diagnosing")


async def test_the_declare_completes_while_a_diagnostic_hangs_and_its_digest_comes_once(
    patient: Harness, kube: FakeKubernetes, database_url: str, tmp_path: Path, checkout_db_url: str
) -> None:
    slack = patient
    kube.delay = 3600.0  # the cluster accepts every request and never answers
    await slack.driver.slash_command(ALICE, slack.general, DEPLOY)
    incident = await diagnosing(slack, kube)

    # The saga is done and its lease free; the triage holds a lease of its own.
    channel = slack.only_incident_channel()
    assert any(t.startswith("Declared *P1* incident") for t in slack.ephemeral_texts(ALICE))
    assert slack.checklists(channel.id) and incident.lease_owner is None
    assert (await triage_of(slack, incident.id)).lease_owner is not None
    assert digests(slack, channel) == []

    # This replica's sweep and a second run, another replica's sweep and run: all find the
    # triage's lease held, run no diagnostic and post nothing.
    asked = len(kube.requests)
    async with replica(
        slack, database_url, kube, tmp_path / "b", checkout_db_url, SystemClock()
    ) as (other, other_background):
        services = slack.app.services
        await asyncio.gather(
            services.sweep(),
            services.triage.run(incident.id),
            other.sweep(),
            other.triage.run(incident.id),
        )
        await other_background.drain()
    assert len(kube.requests) == asked and digests(slack, channel) == []
    assert (await triage_of(slack, incident.id)).state == "diagnose"

    await slack.settle()  # the budget cuts the cluster's diagnostics; the digest goes out
    [digest] = digests(slack, channel)
    assert "`deployment checkout` could not run" in digest["text"]
    assert "`health checkout which=health`:" in digest["text"]
    await services.sweep()
    await slack.settle()
    assert len(digests(slack, channel)) == 1
    assert sum("Looks like" in t for t in texts(slack, channel)) == 1
    assert len(await events(slack, "diagnostic")) == 3
    assert len(await events(slack, "triage_digest")) == 1
    assert (await triage_of(slack, incident.id)).state == "done"


async def test_a_stalled_triage_is_taken_over_by_another_replicas_sweep(
    patient: Harness, kube: FakeKubernetes, database_url: str, tmp_path: Path, checkout_db_url: str
) -> None:
    """The replica running a triage stalls in its diagnostics past its lease (here: the
    other replica's clock is past it); the other's sweep takes the triage over and posts
    the digest; the stalled one's late results are refused (fenced): one digest."""
    slack = patient
    kube.delay = 3600.0
    await slack.driver.slash_command(ALICE, slack.general, DEPLOY)
    incident = await diagnosing(slack, kube)
    kube.delay = 0.0  # the cluster answers again, but not the requests it holds

    ahead = OffsetClock()
    ahead.advance(TTL + timedelta(seconds=1))
    async with replica(slack, database_url, kube, tmp_path / "b", checkout_db_url, ahead) as (
        other,
        other_background,
    ):
        await other.sweep()
        await other_background.drain()
    channel = slack.only_incident_channel()
    [digest] = digests(slack, channel)
    assert "could not run" not in digest["text"]  # the other replica's diagnostics
    assert (await triage_of(slack, incident.id)).state == "done"

    await slack.settle()  # the stalled run's diagnostics end; it may record nothing
    assert len(digests(slack, channel)) == 1
    assert len(thread(slack, channel, digest["ts"])) == 3
    assert len(await events(slack, "diagnostic")) == 3
    assert len(await events(slack, "triage_digest")) == 1


async def test_a_declare_posts_the_guess_checklist_and_diagnostics_unasked(
    slack: Harness,
) -> None:
    started = time.monotonic()
    await slack.command(DEPLOY)
    took = time.monotonic() - started
    channel = slack.only_incident_channel()

    guess = next(t for t in texts(slack, channel) if "Looks like" in t)
    assert "Looks like *Deployment failure* on *checkout* (matched: 502, after deploy)" in guess
    assert "/incident scenario" in guess

    [checklist] = slack.checklists(channel.id)
    shown = {
        o["text"]["text"]
        for b in checklist["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        for o in e["options"]
    }
    assert shown >= SCENARIO_ITEMS

    [digest] = digests(slack, channel)
    lines = digest["blocks"][0]["text"]["text"].splitlines()
    assert lines[0] == "*Triage of Deployment failure on checkout*: diagnostics"
    assert [line.split("`")[1] for line in lines[1:]] == [
        "deployment checkout",
        "history checkout",
        "health checkout which=health",
    ]
    assert all(line.startswith(":mag:") for line in lines[1:]), lines
    assert took < 10, f"declare to digest took {took:.1f}s"

    # The details are in the digest's thread, one reply per diagnostic with output.
    replies = thread(slack, channel, digest["ts"])
    assert len(replies) == 3 and all("```" in r["text"] for r in replies)
    assert any("checkout:1.4.2" in r["text"] for r in replies)  # the image, from the cluster

    [offer] = buttons(digest)
    assert (offer["action_id"], offer["value"]) == (
        f"{OFFER_ACTION_PREFIX}rollback",
        "rollback checkout",
    )

    [guessed] = await events(slack, "scenario_guessed")
    assert guessed.actor == "firebreak"
    assert guessed.payload["scenario"] == "deployment-failure"
    assert guessed.payload["reasons"] == ["502", "after deploy"]
    assert guessed.payload["service_reason"] == "named in the title"
    ran = await events(slack, "diagnostic")
    assert [(e.actor, e.payload["command"], e.payload["triage"]) for e in ran] == [
        ("firebreak", "deployment checkout", True),
        ("firebreak", "history checkout", True),
        ("firebreak", "health checkout which=health", True),
    ]
    [posted] = await events(slack, "triage_digest")
    assert posted.payload["failed"] == []


async def test_an_offered_mitigation_runs_only_after_its_dry_run_is_confirmed(
    slack: Harness, kube: FakeKubernetes
) -> None:
    await slack.command(DEPLOY)
    channel = slack.only_incident_channel()
    channel.members.append(BOB)
    [digest] = digests(slack, channel)

    await slack.driver.click_button(
        ALICE, channel.id, digest["ts"], f"{OFFER_ACTION_PREFIX}rollback", value="rollback checkout"
    )
    await slack.settle()
    proposal = next(m for m in slack.workspace.messages(channel.id) if "Confirm" in str(m))
    assert "rollback checkout" in proposal["text"]
    assert not [p for p in kube.patches if not p.dry_run], "nothing runs on the click alone"
    assert [e.actor for e in await events(slack, "mitigation_requested")] == [ALICE]

    await slack.driver.click_button(
        BOB, channel.id, proposal["ts"], "runbook_mitigation_confirm", value="1"
    )
    await slack.settle()
    [executed] = await events(slack, "mitigation_executed")
    assert executed.actor == BOB and executed.payload["ok"]
    assert [p for p in kube.patches if not p.dry_run]


async def test_switching_the_scenario_runs_the_new_one(slack: Harness) -> None:
    await slack.command(DEPLOY)
    channel = slack.only_incident_channel()

    await slack.command("scenario nonsense", channel=channel.id)
    refusal = slack.ephemeral_texts(ALICE)[-1]
    assert "Unknown scenario `nonsense`" in refusal and "`database`" in refusal

    await slack.command("scenario", channel=channel.id)
    assert "*Deployment failure* on *checkout*" in slack.ephemeral_texts(ALICE)[-1]

    await slack.command("scenario database", channel=channel.id)
    switched = next(t for t in texts(slack, channel) if "switched the scenario" in t)
    assert f"<@{ALICE}> switched the scenario to *Database issues* on *checkout*" in switched
    new = digests(slack, channel)[-1]
    assert new["text"].startswith("*Triage of Database issues on checkout*")
    assert [b["value"] for b in buttons(new)] == ["terminate-query checkout"]
    [event] = await events(slack, "scenario_switched")
    assert (event.actor, event.payload["old"], event.payload["new"]) == (
        ALICE,
        "deployment-failure",
        "database",
    )
    incident = await only_incident(slack)
    assert "scenario.database.1" in {i.key for i in incident.checklist}

    # The same switch again is no news.
    await slack.command("scenario database", channel=channel.id)
    assert "already *Database issues*" in slack.ephemeral_texts(ALICE)[-1]
    assert len(digests(slack, channel)) == 2


async def test_outside_an_incident_channel_the_switch_says_so(slack: Harness) -> None:
    await slack.command("scenario database")
    assert "incident channel" in slack.ephemeral_texts(ALICE)[-1]


async def test_an_alert_is_triaged_from_its_labels(slack: Harness) -> None:
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "status": "firing",
        "receiver": "firebreak",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "service": "checkout",
                    "severity": "critical",
                },
                "annotations": {"summary": "A pod keeps restarting"},
                "startsAt": "2026-01-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com:9090/graph",
                "fingerprint": "0a1b2c3d4e5f6071",
            }
        ],
    }
    url = slack.driver.app_url.removesuffix("/slack/events") + "/alerts/alertmanager"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        assert r.status == 202, await r.text()
    await slack.settle()
    channel = slack.only_incident_channel()
    guess = next(t for t in texts(slack, channel) if "Looks like" in t)
    assert (
        "*Application crash* on *checkout* (matched: restarting, alertname=KubePodCrashLooping)"
        in guess
    )
    [digest] = digests(slack, channel)
    assert "`pods checkout`" in digest["text"] and "CrashLoopBackOff" in str(
        thread(slack, channel, digest["ts"])
    )
    [guessed] = await events(slack, "scenario_guessed")
    assert guessed.payload["service_reason"] == "given"


async def test_the_declare_form_offers_the_services_and_triages_the_one_picked(
    slack: Harness,
) -> None:
    await slack.command("")
    [view] = slack.workspace.open_views(ALICE)
    [select_] = [b for b in view["blocks"] if b["block_id"] == "service"]
    assert [o["value"] for o in select_["element"]["options"]] == ["checkout", "billing", "backend"]
    await slack.driver.submit_view(
        ALICE,
        view["id"],
        {
            "title": {"title": {"type": "plain_text_input", "value": "everything is slow"}},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P2"}}},
            "service": {
                "service": {"type": "static_select", "selected_option": {"value": "billing"}}
            },
        },
    )
    await slack.settle()
    channel = slack.only_incident_channel()
    guess = next(t for t in texts(slack, channel) if "Looks like" in t)
    assert "*Performance degradation* on *billing* (matched: slow)" in guess
    [digest] = digests(slack, channel)
    # billing has only a health URL: what needs Kubernetes is skipped, and says why.
    assert "`top billing` skipped: billing has no kubernetes section" in digest["text"]
    assert "`health billing which=health`" in digest["text"]


def test_the_form_refuses_a_service_not_configured(runbooks: Runbooks) -> None:
    # Slack sends only listed options; a configuration changed under an open form may not.
    values = {
        "title": {"title": {"type": "plain_text_input", "value": "slow"}},
        "severity": {"severity": {"type": "static_select", "selected_option": {"value": "P2"}}},
        "service": {"service": {"type": "static_select", "selected_option": {"value": "x"}}},
    }
    command, errors = parse_declare_form(values, runbooks.severities, ["checkout"])
    assert command is None and errors == {"service": "Choose a service from the list."}


async def test_no_match_posts_nothing_and_runs_nothing(slack: Harness) -> None:
    await slack.command("declare P2 checkout is down")
    channel = slack.only_incident_channel()
    assert not any("scenario" in t for t in texts(slack, channel))
    assert digests(slack, channel) == [] and await events(slack, "diagnostic") == []
    [guessed] = await events(slack, "scenario_guessed")  # the log still says so
    assert guessed.payload["scenario"] is None and guessed.payload["service"] == "checkout"

    # A scenario picked by hand then runs as a guessed one would.
    await slack.command("scenario performance", channel=channel.id)
    assert [d["text"].splitlines()[0] for d in digests(slack, channel)] == [
        "*Triage of Performance degradation on checkout*: diagnostics"
    ]


async def test_retries_the_sweep_and_concurrent_runs_post_nothing_twice(slack: Harness) -> None:
    held = slack.emulator.hold("chat.postMessage", text="Triage of")
    declaring = asyncio.ensure_future(slack.driver.slash_command(ALICE, slack.general, DEPLOY))
    await asyncio.wait_for(held.arrived.wait(), 10)
    # While the digest is on its way: a redelivery of the command, the sweep, a second run.
    incident = await only_incident(slack)
    services = slack.app.services
    await asyncio.gather(
        services.sweep(),
        services.triage.run(incident.id),
        services.incidents.resume_unfinished(),
    )
    held.release()
    await declaring
    await slack.settle()
    await services.sweep()
    await services.triage.run(incident.id)
    channel = slack.only_incident_channel()
    assert len(digests(slack, channel)) == 1
    assert sum("Looks like" in t for t in texts(slack, channel)) == 1
    assert len(thread(slack, channel, digests(slack, channel)[0]["ts"])) == 3
    assert len(await events(slack, "diagnostic")) == 3
    assert len(await events(slack, "triage_digest")) == 1


async def test_a_hanging_backend_does_not_hold_the_digest_back(
    slack: Harness, kube: FakeKubernetes
) -> None:
    kube.delay = 30.0  # every request of the cluster hangs
    started = time.monotonic()
    await slack.command(DEPLOY)
    took = time.monotonic() - started
    channel = slack.only_incident_channel()
    [digest] = digests(slack, channel)
    assert "`deployment checkout` could not run" in digest["text"]
    assert "`health checkout which=health`:" in digest["text"]  # the others still report
    assert took < 10


async def test_the_post_mortem_tells_the_guess_and_the_switch(slack: Harness) -> None:
    await slack.command(DEPLOY)
    channel = slack.only_incident_channel()
    await slack.command("scenario database", channel=channel.id)
    await slack.command("postmortem", channel=channel.id)
    files = [slack.workspace.file_bytes(f).decode() for f in slack.workspace.files]
    preview = "\n".join([slack.ephemeral_texts(ALICE)[-1], *files])
    assert "guessed Deployment failure on checkout (matched: 502, after deploy)" in preview
    assert "switched to Database issues on checkout (was deployment-failure)" in preview


def test_the_scenario_grammar(runbooks: Runbooks) -> None:
    severities = runbooks.severities
    assert c.parse("scenario", severities) == c.SwitchScenario()
    assert c.parse("scenario Database Checkout", severities) == c.SwitchScenario(
        "database", "checkout"
    )
    with pytest.raises(c.CommandError, match="Usage: `/incident scenario <name> \\[service\\]`"):
        c.parse("scenario database checkout now", severities)
