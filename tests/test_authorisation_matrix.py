"""Who may request and who may confirm each mitigation: the whole matrix, tested.

`targets.yml` names the mitigators (users U0BOB and U0DAN, user group S0SRE, of which
Carol is a member) and requires a confirmer other than the requester on P0. The
commander is Alice. Dan, a mitigator, requests every mitigation; then each kind of
confirmer clicks Confirm: the requester himself, the commander, another configured
mitigator, a member of the mitigators' group, and anyone else. On P2 all but the last
may; on P0 the requester may not either. A permitted click runs the mitigation for
real (a PATCH the fake cluster records, or a Postgres backend terminated); a refused
one runs nothing, leaves the request pending and logs `mitigation_refused` with the
reason and the clicker.

One Firebreak (and one fake cluster) serves the whole module: each case makes its
own request, so the cases stay independent while the module stays fast.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.actions import Executors
from bot.actions.views import CANCEL_ACTION, CONFIRM_ACTION
from bot.executors import KubernetesExecutor, PostgresExecutor
from bot.messages import Button, Buttons, Card, Section
from emulator.kubernetes import FakeKubernetes, deployment, pod, replicaset
from emulator.models import Channel
from handlers.http_check import HttpExecutor
from storage.models import Event, PendingAction
from tests.databases import POSTGRES_URL, postgres_or_skip
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak

pytestmark = pytest.mark.asyncio(loop_scope="module")

DAN, EVE = "U0DAN", "U0EVE"
REQUESTER = DAN
CONFIRMERS = {
    "requester": DAN,
    "commander": ALICE,
    "mitigator": BOB,
    "group member": CAROL,
    "anyone else": EVE,
}
DB_ENV = "FIREBREAK_TEST_MATRIX_DB"
OLD, NEW = "registry.example.com/checkout:1.4.1", "registry.example.com/checkout:1.4.2"


def expected(confirmer: str, severity: str) -> str | None:
    """None when the click runs the mitigation, else the refusal reason."""
    if confirmer == "anyone else":
        return "not_authorised"
    if confirmer == "requester" and severity == "P0":
        return "distinct_confirmer_required"
    return None


@dataclass
class Matrix:
    slack: Harness
    kube: FakeKubernetes
    channels: dict[str, Channel]  # by severity

    def reset_cluster(self) -> None:
        dep = deployment("checkout", replicas=3, image=NEW, revision=2)
        self.kube.add(dep, replicaset(dep, 1, OLD, ago=86400), replicaset(dep, 2, NEW, replicas=3))
        self.kube.add(pod("checkout-a", image=NEW))

    def real_patches(self) -> int:
        return len([p for p in self.kube.patches if not p.dry_run])

    async def db(self, query: Any) -> Any:
        return await self.slack.app.services.db.run(query)

    async def propose(self, severity: str, text: str, user: str = REQUESTER) -> PendingAction:
        channel = self.channels[severity]
        before = await self.db(lambda s: len(list(s.scalars(select(PendingAction)))))
        await self.slack.command(f"mitigate {text}", user=user, channel=channel.id)
        rows = await self.db(
            lambda s: list(s.scalars(select(PendingAction).order_by(PendingAction.id)))
        )
        assert len(rows) == before + 1, self.slack.ephemeral_texts(user)[-1:]
        return rows[-1]

    async def click(self, severity: str, pending: PendingAction, user: str, confirm: bool) -> str:
        channel = self.channels[severity]
        before = len(self.slack.ephemeral_texts(user))
        await self.slack.driver.click_button(
            user,
            channel.id,
            str(pending.message_ts),
            CONFIRM_ACTION if confirm else CANCEL_ACTION,
            value=str(pending.id),
        )
        await self.slack.settle()
        return "\n".join(self.slack.ephemeral_texts(user)[before:])

    async def events(self, action_id: int) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.db(lambda s: list(s.scalars(select(Event).order_by(Event.id))))
        return [
            (e.type, e.actor, e.payload)
            for e in rows
            if e.type.startswith("mitigation_") and e.payload.get("action_id") == action_id
        ]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    folder = tmp_path_factory.mktemp("matrix")
    async with FakeKubernetes() as kube:
        targets = folder / "targets.yml"
        targets.write_text(
            f"""
services:
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout, max_replicas: 8}}
    postgres: {{url_env: {DB_ENV}}}
