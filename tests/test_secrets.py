"""Secrets planted everywhere a responder or a system can put them, searched for in
everything Firebreak writes.

Planted: a Slack bot token, database URLs with passwords (Firebreak's own, a target's,
one in a health URL, ones pasted by people) and `Authorization` credentials, in a pod
log, a health endpoint's body, command text (title, update, note, action item,
resolution), the declare form, people's messages in the incident channel, and an
unreachable target's error, a health URL's query string. Searched: every log record at
INFO and above, every message, thread reply, ephemeral, topic, modal and uploaded file
in Slack, the event log, and the post-mortem (preview, written files, stored row,
`firebreak postmortem`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.actions import Executors
from bot.executors import KubernetesExecutor, PostgresExecutor
from emulator.kubernetes import FakeKubernetes, deployment, pod
from handlers.http_check import HttpExecutor
from storage.models import Event, Postmortem
from tests.databases import POSTGRES_URL, fresh_database
from tests.harness import ALICE, BOB, BOT_TOKEN, Harness, running_firebreak
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

# What must never come out; each is the secret part only, so a masked form such as
# `xoxb-***` or `postgres://app:***@db` does not count as a leak.
SLACK_TOKEN = "xoxb-2718281828-3141592653-Zq8RkT3vWm1NpLs7XcYb"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJlLXNlY3JldA"
BEARER_OPAQUE = "opaque-bearer-7f3a9c1e5b2d8046"
BASIC = "YWRtaW46cGFzc3dvcmQxMjM="
DB_PASSWORD = "Sup3r-S3cret-db-pw"
FIREBREAK_DB_PASSWORD = "Fb-own-db-pw-4451"
TARGET_DB_PASSWORD = "Targ3t-db-pw-9917"
HEALTH_PASSWORD = "H3alth-check-pw-2207"
PASTED_PASSWORD = "pasted-pw-6612"
SECRETS = [
    SLACK_TOKEN.split("-", 1)[1],
    BOT_TOKEN.split("-", 1)[1],
    BEARER,
    BEARER_OPAQUE,
    BASIC,
    DB_PASSWORD,
    FIREBREAK_DB_PASSWORD,
    TARGET_DB_PASSWORD,
    HEALTH_PASSWORD,
    PASTED_PASSWORD,
]
LEAKY_TEXT = (
    f"token {SLACK_TOKEN}, header Authorization: Bearer {BEARER_OPAQUE}, "
    f"db postgres://app:{DB_PASSWORD}@db.internal:5432/app"
)
DB_ENV, DOWN_DB_ENV = "FIREBREAK_TEST_SECRET_DB", "FIREBREAK_TEST_SECRET_DOWN_DB"


def leaks(where: str, text: str) -> list[str]:
    return [f"{secret!r} in {where}" for secret in SECRETS if secret in text]


@dataclass
class Rig:
    slack: Harness
    proxy: TcpProxy  # between Firebreak and its own database
    folder: Path
    channel_name: str = ""


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async def health(request: web.Request) -> web.Response:
        # A debug endpoint that prints its configuration and the request it got.
        body = {
            "status": "degraded",
            "config": {"DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db.internal/app"},
            "request_headers": {"Authorization": f"Bearer {BEARER}"},
            "echo": f"curl -H 'Authorization: Basic {BASIC}' https://api.internal/v1",
        }
        return web.json_response(body, status=int(request.query.get("status", "200")))

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)  # a target's log, not Firebreak's
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    target = make_url(POSTGRES_URL).set(drivername="postgresql", password=TARGET_DB_PASSWORD)
    down = target.set(port=1, password=TARGET_DB_PASSWORD)
    with fresh_database("postgres", tmp_path) as direct:
        url = make_url(direct)
        async with (
            FakeKubernetes() as kube,
            TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy,
        ):
            dep = deployment("checkout", replicas=1, image="checkout:2", revision=1)
            kube.add(dep, pod("checkout-a", image="checkout:2"))
            lines = [f"{i:04d} GET /cart 200" for i in range(300)]
            lines[7] = f"boot DATABASE_URL=postgres://app:{DB_PASSWORD}@db.internal/app"
            lines[8] = f"outgoing request headers: {{'Authorization': 'Bearer {BEARER}'}}"
            lines[9] = f"slack client configured with token={SLACK_TOKEN}"
            lines[10] = f"env SLACK_BOT_TOKEN={SLACK_TOKEN}"
            kube.set_log("shop", "checkout-a", "\n".join(lines))
            targets = tmp_path / "targets.yml"
            targets.write_text(
                f"""
services:
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout}}
    postgres: {{url_env: {DB_ENV}}}
    http:
      health: "http://127.0.0.1:{port}/health?api_key={HEALTH_PASSWORD}"
      readiness: "http://127.0.0.1:{port}/health?status=503&access_token={HEALTH_PASSWORD}"
  ledger:
    postgres: {{url_env: {DOWN_DB_ENV}}}
