"""The Kubernetes API, a target database or a health endpoint unreachable during an incident.

Each target sits behind `tests/tcp_proxy.py`, so the test can make it refuse
connections (down), accept and never answer (hanging: a black-holing network, an API
server stuck), or stop answering on a connection already open (frozen). A diagnostic
against it is acked at once, says in the channel that the target was unreachable
within the executor's timeout, and logs a failed `diagnostic` event; meanwhile the
other commands of the incident go through as if nothing were wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.actions import Executors
from bot.executors import KubernetesExecutor, PostgresExecutor
from emulator.kubernetes import FakeKubernetes, deployment, pod, write_kubeconfig
from emulator.models import Channel
from handlers.http_check import HttpExecutor
from storage.models import Event, PendingAction
from tests.databases import POSTGRES_URL, postgres_or_skip
from tests.harness import ALICE, Harness, running_firebreak
from tests.tcp_proxy import TcpProxy

TIMEOUT = 2.5  # every executor's timeout here
MARGIN = 2.0  # what the answer may take beyond it (thread hand-off, Slack, the database)
DB_ENV = "FIREBREAK_TEST_TARGET_DB"


@dataclass
class Rig:
    slack: Harness
    channel: Channel
    kube: TcpProxy
    db: TcpProxy
    web: TcpProxy

    def messages(self) -> list[str]:
        return self.slack.texts(self.channel.id)

    async def send(self, text: str) -> float:
        """Send a command in the incident channel; return when it was sent."""
        sent = time.monotonic()
        response = await self.slack.driver.slash_command(ALICE, self.channel.id, text)
        assert response.status == 200 and response.acked_in_time, response
        return sent

    async def seen(self, needle: str, since: float, deadline: float) -> float:
        """Seconds from `since` until a channel message contains `needle`."""
        while not any(needle in t for t in self.messages()):
            if time.monotonic() - since > deadline:
                raise AssertionError(f"no message with {needle!r} within {deadline:g}s")
            await asyncio.sleep(0.02)
        return time.monotonic() - since

    async def diagnostics(self) -> list[dict[str, Any]]:
        def query(session):  # type: ignore[no-untyped-def]
            rows = session.scalars(select(Event).where(Event.type == "diagnostic"))
            return [e.payload for e in rows]

        return await self.slack.app.services.db.run(query)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    postgres_or_skip()
    target = make_url(POSTGRES_URL)

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    health_app = web.Application()
    health_app.router.add_get("/health", healthy)
    runner = web.AppRunner(health_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    health_port = runner.addresses[0][1]
    async with (
        FakeKubernetes() as kube,
        TcpProxy("127.0.0.1", 0) as kube_proxy,
        TcpProxy(target.host or "127.0.0.1", target.port or 5432) as db_proxy,
        TcpProxy("127.0.0.1", health_port) as web_proxy,
    ):
        kube_proxy.upstream = ("127.0.0.1", kube.port)
        dep = deployment("checkout", replicas=2, image="checkout:2", revision=2)
        kube.add(dep, pod("checkout-a", image="checkout:2"))
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig",
            {"fake": (f"http://127.0.0.1:{kube_proxy.port}", kube.token, "shop")},
        )
        targets = tmp_path / "targets.yml"
        targets.write_text(
            f"""
services:
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout}}
    postgres: {{url_env: {DB_ENV}}}
    http: {{health: "http://127.0.0.1:{web_proxy.port}/health"}}