mitigators: [{BOB}, {DAN}, S0SRE]
require_distinct_confirmer: [P0]
"""
        )
        executors = Executors(
            kubernetes=KubernetesExecutor(str(kube.write_kubeconfig(folder / "kube")), timeout=2),
            postgres=PostgresExecutor({DB_ENV: POSTGRES_URL.replace("+psycopg", "")}, timeout=3),
            http=HttpExecutor(timeout=2),
        )
        async with running_firebreak(
            f"sqlite:///{folder / 'firebreak.db'}",
            executors=executors,
            FIREBREAK_TARGETS=str(targets),
        ) as slack:
            slack.workspace.add_user(DAN, "dan", real_name="Dan Example")
            slack.workspace.add_user(EVE, "eve", real_name="Eve Example")
            slack.workspace.add_usergroup("S0SRE", "sre", [CAROL])
            channels = {}
            for severity in ("P0", "P2"):
                await slack.command(f"declare {severity} checkout errors {severity}")
                channel = next(
                    c for c in slack.incident_channels() if c.name.endswith(severity.lower())
                )
                channel.members.extend([BOB, CAROL, DAN, EVE])
                await slack.command("commander <@U0ALICE>", channel=channel.id)
                channels[severity] = channel
            matrix = Matrix(slack, kube, channels)
            matrix.reset_cluster()
            yield matrix


@dataclass
class Blocker:
    """A Postgres backend holding a row lock another backend waits for: what
    `terminate-query` is for. `alive()` tells whether it was terminated."""

    holder: psycopg.AsyncConnection[Any]
    waiter: psycopg.AsyncConnection[Any]
    waiting: asyncio.Task[Any]
    pid: int

    async def alive(self) -> bool:
        try:
            await self.holder.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    async def close(self) -> None:
        for connection in (self.holder, self.waiter):
            await connection.close()
        self.waiting.cancel()
        await asyncio.gather(self.waiting, return_exceptions=True)


async def blocker() -> Blocker:
    url = POSTGRES_URL.replace("+psycopg", "")
    table = f"matrix_{uuid.uuid4().hex[:10]}"
    setup = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await setup.execute(f"CREATE TABLE {table} (id int)")
    await setup.execute(f"INSERT INTO {table} VALUES (1)")
    await setup.close()
    holder = await psycopg.AsyncConnection.connect(url)
    await holder.execute(f"SELECT * FROM {table} FOR UPDATE")  # and stays in the transaction
    pid = holder.info.backend_pid
    waiter = await psycopg.AsyncConnection.connect(url)
    waiting = asyncio.ensure_future(waiter.execute(f"SELECT * FROM {table} FOR UPDATE"))
    for _ in range(100):  # until Postgres shows the wait
        check = await psycopg.AsyncConnection.connect(url, autocommit=True)
        rows = await (
            await check.execute(
                "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
            )
        ).fetchall()
        await check.close()
        if rows:
            break
        await asyncio.sleep(0.05)
    return Blocker(holder, waiter, waiting, pid)


MITIGATIONS = {
    "restart": "restart checkout",
    "rollback": "rollback checkout",
    "scale": "scale checkout 5",
    "terminate-query": "terminate-query checkout {pid}",
}


@pytest.mark.parametrize("severity", ["P0", "P2"])
@pytest.mark.parametrize("confirmer", list(CONFIRMERS))
@pytest.mark.parametrize("mitigation", list(MITIGATIONS))
async def test_who_may_confirm(
    matrix: Matrix, mitigation: str, confirmer: str, severity: str
) -> None:
    matrix.reset_cluster()
    target: Blocker | None = None
    if mitigation == "terminate-query":
        postgres_or_skip()
        target = await blocker()
    try:
        text = MITIGATIONS[mitigation].format(pid=target.pid if target else "")
        pending = await matrix.propose(severity, text)
        patches = matrix.real_patches()
        user = CONFIRMERS[confirmer]
        reply = await matrix.click(severity, pending, user, confirm=True)
        status = await matrix.db(lambda s: s.get(PendingAction, pending.id).status)
        events = await matrix.events(pending.id)
        reason = expected(confirmer, severity)
        if reason is None:
            assert status == "executed", (status, reply)
            kinds = [(kind, actor) for kind, actor, _ in events]
            assert ("mitigation_confirmed", user) in kinds and (
                "mitigation_executed",
                user,
            ) in kinds
            executed = next(p for kind, _, p in events if kind == "mitigation_executed")
            assert executed["ok"] is True
            if target is not None:
                assert not await target.alive(), "the blocking backend is still there"
            else:
                assert matrix.real_patches() == patches + 1
        else:
            assert status == "pending", status
            refused = [
                (actor, p["reason"]) for kind, actor, p in events if kind == "mitigation_refused"
            ]
            assert refused == [(user, reason)], events
            assert not any(
                kind in ("mitigation_confirmed", "mitigation_executed") for kind, _, _ in events
            )
            assert "may not confirm" in reply or "someone other than the requester" in reply, reply
            if target is not None:
                assert await target.alive(), "a refused click terminated the backend"
            else:
                assert matrix.real_patches() == patches
    finally:
        if target is not None:
            await target.close()


@pytest.mark.parametrize("severity", ["P0", "P2"])
@pytest.mark.parametrize(
    ("canceller", "allowed"),
    [
        ("requester", True),
        ("commander", True),
        ("mitigator", True),
        ("group member", True),
        ("anyone else", False),
    ],
)
async def test_who_may_cancel(matrix: Matrix, severity: str, canceller: str, allowed: bool) -> None:
    """Withdrawing one's own request is always allowed, even on P0; anyone else not."""
    matrix.reset_cluster()
    pending = await matrix.propose(severity, "scale checkout 4")
    patches = matrix.real_patches()
    user = CONFIRMERS[canceller]
    reply = await matrix.click(severity, pending, user, confirm=False)
    status = await matrix.db(lambda s: s.get(PendingAction, pending.id).status)
    assert status == ("cancelled" if allowed else "pending"), reply
    assert matrix.real_patches() == patches
    kinds = [(kind, actor) for kind, actor, _ in await matrix.events(pending.id)]
    assert (("mitigation_cancelled" if allowed else "mitigation_refused"), user) in kinds


