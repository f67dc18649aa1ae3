"""The post-mortem end to end: a scripted incident over signed HTTP, closed and exported.

Time is fixed (the bot's clock and the emulator's share one), so the
rendered Markdown is compared byte for byte with `tests/golden/postmortem.md`.
Run with UPDATE_GOLDEN=1 to rewrite the expected file after a deliberate change.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

import tests.harness
from bot.errors import UserError
from bot.incidents.service import Request
from bot.postmortem.service import PostmortemService
from bot.templates import Templates
from bot.yamlfile import RunbookError
from emulator import Workspace
from emulator.models import Channel
from handlers import postmortem
from handlers.modals import resolution_form
from storage import incidents as store
from storage.models import Event, Incident, Postmortem
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak

GOLDEN = Path(__file__).parent / "golden" / "postmortem.md"
START = datetime(2024, 3, 1, 23, 30, tzinfo=UTC)


class FixedClock:
    """The bot's clock and the emulator's: time moves only when the test says."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def timestamp(self) -> float:
        return self.at.timestamp()

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class Scene:
    slack: Harness
    clock: FixedClock
    postmortems: PostmortemService
    folder: Path

    async def command(self, text: str, user: str, channel: Channel) -> None:
        self.clock.advance(minutes=1)
        await self.slack.command(text, user=user, channel=channel.id)

    def say(self, channel: Channel, user: str, text: str, thread: str | None = None) -> str:
        self.clock.advance(minutes=1)
        return str(self.slack.workspace.post_as_user(channel.id, user, text, thread)["ts"])

    async def close(self, channel: Channel, user: str = BOB, key: str = "close-1") -> Any:
        return await self.postmortems.close(Request(actor=user, channel_id=channel.id, key=key))


def fixed_workspace(clock: FixedClock) -> Workspace:
    workspace = Workspace(clock=clock.timestamp)
    workspace.add_user(ALICE, "alice", real_name="Alice Example")
    workspace.add_user(BOB, "bob", real_name="Bob Example")
    workspace.add_user(CAROL, "carol", real_name="Carol Example")
    return workspace


def make_service(slack: Harness, folder: Path, *, archive: bool = False) -> PostmortemService:
    services = slack.app.services
    return PostmortemService(
        services.context,
        incidents=services.incidents,
        actions=services.actions,
        announce_channel="incidents",
        postmortem_dir=folder,
        archive_on_close=archive,
    )


@pytest.fixture
async def scene(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Scene]:
    clock = FixedClock(START)
    monkeypatch.setattr(tests.harness, "seeded_workspace", lambda: fixed_workspace(clock))
    async with running_firebreak(database_url, clock=clock) as slack:
        await slack.app.scheduler.shutdown()  # no reminders firing on their own: time is scripted
        folder = tmp_path / "postmortems"
        yield Scene(slack, clock, make_service(slack, folder), folder)


async def record(slack: Harness, channel: Channel, type_: str, actor: str, **payload: Any) -> None:
    """An event the way the runbook actions will log it (they are not wired in yet)."""

    def append(session):  # type: ignore[no-untyped-def]
        incident = store.by_channel(session, channel.id)
        store.append_event(
            session, incident, type_, actor, slack.app.services.clock.now(), **payload
        )

    await slack.app.services.db.run(append)