mitigators: [U0BOB]
"""
        )
        db_url = target.set(drivername="postgresql", host="127.0.0.1", port=db_proxy.port)
        executors = Executors(
            kubernetes=KubernetesExecutor(str(kubeconfig), timeout=TIMEOUT),
            postgres=PostgresExecutor(
                {DB_ENV: db_url.render_as_string(hide_password=False)}, timeout=TIMEOUT
            ),
            http=HttpExecutor(timeout=TIMEOUT),
        )
        async with running_firebreak(
            f"sqlite:///{tmp_path / 'firebreak.db'}",
            executors=executors,
            FIREBREAK_TARGETS=str(targets),
        ) as slack:
            await slack.command("declare P1 checkout errors")
            yield Rig(slack, slack.only_incident_channel(), kube_proxy, db_proxy, web_proxy)
    await runner.cleanup()


DIAGNOSTICS = [
    ("pods checkout", "`pods checkout` could not run: Kubernetes API unreachable"),
    ("db-size checkout", f"`db-size checkout` could not run: Postgres unreachable via {DB_ENV}"),
    ("health checkout", "`health checkout which=health` could not run: health"),
]


async def test_hanging_targets_are_reported_in_time_and_block_nothing(rig: Rig) -> None:
    # Healthy first: the three diagnostics work, so what follows is the outage's doing.
    for text, _ in DIAGNOSTICS:
        await rig.slack.command(f"diag {text}", channel=rig.channel.id)
    assert [p["ok"] for p in await rig.diagnostics()] == [True, True, True]

    for proxy in (rig.kube, rig.db, rig.web):
        await proxy.hold()
    sent = [await rig.send(f"diag {text}") for text, _ in DIAGNOSTICS]
    # While all three hang, the incident carries on.
    started = time.monotonic()
    for text in ("note the cluster API is not answering", "update investigating the API"):
        await rig.send(text)
    await rig.send("severity P0")
    for needle in ("not answering", "investigating the API", "changed the severity"):
        await rig.seen(needle, started, TIMEOUT)
    assert not any("could not run" in t for t in rig.messages()), "the others waited"
    for (_, message), at in zip(DIAGNOSTICS, sent, strict=True):
        took = await rig.seen(message, at, TIMEOUT + MARGIN)
        assert took >= TIMEOUT * 0.8, f"{message!r} after {took:.1f}s: not a timeout"
    await rig.slack.settle()
    assert [p["ok"] for p in await rig.diagnostics()] == [True] * 3 + [False] * 3
    assert "timeout after 2.5s" in next(t for t in rig.messages() if "Kubernetes API" in t)

    for proxy in (rig.kube, rig.db, rig.web):
        await proxy.restore()
    await rig.slack.command("diag pods checkout", channel=rig.channel.id)
    assert (await rig.diagnostics())[-1]["ok"] is True


async def test_refused_connections_are_reported_at_once(rig: Rig) -> None:
    for proxy in (rig.kube, rig.db, rig.web):
        await proxy.cut()
    for text, message in DIAGNOSTICS:
        at = await rig.send(f"diag {text}")
        assert await rig.seen(message, at, MARGIN) < MARGIN
    await rig.slack.settle()
    assert [p["ok"] for p in await rig.diagnostics()] == [False] * 3
    # A target being down is the incident, not Firebreak being unready.
    base = rig.slack.driver.app_url.removesuffix("/slack/events")
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as response:
        assert response.status == 200


async def test_a_frozen_api_connection_and_a_mitigation_during_it(rig: Rig) -> None:
    """The Kubernetes client keeps its connection open between calls; the API server
    stops answering on it. The diagnostic and a mitigation's dry run both end in time,
    and no confirmation is offered for a dry run that could not run."""
    await rig.slack.command("diag pods checkout", channel=rig.channel.id)
    await rig.kube.freeze()
    at = await rig.send("diag pods checkout")
    await rig.seen("Kubernetes API unreachable (timeout", at, TIMEOUT + MARGIN)
    before = len(rig.slack.ephemeral_texts(ALICE))
    at = await rig.send("mitigate restart checkout")
    while len(rig.slack.ephemeral_texts(ALICE)) == before:
        assert time.monotonic() - at < TIMEOUT + MARGIN, "no answer to the mitigation"
        await asyncio.sleep(0.02)
    reply = rig.slack.ephemeral_texts(ALICE)[-1]
    assert "The dry run of `restart checkout` failed" in reply, reply
    assert "Kubernetes API unreachable" in reply
    await rig.slack.settle()
    assert (
        await rig.slack.app.services.db.run(lambda s: list(s.scalars(select(PendingAction)))) == []
    )
