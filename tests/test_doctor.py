"""`firebreak check --live` against the Slack emulator, the fake Kubernetes API, a real
Postgres and a real health endpoint: each problem named on its own line with its fix."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from aiohttp import web

from app.doctor import Finding, live_findings
from app.manifest import bot_scopes, load_manifest
from bot.actions import Executors, load_catalog
from bot.config import load_settings
from bot.executors import KubernetesExecutor, PostgresExecutor
from bot.executors.kubernetes import OPERATION_CALLS
from emulator import SlackEmulator
from emulator.kubernetes import FakeKubernetes
from handlers.http_check import HttpExecutor
from runbooks import BUNDLED
from storage.migrate import upgrade_database
from tests.databases import POSTGRES_URL, fresh_database
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class World:
    slack: SlackEmulator
    kube: FakeKubernetes
    env: dict[str, str]  # what `firebreak check` runs with
    kubeconfig: Path


def targets_file(folder: Path, health: str, closed: int) -> Path:
    """checkout: the fake cluster, the real Postgres, a healthy URL; payments: a cluster
    namespace too, and a database and health URL on a port where nothing listens."""
    path = folder / "targets.yml"
    path.write_text(
        f"""services:
  checkout:
    kubernetes: {{namespace: shop, deployment: checkout, selector: app=checkout}}
    postgres: {{url_env: CHECKOUT_DATABASE_URL}}
    http: {{health: "{health}"}}
  payments:
    postgres: {{url_env: PAYMENTS_DATABASE_URL}}
    http: {{health: "http://127.0.0.1:{closed}/healthz"}}
mitigators: [U0123ABCD]
"""
    )
    return path


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    workspace = seeded_workspace()
    workspace.add_channel("incidents", members=[ALICE])

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    health = web.Application()
    health.router.add_get("/health", healthy)
    runner = web.AppRunner(health, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    health_url = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
    closed = free_port()
    with fresh_database("postgres", tmp_path) as database_url:
        upgrade_database(database_url)
        async with (
            SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as slack,
            FakeKubernetes() as kube,
        ):
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            env = {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
                "DATABASE_URL": database_url,
                "FIREBREAK_TARGETS": str(targets_file(tmp_path, health_url, closed)),
                "CHECKOUT_DATABASE_URL": POSTGRES_URL,
                "PAYMENTS_DATABASE_URL": f"postgresql://firebreak:hunter2@127.0.0.1:{closed}/pay",
                "KUBECONFIG": str(kubeconfig),
            }
            try:
                yield World(slack, kube, env, kubeconfig)
            finally:
                await runner.cleanup()


async def check_live(world: World, cwd: Path) -> tuple[int, list[str]]:
    """`firebreak check --live` as a user runs it: its exit code and its lines."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FIREBREAK_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firebreak.cli",
        "check",
        "--live",
        "--timeout",
        "2",
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **world.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert not err.strip(), err.decode()
    return int(process.returncode or 0), out.decode().splitlines()


def line_of(lines: list[str], item: str) -> str:
    [line] = [line for line in lines if line.split(":", 1)[0].split(None, 1)[1] == item]
    return line


async def test_missing_scope_forbidden_verb_and_unreachable_target_each_named(
    world: World, tmp_path: Path
) -> None:
    world.slack.scopes.remove("pins:write")
    world.kube.forbid("patch", "deployments/scale")
    code, lines = await check_live(world, tmp_path)
    assert code == 1, lines
    scopes = line_of(lines, "slack scopes")
    assert scopes.startswith("failed") and "lacks pins:write" in scopes and "reinstall" in scopes
    kubernetes = line_of(lines, "target checkout/kubernetes")
    assert kubernetes.startswith("failed")
    assert "forbidden in namespace shop: patch deployments/scale" in kubernetes
    assert "patch deployments," not in kubernetes  # only what was refused is named
    payments = line_of(lines, "target payments/postgres")
    assert payments.startswith("failed") and "PAYMENTS_DATABASE_URL" in payments
    assert "hunter2" not in "\n".join(lines)
    assert line_of(lines, "target payments/health").startswith("failed")
    for fine in (
        "slack auth",
        "broadcast channel",
        "database",
        "target checkout/postgres",
        "target checkout/health",
    ):
        assert line_of(lines, fine).startswith("ok"), lines
    # Every line is one item with its status; nothing else is printed.
    assert all(line.split()[0] in ("ok", "warning", "failed") for line in lines)