async def scripted_incident(scene: Scene) -> Channel:
    """Declare, chat with threads, severity, roles, notes, ticks, a diagnostic, resolve."""
    slack, workspace = scene.slack, scene.slack.workspace
    await slack.command("declare P2 checkout errors", user=ALICE)
    channel = slack.only_incident_channel()
    first = scene.say(channel, BOB, "Seeing 502s on /checkout since 23:25, about 30% of requests")
    scene.say(channel, CAROL, "Grafana agrees: p99 on checkout-api is 12s", thread=first)
    scene.say(channel, ALICE, "Is it the 23:20 deploy?", thread=first)
    await scene.command("assign commander <@U0BOB|bob>", ALICE, channel)
    await scene.command("severity P1", BOB, channel)
    scene.clock.advance(minutes=1)
    await slack.driver.toggle_checkbox(
        BOB, channel.id, channel.pins[0]["ts"], "checklist:0:0",
        ["triage.acknowledge", "triage.commander"],
    )  # fmt: skip
    await slack.settle()
    rollback = scene.say(channel, BOB, "Rolling back checkout-api to v1.4.2")
    workspace.add_reaction(channel.id, rollback, "pushpin", ALICE)
    scene.clock.advance(minutes=1)
    output = await slack.app.services.chat.post(
        channel.id, "Diagnostic `logs` on checkout-api: 214 errors in 5 minutes"
    )
    await record(
        slack, channel, "diagnostic", CAROL, action="logs", service="checkout-api", ok=True,
        summary="214 errors in 5 minutes, all PaymentClientTimeout", thread_ts=output,
    )  # fmt: skip
    scene.say(channel, CAROL, "All of them time out calling the payment provider", thread=output)
    await record(slack, channel, "nudge", "firebreak", due_at="2024-03-01T23:45:00Z", late=True)
    for kind, actor, extra in (
        ("mitigation_requested", CAROL, {"args": {"replicas": 6}}),
        ("mitigation_confirmed", BOB, {"requested_by": CAROL}),
        ("mitigation_executed", BOB, {"ok": True, "summary": "scaled to 6 replicas"}),
    ):
        command = "scale checkout-api replicas=6"
        await record(
            slack, channel, kind, actor, action="scale", service="checkout-api", command=command,
            **extra,
        )  # fmt: skip
    sneaky = scene.say(
        channel, ALICE, "[click here](https://evil.example) &lt;b&gt;bold&lt;/b&gt; {{ 7*7 }} *x*"
    )
    workspace.channels[channel.id].messages[sneaky]["edited"] = {"user": ALICE, "ts": sneaky}
    await scene.command(
        "note Provider latency spiked at 23:22, see <https://status.example.com|status page>",
        CAROL, channel,
    )  # fmt: skip
    long_text = "Timeline check: " + " ".join(f"step {n} looked fine;" for n in range(60))
    pinned = scene.say(channel, CAROL, long_text)
    channel.pins.append(
        {"type": "message", "channel": channel.id, "created": 0, "created_by": CAROL,
         "message": channel.messages[pinned], "ts": pinned}
    )  # fmt: skip
    graph = scene.say(channel, BOB, "Error graph after the rollback")
    channel.messages[graph]["files"] = [{"id": "F0GRAPH", "name": "errors.png"}]
    await scene.command("status monitoring", BOB, channel)
    scene.clock.advance(minutes=30)  # past midnight: the timeline spans two days
    await scene.command("update Error rate is back to baseline", BOB, channel)
    await scene.command(
        "action Alert on payment client timeouts <@U0CAROL> category=detection due=2w",
        ALICE,
        channel,
    )
    await scene.command(
        "resolve Rolled back checkout-api to v1.4.2; payment timeout raised to 5s", BOB, channel
    )
    scene.clock.advance(minutes=5)
    return channel


async def test_golden_postmortem(scene: Scene) -> None:
    channel = await scripted_incident(scene)
    outcome = await scene.close(channel)
    assert not outcome.needs_resolution and "Closed" in outcome.text, outcome.text

    workspace = scene.slack.workspace
    [upload] = [f for f in workspace.files.values() if f.completed]
    content = (upload.data or b"").decode()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(content, encoding="utf-8")
    assert content == GOLDEN.read_text(encoding="utf-8")

    # Shared to the incident channel, under its name; written to disk with its JSON form.
    assert upload.name == f"postmortem-{channel.name}.md" and list(upload.shares) == [channel.id]
    written = scene.folder / upload.name
    assert written.read_text(encoding="utf-8") == content
    document = json.loads(written.with_suffix(".json").read_text(encoding="utf-8"))
    assert document["metrics"] == {
        "time_to_acknowledge": 0.0,  # a person declared it
        "time_to_mitigate": 540.0,
        "time_to_resolve": 2820.0,
    }


async def resolved_incident(scene: Scene, *, resolve: bool = True) -> Channel:
    await scene.slack.command("declare P3 search is slow", user=ALICE)
    channel = scene.slack.only_incident_channel()
    scene.say(channel, BOB, "Search p95 is 4s")
    if resolve:
        await scene.command("resolve Reindexed the search cluster", BOB, channel)
    return channel


async def rows(slack: Harness) -> tuple[Incident, Postmortem, list[str]]:
    def query(session):  # type: ignore[no-untyped-def]
        incident = session.scalars(select(Incident)).one()
        row = session.scalars(select(Postmortem)).one()
        return incident, row, list(session.scalars(select(Event.type).order_by(Event.id)))

    return await slack.app.services.db.run(query)


