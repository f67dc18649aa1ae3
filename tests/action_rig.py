"""The runbook-action rig shared by the action tests: Firebreak over signed HTTP with the
Slack emulator, the real kubernetes client against emulator/kubernetes.py, a local
health endpoint and the real Postgres as a target; an incident declared, with Bob
and Carol in its channel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web
from sqlalchemy import select

from bot import commands as c
from bot.actions import ActionService, Executors
from bot.actions.views import CANCEL_ACTION, CONFIRM_ACTION
from bot.clock import OffsetClock
from bot.executors import KubernetesExecutor, PostgresExecutor
from bot.incidents.service import Request
from emulator.driver import AppResponse
from emulator.kubernetes import FakeKubernetes, deployment, pod, replicaset
from emulator.models import Channel
from handlers.http_check import HttpExecutor
from storage.models import Event, PendingAction
from tests.databases import POSTGRES_URL
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak

# Test modules import the fixtures under these names (with a noqa for F401), and
# take them as parameters named kube, health and rig.

OLD, NEW = "registry.example.com/checkout:1.4.1", "registry.example.com/checkout:1.4.2"
DB_ENV = "FIREBREAK_TEST_CHECKOUT_DB"


@pytest_asyncio.fixture(name="kube")
async def kube_fixture() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as server:
        dep = deployment("checkout", replicas=3, image=NEW, revision=2)
        server.add(dep, replicaset(dep, 1, OLD, ago=86400), replicaset(dep, 2, NEW, replicas=3))
        server.add(
            pod("checkout-a", image=NEW, ago=900),
            pod(
                "checkout-b",
                image=NEW,
                ago=300,
                ready=False,
                restarts=7,
                waiting="CrashLoopBackOff",
                last_terminated="OOMKilled",
            ),
        )
        yield server


@pytest_asyncio.fixture(name="health")
async def health_fixture() -> AsyncIterator[str]:
    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def not_ready(_: web.Request) -> web.Response:
        return web.Response(status=503, text="database: down")

    application = web.Application()
    application.router.add_get("/health", healthy)
    application.router.add_get("/ready", not_ready)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@dataclass
class Rig:
    slack: Harness
    kube: FakeKubernetes
    actions: ActionService
    clock: OffsetClock
    channel: Channel

    async def diag(self, text: str, user: str = ALICE) -> str:
        command = c.parse(f"diag {text}", self.slack.app.services.runbooks.severities)
        assert isinstance(command, c.RunDiagnostic)
        return await self.actions.diagnose(command, self.request(user))

    async def mitigate(self, text: str, user: str = ALICE) -> str:
        command = c.parse(f"mitigate {text}", self.slack.app.services.runbooks.severities)
        assert isinstance(command, c.RequestMitigation)
        return await self.actions.propose(command, self.request(user))

    def request(self, user: str) -> Request:
        return Request(actor=user, channel_id=self.channel.id, key=f"test:{uuid.uuid4()}")

    async def click(self, user: str, confirm: bool = True, pending: int = 1) -> AppResponse:
        ts = await self.db(lambda s: s.get(PendingAction, pending).message_ts)
        action = CONFIRM_ACTION if confirm else CANCEL_ACTION
        response = await self.slack.driver.click_button(
            user, self.channel.id, ts, action, value=str(pending)
        )
        await self.slack.settle()
        return response

    async def db(self, query: Any) -> Any:
        return await self.slack.app.services.db.run(query)

    async def events(self, *prefixes: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.db(lambda s: list(s.scalars(select(Event).order_by(Event.id))))
        return [(e.type, e.actor, e.payload) for e in rows if e.type.startswith(prefixes)]

    def messages(self) -> list[dict[str, Any]]:
        return self.slack.workspace.messages(self.channel.id)

    def message(self, ts: str) -> dict[str, Any]:
        return next(m for m in self.messages() if m["ts"] == ts)

    def real_patches(self) -> list[Any]:
        return [p for p in self.kube.patches if not p.dry_run]

    def last_ephemeral(self, user: str) -> str:
        return self.slack.ephemeral_texts(user)[-1]

    async def proposal(self, pending: int) -> dict[str, Any]:
        """The proposal's message as it is now, its blocks flattened into `shown`."""
        ts = await self.db(lambda s: s.get(PendingAction, pending).message_ts)
        message = self.message(ts)
        sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
        buttons = [b for b in message["blocks"] if b["type"] == "actions"]
        return {"shown": "\n".join(sections), "buttons": bool(buttons)}

    async def status(self, pending: int) -> str:
        return str(await self.db(lambda s: s.get(PendingAction, pending).status))

    def deployment(self) -> dict[str, Any]:
        return self.kube.get("Deployment", "shop", "checkout")


@asynccontextmanager
async def firebreak_with_targets(
    database_url: str,
    kube: FakeKubernetes,
    health: str,
    tmp_path: Path,
    *,
    kube_timeout: float = 1,
    **env: str,
) -> AsyncIterator[tuple[Harness, OffsetClock]]:
    """Firebreak whose `checkout` runs on the fake cluster, the real Postgres and the
    local health endpoint (`billing` has only a health URL); nothing declared yet."""
    targets = tmp_path / "targets.yml"
    targets.write_text(
        f"""
services:
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout, max_replicas: 8}}
    postgres: {{url_env: {DB_ENV}}}
    http: {{health: "{health}/health", readiness: "{health}/ready"}}
  billing:
    http: {{health: "{health}/health"}}
mitigators: [{BOB}, S0SRE]
require_distinct_confirmer: [P0]
"""
    )
    clock = OffsetClock()
    executors = Executors(
        kubernetes=KubernetesExecutor(
            str(kube.write_kubeconfig(tmp_path / "kube")), timeout=kube_timeout
        ),
        postgres=PostgresExecutor({DB_ENV: POSTGRES_URL.replace("+psycopg", "")}, timeout=3),
        http=HttpExecutor(timeout=2),
    )
    async with running_firebreak(
        database_url, clock=clock, executors=executors, FIREBREAK_TARGETS=str(targets), **env
    ) as slack:
        yield slack, clock


@pytest_asyncio.fixture(name="rig")
async def rig_fixture(
    database_url: str, kube: FakeKubernetes, health: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    async with firebreak_with_targets(database_url, kube, health, tmp_path) as (slack, clock):
        await slack.command("declare P2 checkout errors")
        channel = slack.only_incident_channel()
        channel.members.extend([BOB, CAROL])  # responders who joined
        yield Rig(slack, kube, slack.app.services.actions, clock, channel)