async def test_all_good_exits_zero_and_asks_exactly_the_actions_permissions(
    world: World, tmp_path: Path
) -> None:
    del world.env["PAYMENTS_DATABASE_URL"]
    targets = Path(world.env["FIREBREAK_TARGETS"])
    targets.write_text(targets.read_text().split("  payments:")[0] + "mitigators: [U0123ABCD]\n")
    code, lines = await check_live(world, tmp_path)
    assert code == 0, lines
    assert not [line for line in lines if line.startswith("failed")]
    reviews = [r for r in world.kube.requests if r.path.endswith("selfsubjectaccessreviews")]
    catalog = load_catalog(BUNDLED / "actions", targets)
    operations = {a.operation for a in catalog.actions.values() if "kubernetes" in a.executors}
    calls = {call for op in operations for call in OPERATION_CALLS[op]}
    assert len(reviews) == len(calls)
    assert f"the {len(calls)} permissions the actions need in shop granted" in "\n".join(lines)


async def live(world: World, **env: str) -> list[Finding]:
    """The live checks in this process, with executors pointed at the fake cluster."""
    settings = load_settings({**world.env, **env}, require_slack=False)
    catalog = load_catalog(settings.runbooks_dir / "actions", settings.targets_file)
    executors = Executors(
        KubernetesExecutor(str(world.kubeconfig), timeout=2),
        PostgresExecutor({**world.env, **env}, timeout=2),
        HttpExecutor(timeout=2),
    )
    try:
        return await live_findings(settings, catalog, timeout=2, executors=executors)
    finally:
        executors.close()


def finding(findings: list[Finding], item: str) -> Finding:
    [found] = [f for f in findings if f.item == item]
    return found


async def test_broadcast_channel_missing_or_archived(world: World) -> None:
    missing = finding(await live(world, FIREBREAK_ANNOUNCE_CHANNEL="war-room"), "broadcast channel")
    assert missing.status == "failed" and "no public channel #war-room" in missing.detail
    assert "FIREBREAK_ANNOUNCE_CHANNEL" in missing.fix
    world.slack.workspace.channel_by_name("incidents").archived = True
    archived = finding(await live(world), "broadcast channel")
    assert archived.status == "failed" and "archived" in archived.detail


async def test_bad_token_kubernetes_down_and_an_unmigrated_database(
    world: World, tmp_path: Path
) -> None:
    await world.kube.stop()
    with fresh_database("sqlite", tmp_path) as empty:
        Path(empty.removeprefix("sqlite:///")).touch()
        found = await live(world, SLACK_BOT_TOKEN="xoxb-revoked", DATABASE_URL=empty)
    auth = finding(found, "slack auth")
    assert auth.status == "failed" and "invalid_auth" in auth.detail
    assert not [f for f in found if f.item in ("slack scopes", "broadcast channel")]
    kubernetes = finding(found, "target checkout/kubernetes")
    assert kubernetes.status == "failed" and "unreachable" in kubernetes.detail
    database = finding(found, "database")
    assert database.status == "warning" and "never migrated" in database.detail
    assert "firebreak db upgrade" in database.fix


async def test_socket_mode_app_token_is_tried(world: World) -> None:
    world.slack.app_token = "xapp-1-A0-1-good"
    good = finding(await live(world, SLACK_APP_TOKEN="xapp-1-A0-1-good"), "socket mode")
    assert good.status == "ok"
    bad = finding(await live(world, SLACK_APP_TOKEN="xapp-1-A0-1-stale"), "socket mode")
    assert bad.status == "failed" and "connections:write" in bad.fix


def test_the_emulator_grants_the_manifest_scopes_by_default() -> None:
    assert SlackEmulator().scopes == bot_scopes(load_manifest())