def announcements(slack: Harness) -> list[str]:
    return [t for t in slack.texts(slack.announce) if "post-mortem" in t]


def shared_files(slack: Harness) -> list[Any]:
    return [f for f in slack.workspace.files.values() if f.completed]


async def test_closing_twice_exports_once(scene: Scene) -> None:
    channel = await resolved_incident(scene)
    db, now = scene.slack.app.services.db, scene.clock.now()
    token = await db.run(store.acquire_lease, 1, "another-replica", now, timedelta(minutes=5))
    busy = await scene.close(channel, key="close-0")
    assert "being exported right now" in busy.text and not shared_files(scene.slack)
    await db.run(store.release_lease, 1, token)

    first = await scene.close(channel, key="close-1")
    second = await scene.close(channel, key="close-2")
    await scene.postmortems.resume_pending_exports()

    assert "Closed" in first.text and "already closed" in second.text, second.text
    [upload] = shared_files(scene.slack)
    incident, row, kinds = await rows(scene.slack)
    assert kinds.count("closed") == 1 and incident.closed_at == START + timedelta(minutes=2)
    assert (row.status, row.file_id, row.written_path) == (
        "exported",
        upload.id,
        str(scene.folder / upload.name),
    )
    [announced] = announcements(scene.slack)
    assert row.announced_ts and upload.id in announced and f"<#{channel.id}>" in announced
    assert not channel.archived  # archiving is off unless configured


async def test_close_unresolved_asks_then_the_modal_resolves_and_closes(scene: Scene) -> None:
    slack = scene.slack
    services = SimpleNamespace(chat=slack.app.services.chat, postmortems=scene.postmortems)
    postmortem.register(slack.app.bolt, services, slack.app.background)  # type: ignore[arg-type]
    channel = await resolved_incident(scene, resolve=False)

    outcome = await scene.close(channel)
    assert outcome.needs_resolution and "not resolved" in outcome.text
    assert not shared_files(slack)
    await slack.app.services.chat.open_view(
        slack.workspace.mint_trigger(ALICE), resolution_form(channel.id)
    )
    [view] = slack.workspace.open_views(ALICE)
    blank = await slack.driver.submit_view(ALICE, view["id"], {"summary": "   "})
    assert blank.body["response_action"] == "errors"
    await slack.driver.submit_view(ALICE, view["id"], {"summary": "Reindexed the cluster"})
    await slack.settle()

    incident, row, kinds = await rows(slack)
    assert incident.status == "resolved" and incident.resolution_summary == "Reindexed the cluster"
    assert kinds[-2:] == ["resolved", "closed"] and row.status == "exported"
    [upload] = shared_files(slack)
    assert "Reindexed the cluster" in (upload.data or b"").decode()
    assert any("Closed" in t for t in slack.ephemeral_texts(ALICE))


async def test_upload_failure_leaves_it_pending_and_a_retry_finishes_once(scene: Scene) -> None:
    channel = await resolved_incident(scene)
    # More 500s than the client retries: the upload step fails for good this time.
    scene.slack.emulator.inject_fault("files.completeUploadExternal", status=500, count=3)

    failed = await scene.close(channel)
    assert "stopped while uploading it to the incident channel: `internal_error`" in failed.text
    incident, row, kinds = await rows(scene.slack)
    assert row.status == "pending_export" and "uploading" in str(row.last_error)
    assert incident.closed_at and kinds.count("closed") == 1
    assert row.markdown and (scene.folder / f"postmortem-{channel.name}.md").exists()
    assert not shared_files(scene.slack) and not announcements(scene.slack)

    await scene.postmortems.resume_pending_exports()  # the sweep
    again = await scene.close(channel, key="close-2")
    _, row, kinds = await rows(scene.slack)
    assert row.status == "exported" and row.last_error is None and "already closed" in again.text
    [upload] = shared_files(scene.slack)
    assert (upload.data or b"").decode() == row.markdown and list(upload.shares) == [channel.id]
    assert len(announcements(scene.slack)) == 1 and kinds.count("closed") == 1


