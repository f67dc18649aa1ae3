"""The runbook-action rig shared by the action tests: Firebreak over signed HTTP with the
Slack emulator, the real kubernetes client against emulator/kubernetes.py, the real
docker SDK against emulator/docker.py (service `backend`, a Compose service), a local
health endpoint and the real Postgres as a target; an incident declared, with Bob
and Carol in its channel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
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
from bot.executors import DockerExecutor, KubernetesExecutor, PostgresExecutor
from bot.incidents.service import Request
from emulator.docker import FakeDocker
from emulator.driver import AppResponse
from emulator.kubernetes import FakeKubernetes, deployment, pod, replicaset
from emulator.models import Channel
from handlers.http_check import HttpExecutor
from storage.models import Event, PendingAction
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak

# Test modules import the fixtures under these names (with a noqa for F401), and
# take them as parameters named kube, engine, health and rig.

OLD, NEW = "registry.example.com/checkout:1.4.1", "registry.example.com/checkout:1.4.2"
DB_ENV = "FIREBREAK_TEST_CHECKOUT_DB"
DOCKER_ENV = "FIREBREAK_TEST_BACKEND_DOCKER"
BACKEND = "registry.example.com/prod/backend"


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


@pytest_asyncio.fixture(name="engine")
async def engine_fixture() -> AsyncIterator[FakeDocker]:
    """The Compose service prod/backend: two containers on 2.3.1, with 2.3.0 on the engine."""
    async with FakeDocker() as server:
        server.image(f"{BACKEND}:2.3.0", ago=86400)
        server.image(f"{BACKEND}:2.3.1", ago=3600)
        for number in (1, 2):
            server.container(
                f"prod-backend-{number}",
                f"{BACKEND}:2.3.1",
                project="prod",
                service="backend",
                number=number,
                env=["SECRET_KEY=s3cr3t-backend-key"],
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
    engine: FakeDocker
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


def rig_services(health: str) -> str:
    """The rig's services, as targets.yml's `services:` entries (indented)."""
    return f"""
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout, max_replicas: 8,
                 max_memory: 2Gi}}
    postgres: {{url_env: {DB_ENV}}}
    http: {{health: "{health}/health", readiness: "{health}/ready"}}
  billing:
    http: {{health: "{health}/health"}}
  backend:
    docker: {{host_env: {DOCKER_ENV}, compose_project: prod, service: backend}}
"""


def rig_executors(
    kube: FakeKubernetes,
    engine: FakeDocker | None,
    folder: Path,
    checkout_db_url: str,
    *,
    kube_timeout: float = 1,
) -> Executors:
    """Executors on the fake cluster, the fake Docker Engine (when given) and checkout's
    Postgres."""
    return Executors(
        kubernetes=KubernetesExecutor(
            str(kube.write_kubeconfig(folder / "kube")), timeout=kube_timeout
        ),
        postgres=PostgresExecutor({DB_ENV: checkout_db_url}, timeout=3),
        http=HttpExecutor(timeout=2),
        docker=DockerExecutor({DOCKER_ENV: engine.url} if engine else {}, timeout=1),
    )


@asynccontextmanager
async def firebreak_with_targets(
    database_url: str, services: str, executors: Executors, folder: Path, **env: str
) -> AsyncIterator[tuple[Harness, OffsetClock]]:
    """Firebreak with these `services` (targets.yml's, indented) and executors; nothing
    declared yet."""
    targets = folder / "targets.yml"
    targets.write_text(
        f"""
services:{services}
mitigators: [{BOB}, S0SRE]
require_distinct_confirmer: [P0]
"""
    )
    evidence = folder / "evidence"
    evidence.mkdir(exist_ok=True)
    clock = OffsetClock()
    async with running_firebreak(
        database_url,
        clock=clock,
        executors=executors,
        FIREBREAK_TARGETS=str(targets),
        FIREBREAK_EVIDENCE_DIR=str(evidence),
        **env,
    ) as slack:
        yield slack, clock


@asynccontextmanager
async def running_rig(
    database_url: str,
    kube: FakeKubernetes,
    engine: FakeDocker,
    services: str,
    executors: Executors,
    folder: Path,
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """Firebreak with these services and executors, and a P2 incident declared on checkout
    with Bob and Carol in its channel."""
    async with firebreak_with_targets(
        database_url, services, executors, folder, **(settings or {})
    ) as (slack, clock):
        await slack.command("declare P2 checkout errors")
        await slack.settle()  # the declare's saga (checklist, triage) done before the test acts
        channel = slack.only_incident_channel()
        channel.members.extend([BOB, CAROL])  # responders who joined
        yield Rig(slack, kube, engine, slack.app.services.actions, clock, channel)


@pytest_asyncio.fixture(name="rig")
async def rig_fixture(
    database_url: str,
    kube: FakeKubernetes,
    engine: FakeDocker,
    health: str,
    tmp_path: Path,
    checkout_db_url: str,
    rig_settings: dict[str, str],
) -> AsyncIterator[Rig]:
    executors = rig_executors(kube, engine, tmp_path, checkout_db_url)
    async with running_rig(
        database_url, kube, engine, rig_services(health), executors, tmp_path, rig_settings
    ) as rig:
        yield rig
