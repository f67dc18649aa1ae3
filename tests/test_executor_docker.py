"""DockerExecutor through the real docker SDK against emulator/docker.py, over a unix
socket (and tcp:// where the address matters)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from bot.executors import (
    DockerExecutor,
    DockerTarget,
    ExecutorError,
    OutcomeUnknown,
    StateChanged,
)
from bot.executors import docker as docker_module
from bot.executors.docker import ROLLED_BACK_FROM
from emulator.docker import FakeDocker

ENV = "SHOP_DOCKER_HOST"
TARGET = DockerTarget(ENV, "shop", "checkout")
REPO = "registry.example.com/shop/checkout"
# Log lines stamped a few minutes ago, inside every `since` window the tests ask for.
STAMP = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A unix socket path must stay under ~107 bytes: pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="fd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture
async def engine(short_dir: Path) -> AsyncIterator[FakeDocker]:
    """checkout (two containers, one unhealthy and OOM-killed twice) on 1.4.2, with
    1.4.0 and 1.4.1 of its repository on the engine, a newer release candidate, another
    repository, and a container of another project."""
    async with FakeDocker(socket_path=short_dir / "docker.sock") as server:
        server.image(f"{REPO}:1.4.0", ago=3 * 86400)
        server.image(f"{REPO}:1.4.1", ago=86400)
        server.image(f"{REPO}:1.4.2", ago=3600)
        server.image(f"{REPO}:1.5.0-rc1", ago=60)  # newer than the running one: not "previous"
        server.image("registry.example.com/shop/payments:2.0", ago=600)
        server.container(
            "shop-checkout-1",
            f"{REPO}:1.4.2",
            project="shop",
            service="checkout",
            env=["DATABASE_URL=postgres://app:hunter2@db/app"],
            health="healthy",
        )
        server.container(
            "shop-checkout-2",
            f"{REPO}:1.4.2",
            project="shop",
            service="checkout",
            number=2,
            health="unhealthy",
            restarts=2,
            oom=True,
        )
        server.container("other-checkout-1", f"{REPO}:1.4.2", project="other", service="checkout")
        yield server


@pytest.fixture
def executor(engine: FakeDocker) -> Iterator[DockerExecutor]:
    ex = DockerExecutor({ENV: engine.url}, timeout=2)
    yield ex
    ex.close()


def texts(output: str) -> list[str]:
    return [line.split("  ", 1)[1] for line in output.splitlines() if "  " in line]


# -- diagnostics --------------------------------------------------------------------------


async def test_containers_of_the_compose_service_only(engine, executor):
    result = await executor.containers(TARGET)
    assert result.summary == "2 containers: 2 running (2 restarts, 1 OOMKilled)"
    assert "other-checkout-1" not in result.output
    row = next(line for line in result.output.splitlines() if "shop-checkout-2" in line)
    assert "unhealthy" in row and "yes" in row and f"{REPO}:1.4.2" in row
    listing = next(r for r in engine.requests if r.path.endswith("/containers/json"))
    assert "com.docker.compose.project=shop" in listing.query["filters"]
    assert listing.query["all"] in ("1", "True", "true")


async def test_logs_merge_both_containers_and_both_streams_by_time(engine, executor):
    engine.set_log("shop-checkout-1", f"{STAMP}:01Z one boot\n{STAMP}:04Z one ready\n")
    engine.set_log("shop-checkout-1", f"{STAMP}:03Z one warns on stderr\n", stream=2)
    engine.set_log("shop-checkout-2", f"{STAMP}:02Z two boot\n{STAMP}:05Z token=abc123\n")
    result = await executor.logs(TARGET, tail=4)
    assert result.output.splitlines() == [
        f"{STAMP[11:]}:02 shop-checkout-2  two boot",
        f"{STAMP[11:]}:03 shop-checkout-1  one warns on stderr",
        f"{STAMP[11:]}:04 shop-checkout-1  one ready",
        f"{STAMP[11:]}:05 shop-checkout-2  token=***",
    ]
    assert result.summary.startswith("last 4 log lines of Compose service shop/checkout")
    query = next(r for r in engine.requests if r.path.endswith("/logs")).query
    assert query["timestamps"] in ("1", "True", "true") and query["tail"] == "4"


async def test_logs_grep_and_since(engine, executor):
    engine.set_log(
        "shop-checkout-1", "old ERROR conn reset\nERROR Conn Reset .*\nok\n", spacing=600
    )
    before = int(time.time())
    result = await executor.logs(TARGET, since=900, grep="conn reset .*")
    assert texts(result.output) == ["ERROR Conn Reset .*"]
    query = next(r for r in engine.requests if r.path.endswith("/logs")).query
    assert before - 900 <= int(query["since"]) <= int(time.time()) - 900
    assert query["tail"] == "20000"  # the filter's scan limit, not the user's tail


async def test_logs_of_one_named_container_and_refusals(engine, executor):
    engine.set_log("shop-checkout-2", "oom soon\n")
    result = await executor.logs(TARGET, pod="shop-checkout-2")
    assert texts(result.output) == ["oom soon"]
    with pytest.raises(ExecutorError, match="other-checkout-1 is not one of Compose service"):
        await executor.logs(TARGET, pod="other-checkout-1")
    with pytest.raises(ExecutorError, match="leave out `previous`"):
        await executor.logs(TARGET, previous=True)


async def test_errors_are_grouped_across_containers(engine, executor):
    engine.set_log("shop-checkout-1", "ERROR upstream 10.0.0.7 timed out after 3000ms\n")
    engine.set_log("shop-checkout-2", "ERROR upstream 10.0.0.9 timed out after 2999ms\ninfo\n")
    result = await executor.errors(TARGET, since=3600)
    assert result.details["top"] == [
        {"message": "ERROR upstream <ip> timed out after <n>ms", "count": 2}
    ]
    assert result.summary.startswith("2 error/warning lines of 1 kinds in the last 1h")


async def test_stats_computes_cpu_and_memory_like_the_cli(engine, executor):
    engine.set_stats("shop-checkout-2", cpu_percent=87.5, memory=480 * 2**20, limit=512 * 2**20)
    result = await executor.stats(TARGET)
    assert result.details["containers"]["shop-checkout-2"] == {
        "cpu_percent": 87.5,
        "memory_percent": 93.8,
    }
    assert result.summary == (
        "2 running containers; highest memory: shop-checkout-2 93.8% of its limit"
    )
    assert "480.0MiB / 512.0MiB" in result.output
    query = next(r for r in engine.requests if r.path.endswith("/stats")).query
    assert query["stream"] in ("0", "False", "false")


async def test_health_is_not_ok_when_a_container_is_unhealthy(executor):
    result = await executor.health(TARGET)
    assert not result.ok
    assert result.summary == "2 containers: 1 healthy, 1 unhealthy"
    assert "curl: (7) Failed to connect" in result.output


async def test_environment_values_are_never_shown(executor):
    for diagnostic in (executor.containers, executor.health, executor.stats, executor.logs):
        result = await diagnostic(TARGET)
        assert "hunter2" not in result.output + result.summary


# -- mitigations --------------------------------------------------------------------------


async def test_restart_dry_run_then_confirmed_with_its_pin(engine, executor):
    before = engine.inspect("shop-checkout-1")["State"]["StartedAt"]
    dry = await executor.restart(TARGET, dry_run=True)
    assert dry.summary == "dry run: would have restarted 2 containers of shop/checkout"
    assert not [r for r in engine.requests if r.method == "POST"]
    done = await executor.restart(TARGET, dry_run=False, pinned=dry.details["pinned"])
    assert done.details["restarted"] == ["shop-checkout-1", "shop-checkout-2"]
    restarts = [r for r in engine.requests if r.path.endswith("/restart")]
    assert len(restarts) == 2 and restarts[0].query["t"] == "10"
    assert engine.inspect("shop-checkout-1")["State"]["StartedAt"] != before


async def test_a_restart_answered_late_is_read_back(engine, monkeypatch):
    """No answer within the timeout: StartedAt moved, so it landed; when it has not
    moved (the engine holds it before acting), the outcome is unknown, not a failure."""
    monkeypatch.setattr(docker_module, "STOP_GRACE", 0)
    ex = DockerExecutor({ENV: engine.url}, timeout=1)
    await ex.containers(TARGET)  # the client is negotiated before the engine slows down
    engine.write_delay = 3
    done = await ex.restart(TARGET, dry_run=False)
    assert done.summary == "restarted 2 containers of shop/checkout"
    engine.apply_late = True
    with pytest.raises(OutcomeUnknown, match="shop-checkout-1 has not restarted yet"):
        await ex.restart(TARGET, dry_run=False)
    engine.write_delay, engine.apply_late = 0, False
    ex.close()


async def test_restart_refused_when_the_containers_changed_since_the_dry_run(engine, executor):
    dry = await executor.restart(TARGET, dry_run=True)
    engine.container("shop-checkout-3", f"{REPO}:1.4.2", project="shop", service="checkout")
    with pytest.raises(StateChanged, match="containers changed since this dry run"):
        await executor.restart(TARGET, dry_run=False, pinned=dry.details["pinned"])
    assert not [r for r in engine.requests if r.path.endswith("/restart")]


async def test_rollback_recreates_each_container_from_the_previous_image(engine, executor):
    dry = await executor.rollback(TARGET, None, dry_run=True)
    assert dry.summary == (
        f"dry run: would have rolled shop/checkout back from {REPO}:1.4.2 to {REPO}:1.4.1"
    )
    assert engine.names() == ["other-checkout-1", "shop-checkout-1", "shop-checkout-2"]
    assert not [r for r in engine.requests if r.method in ("POST", "DELETE")]

    done = await executor.rollback(TARGET, None, dry_run=False, pinned=dry.details["pinned"])
    assert done.summary == f"rolled shop/checkout back from {REPO}:1.4.2 to {REPO}:1.4.1"
    assert engine.names() == ["other-checkout-1", "shop-checkout-1", "shop-checkout-2"]
    new = engine.inspect("shop-checkout-1")
    assert new["State"]["Running"] and new["Image"] == engine.images[new["Image"]]["Id"]
    assert engine.images[new["Image"]]["RepoTags"] == [f"{REPO}:1.4.1"]
    config = new["Config"]
    assert "DATABASE_URL=postgres://app:hunter2@db/app" in config["Env"]  # its own, kept
    assert f"APP_VERSION={REPO}:1.4.1" in config["Env"]  # the image's, from the older image
    assert f"APP_VERSION={REPO}:1.4.2" not in config["Env"]
    assert config["Labels"]["com.docker.compose.service"] == "checkout"
    assert config["Labels"]["org.opencontainers.image.version"] == "1.4.1"
    assert config["Labels"][ROLLED_BACK_FROM] == f"{REPO}:1.4.2"
    assert "hunter2" not in done.output + dry.output
    steps = [(r.method, r.path.rsplit("/", 1)[-1]) for r in engine.requests]
    assert steps.count(("POST", "create")) == 2 and steps.count(("POST", "stop")) == 2


async def test_rollback_refusals(engine, executor):
    with pytest.raises(ExecutorError, match="no numbered revisions"):
        await executor.rollback(TARGET, 3, dry_run=True)
    dry = await executor.rollback(TARGET, None, dry_run=True)
    await executor.restart(TARGET, dry_run=False)  # same containers: still fine
    await executor.rollback(TARGET, None, dry_run=False, pinned=dry.details["pinned"])
    with pytest.raises(StateChanged):  # the containers were replaced by the first rollback
        await executor.rollback(TARGET, None, dry_run=False, pinned=dry.details["pinned"])


async def test_rollback_without_an_earlier_image(engine, executor):
    for ident, image in list(engine.images.items()):
        if image["RepoTags"][0].endswith((":1.4.0", ":1.4.1")):
            del engine.images[ident]
    with pytest.raises(ExecutorError, match=f"no earlier image of {REPO} on the engine"):
        await executor.rollback(TARGET, None, dry_run=True)


# -- the engine's address, and an engine down or hanging ------------------------------------


async def test_tcp_address_works_too() -> None:
    async with FakeDocker() as server:
        server.image("app:1")
        server.container("p-app-1", "app:1", project="p", service="app")
        ex = DockerExecutor({ENV: server.url}, timeout=2)
        assert server.url.startswith("tcp://127.0.0.1:")
        result = await ex.containers(DockerTarget(ENV, "p", "app"))
        assert result.summary == "1 containers: 1 running"
        ex.close()


async def test_address_mistakes_are_named() -> None:
    with pytest.raises(ExecutorError, match=f"environment variable {ENV} is not set"):
        await DockerExecutor({}).containers(TARGET)
    with pytest.raises(ExecutorError, match="must hold unix:///path/docker.sock or tcp://"):
        await DockerExecutor({ENV: "http://x:2375"}).containers(TARGET)


async def test_engine_down_is_unreachable(engine, executor, short_dir):
    await engine.stop()
    with pytest.raises(ExecutorError, match="Docker Engine unreachable"):
        await executor.containers(TARGET)
    missing = DockerExecutor({ENV: f"unix://{short_dir}/nothing.sock"}, timeout=1)
    with pytest.raises(ExecutorError, match="Docker Engine unreachable"):
        await missing.containers(TARGET)


async def test_engine_hanging_answers_within_the_timeout(engine, short_dir):
    engine.delay = 30
    ex = DockerExecutor({ENV: engine.url}, timeout=1)
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"timeout after 1s"):
        await ex.containers(TARGET)
    assert time.monotonic() - started < 3
    engine.delay = 0
    ex.close()


# -- the multiplexed stream ---------------------------------------------------------------


async def test_logs_are_the_engines_multiplexed_stream(engine):
    engine.set_log("shop-checkout-1", f"{STAMP}:01Z out\n")
    engine.set_log("shop-checkout-1", f"{STAMP}:02Z err\n", stream=2)
    url = engine.url.replace("unix://", "")
    body = await asyncio.to_thread(_raw_logs, url)
    frames = []
    while body:
        stream, size = struct.unpack(">BxxxL", body[:8])
        frames.append((stream, body[8 : 8 + size].decode()))
        body = body[8 + size :]
    assert frames == [
        (1, f"{STAMP}:01.000000000Z out\n"),
        (2, f"{STAMP}:02.000000000Z err\n"),
    ]


def _raw_logs(socket_path: str) -> bytes:
    """GET the logs over the socket with no client library in between."""
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(socket_path)
        sock.sendall(
            b"GET /v1.47/containers/shop-checkout-1/logs?stdout=1&stderr=1&timestamps=1 "
            b"HTTP/1.0\r\nHost: docker\r\n\r\n"
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert b"application/vnd.docker.multiplexed-stream" in head
    return body