async def test_history_5xx_while_compiling_is_retried(scene: Scene) -> None:
    channel = await resolved_incident(scene)
    scene.slack.emulator.inject_fault("conversations.history", status=503, count=3)
    failed = await scene.close(channel)
    assert "stopped while compiling the post-mortem" in failed.text
    _, row, _ = await rows(scene.slack)
    assert row.status == "pending_export" and not row.markdown
    await scene.postmortems.resume_pending_exports()
    _, row, _ = await rows(scene.slack)
    assert row.status == "exported" and "Search p95 is 4s" in row.markdown


async def test_an_upload_that_landed_unrecorded_is_found_not_redone(scene: Scene) -> None:
    """Slack took the file but the bot lost the answer: the retry finds it in the channel."""
    channel = await resolved_incident(scene)
    await scene.close(channel)
    [upload] = shared_files(scene.slack)

    def forget(session):  # type: ignore[no-untyped-def]
        row = session.scalars(select(Postmortem)).one()
        row.status, row.file_id, row.announced_ts = "pending_export", "pending", "pending"

    await scene.slack.app.services.db.run(forget)
    await scene.postmortems.resume_pending_exports()
    _, row, _ = await rows(scene.slack)
    assert row.status == "exported" and row.file_id == upload.id
    assert len(shared_files(scene.slack)) == 1 and len(announcements(scene.slack)) == 1


async def test_archive_on_close_when_configured(scene: Scene) -> None:
    channel = await resolved_incident(scene)
    service = make_service(scene.slack, scene.folder, archive=True)
    outcome = await service.close(Request(actor=BOB, channel_id=channel.id, key="close"))
    assert "archived" in outcome.text and channel.archived


async def test_preview_is_ephemeral_or_a_file_when_long(scene: Scene) -> None:
    channel = await resolved_incident(scene, resolve=False)
    request = Request(actor=ALICE, channel_id=channel.id, key="preview")
    assert await scene.postmortems.preview(request) == ""
    [draft] = [t for t in scene.slack.ephemeral_texts(ALICE) if "Draft post-mortem" in t]
    assert "# Post-mortem: search is slow" in draft and "Search p95 is 4s" in draft
    assert "| Time to resolve | not recorded |" in draft

    for n in range(15):
        scene.say(channel, CAROL, f"Observation {n}: " + "the shard looks hot " * 12)
    assert "shared as a file" in await scene.postmortems.preview(request)
    [draft_file] = shared_files(scene.slack)
    assert draft_file.name == f"postmortem-{channel.name}-draft.md"
    assert "Observation 14" in (draft_file.data or b"").decode()
    assert (
        await scene.slack.app.services.db.run(lambda s: list(s.scalars(select(Postmortem)))) == []
    )  # a preview records nothing


async def test_an_operator_template_replaces_the_default(scene: Scene, tmp_path: Path) -> None:
    await resolved_incident(scene)
    folder = tmp_path / "templates"
    folder.mkdir()
    template = folder / "postmortem.md.j2"
    template.write_text(
        "# {{ incident.title }}\n{% for e in timeline if e.kind == 'message' %}"
        "- {{ e.who }}: {{ e.text }}\n{% endfor %}"
    )
    services = scene.slack.app.services

    def service() -> PostmortemService:
        templates = replace(services.runbooks, templates=Templates(folder))
        return PostmortemService(
            replace(services.context, runbooks=templates),
            incidents=services.incidents,
            actions=services.actions,
            announce_channel="incidents",
            postmortem_dir=scene.folder,
            archive_on_close=False,
        )

    assert (
        await service().render("1", "md") == "# search is slow\n- Bob Example: Search p95 is 4s\n"
    )
    template.write_text("# {{ incident.title }\n")
    with pytest.raises(RunbookError, match="postmortem.md.j2"):
        service()


async def test_cli_render_by_id_or_channel_name(scene: Scene) -> None:
    channel = await resolved_incident(scene)
    live = await scene.postmortems.render("1", "md")
    assert live.startswith("# Post-mortem: search is slow") and "Search p95 is 4s" in live
    await scene.close(channel)
    _, row, _ = await rows(scene.slack)
    assert await scene.postmortems.render(f"#{channel.name}", "md") == row.markdown
    document = json.loads(await scene.postmortems.render("1", "json"))
    assert document == row.document and document["incident"]["channel_name"] == channel.name
    with pytest.raises(UserError, match="No incident"):
        await scene.postmortems.render("incident-nope", "md")
    with pytest.raises(UserError, match="Unknown format"):
        await scene.postmortems.render("1", "pdf")