@pytest.mark.parametrize("severity", ["P0", "P2"])
async def test_who_may_request(matrix: Matrix, severity: str) -> None:
    """Anyone in the incident channel may ask (a request only runs a dry run and posts
    Confirm/Cancel); a requester without rights still cannot confirm his own."""
    matrix.reset_cluster()
    patches = matrix.real_patches()
    pending = await matrix.propose(severity, "restart checkout", user=EVE)
    assert pending.requested_by == EVE and pending.status == "pending"
    assert matrix.real_patches() == patches  # the dry run only
    assert [p for p in matrix.kube.patches if p.dry_run]
    reply = await matrix.click(severity, pending, EVE, confirm=True)
    assert "may not confirm" in reply or "someone other than the requester" in reply
    await matrix.click(severity, pending, BOB, confirm=True)
    status = await matrix.db(lambda s: s.get(PendingAction, pending.id).status)
    assert status == "executed" and matrix.real_patches() == patches + 1


async def test_no_request_outside_an_incident_channel(matrix: Matrix) -> None:
    before = len(matrix.slack.ephemeral_texts(DAN))
    await matrix.slack.command("mitigate restart checkout", user=DAN)
    [reply] = matrix.slack.ephemeral_texts(DAN)[before:]
    assert "only works in an incident channel" in reply


async def test_a_group_lookup_failure_fails_closed(matrix: Matrix) -> None:
    """When Slack cannot say who is in the mitigators' group, a member's click is refused
    (and logged), not waved through."""
    matrix.reset_cluster()
    pending = await matrix.propose("P2", "scale checkout 6")
    patches = matrix.real_patches()
    matrix.slack.emulator.inject_fault("usergroups.users.list", status=500, count=10)
    try:
        reply = await matrix.click("P2", pending, CAROL, confirm=True)
    finally:
        matrix.slack.emulator.clear_faults()
    assert "may not confirm" in reply
    assert matrix.real_patches() == patches
    refused = [
        (a, p["reason"]) for k, a, p in await matrix.events(pending.id) if k == "mitigation_refused"
    ]
    assert refused == [(CAROL, "not_authorised")]
    await matrix.click("P2", pending, CAROL, confirm=True)  # Slack answers again: she may
    assert matrix.real_patches() == patches + 1


async def test_a_click_forged_from_another_incident(matrix: Matrix) -> None:
    """Eve commands her own incident and puts a Confirm button carrying the ID of a
    request from Alice's incident into her channel: commanding one incident gives no
    say over another's mitigations."""
    matrix.reset_cluster()
    slack = matrix.slack
    await slack.command("declare P2 eve's own incident", user=EVE)
    mine = next(c for c in slack.incident_channels() if c.name.endswith("eve-s-own-incident"))
    await slack.command("commander <@U0EVE>", user=EVE, channel=mine.id)
    pending = await matrix.propose("P2", "scale checkout 7")
    patches = matrix.real_patches()
    button = Button("Confirm", CONFIRM_ACTION, str(pending.id))
    ts = await slack.app.services.chat.post(mine.id, Card.of(Section("forged"), Buttons((button,))))
    await slack.driver.click_button(EVE, mine.id, ts, CONFIRM_ACTION, value=str(pending.id))
    await slack.settle()
    assert matrix.real_patches() == patches
    assert await matrix.db(lambda s: s.get(PendingAction, pending.id).status) == "pending"
    refused = [
        (a, p["reason"]) for k, a, p in await matrix.events(pending.id) if k == "mitigation_refused"
    ]
    assert refused == [(EVE, "not_authorised")]