mitigators: [{BOB}]
"""
            )
            executors = Executors(
                kubernetes=KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kube"))),
                postgres=PostgresExecutor(
                    {
                        DB_ENV: target.render_as_string(hide_password=False),
                        DOWN_DB_ENV: down.render_as_string(hide_password=False),
                    },
                    timeout=3,
                ),
                http=HttpExecutor(timeout=3),
            )
            own = url.set(host="127.0.0.1", port=proxy.port, password=FIREBREAK_DB_PASSWORD)
            async with running_firebreak(
                own.render_as_string(hide_password=False),
                executors=executors,
                FIREBREAK_TARGETS=str(targets),
                FIREBREAK_POSTMORTEM_DIR=str(tmp_path / "postmortems"),
            ) as slack:
                yield Rig(slack, proxy, tmp_path)
    await runner.cleanup()


async def play_an_incident(rig: Rig) -> None:
    """Plant the secrets through every door."""
    slack = rig.slack
    await slack.command(f"declare P1 leaked {SLACK_TOKEN} in the checkout logs")
    channel = slack.only_incident_channel()
    rig.channel_name = channel.name
    channel.members.append(BOB)
    run = [
        f"update {LEAKY_TEXT}",
        f"note {LEAKY_TEXT}",
        f"action rotate {SLACK_TOKEN} and postgres://app:{DB_PASSWORD}@db <@U0BOB>"
        " category=prevention due=7d",
        "diag logs checkout 300",
        "diag health checkout",
        "diag health checkout readiness",
        "diag db-activity checkout",
        "diag db-size ledger",
        f"diag logs checkout pod={SLACK_TOKEN}",
        f"mitigate scale checkout {SLACK_TOKEN}",
        f"{SLACK_TOKEN}",
        f"snooze {SLACK_TOKEN}",
        f"status {BEARER}",
        f"assign lead {SLACK_TOKEN}",
    ]
    for text in run:
        await slack.command(text, channel=channel.id)
    # People paste things in the channel and its threads.
    said = slack.workspace.post_as_user(
        channel.id, BOB, f"try: curl -H 'Authorization: Bearer {BEARER}' https://api.internal"
    )
    slack.workspace.post_as_user(
        channel.id, ALICE, f"the DSN is postgres://root:{PASTED_PASSWORD}@10.0.0.5/prod", said["ts"]
    )
    slack.workspace.post_as_user(channel.id, BOB, f"Authorization: Basic {BASIC}")
    # The declare form, with a secret in the description.
    await slack.command("declare")
    [view] = slack.workspace.open_views(ALICE)
    await slack.driver.submit_view(
        ALICE,
        view["id"],
        {"title": "second incident", "severity": "P2", "description": LEAKY_TEXT},
    )
    await slack.settle()
    # Firebreak's own database goes away for a moment: the errors are logged and shown.
    await rig.proxy.cut()
    await slack.command(f"note during the outage {SLACK_TOKEN}", channel=channel.id)
    await rig.proxy.restore()
    await slack.command("postmortem", channel=channel.id)
    await slack.command(
        f"resolve rotated {SLACK_TOKEN}; Authorization: Bearer {BEARER_OPAQUE}", channel=channel.id
    )
    await slack.command("close", channel=channel.id)


async def every_output(rig: Rig, caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    slack = rig.slack
    ws = slack.workspace
    outputs: list[tuple[str, str]] = [("the log", caplog.text)]
    outputs += [(f"log record {r.name}", r.getMessage()) for r in caplog.records]
    for channel in ws.channels.values():
        outputs.append((f"#{channel.name} topic", json.dumps(channel.topic)))
        outputs.append((f"#{channel.name} name", channel.name))
        for message in ws.messages(channel.id, system=True):
            if message.get("user") in (ALICE, BOB) and not message.get("bot_id"):
                continue  # what the people typed themselves
            outputs.append((f"message in #{channel.name}", json.dumps(message)))
    outputs += [("an ephemeral", json.dumps(e)) for e in ws.ephemeral_messages]
    outputs += [("a modal", json.dumps(v.data)) for v in ws.views.values()]
    for upload in ws.files.values():
        outputs.append((f"file {upload.name}", (upload.data or b"").decode("utf-8", "replace")))
        outputs.append((f"file {upload.name} title", upload.title))

    def stored(session):  # type: ignore[no-untyped-def]
        events = [json.dumps(e.payload) for e in session.scalars(select(Event))]
        documents = [
            (row.markdown, json.dumps(row.document)) for row in session.scalars(select(Postmortem))
        ]
        return events, documents

    events, documents = await slack.app.services.db.run(stored)
    outputs += [("the event log", e) for e in events]
    for markdown, document in documents:
        outputs += [("the stored post-mortem", markdown), ("its JSON", document)]
    for path in (rig.folder / "postmortems").glob("*"):
        outputs.append((f"written {path.name}", path.read_text()))
    for fmt in ("md", "json"):
        rendered = await slack.app.services.postmortems.render(rig.channel_name, fmt)
        outputs.append((f"firebreak postmortem --format {fmt}", rendered))
    return outputs


async def test_no_secret_leaves_firebreak(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await play_an_incident(rig)
    outputs = await every_output(rig, caplog)
    # The planting worked: the things that carried secrets did produce output.
    files = [name for name, _ in outputs if name.startswith("file postmortem-")]
    assert files, "no post-mortem was uploaded"
    assert any(name.startswith("file logs-checkout") for name, _ in outputs)
    assert any("*Update*" in text and "xoxb-" in text for _, text in outputs)
    found = [leak for where, text in outputs for leak in leaks(where, text)]
    assert found == [], "\n".join(sorted(set(found)))
