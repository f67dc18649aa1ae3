"""`metrics`, `alerts`, `redis` and `flush-cache` end to end: the real grammar and
ActionService, Bolt's button listeners over signed HTTP, the Slack emulator, a real
Prometheus (tests/backends.py) and the real Redis (database 13)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import redis.asyncio as aioredis

from bot.actions import Executors
from bot.executors import KubernetesExecutor, PostgresExecutor, PrometheusExecutor, RedisExecutor
from emulator.docker import FakeDocker
from emulator.kubernetes import FakeKubernetes
from handlers.http_check import HttpExecutor
from handlers.prometheus_api import PrometheusHttpApi
from tests.action_rig import Rig, engine_fixture, kube_fixture, running_rig  # noqa: F401
from tests.backends import PLANTED, prometheus_fixture, redis_or_skip  # noqa: F401
from tests.harness import BOB
from tests.processes import free_port

TIMEOUT = 2.0  # the executors'; the action's own is the service default


@pytest_asyncio.fixture(name="rig")
async def metrics_rig(
    database_url: str, kube: FakeKubernetes, engine: FakeDocker, prometheus: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    """checkout has a working Prometheus and Redis db 13; billing's Prometheus and
    Redis are a closed port."""
    closed = f"127.0.0.1:{free_port()}"
    environ = {
        "PROM": prometheus,
        "DOWN_PROM": f"http://{closed}",
        "CACHE": redis_or_skip(13),
        "DOWN_CACHE": f"redis://{closed}/13",
    }
    services = """
  checkout:
    prometheus: {url_env: PROM, selector: app=checkout}
    redis: {url_env: CACHE}
  billing:
    prometheus: {url_env: DOWN_PROM}
    redis: {url_env: DOWN_CACHE}
"""
    executors = Executors(
        kubernetes=KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kube")), timeout=1),
        postgres=PostgresExecutor({}),
        http=HttpExecutor(),
        prometheus=PrometheusExecutor(PrometheusHttpApi(TIMEOUT), environ, TIMEOUT),
        redis=RedisExecutor(environ, TIMEOUT),
    )
    async with running_rig(database_url, kube, engine, services, executors, tmp_path) as rig:
        yield rig
    redis_or_skip(13)


async def test_metrics_posts_values_in_the_channel_and_the_chart_in_the_thread(rig: Rig) -> None:
    assert await rig.diag("metrics checkout since=90m") == ""
    summary, output, upload = rig.messages()[-3:]
    assert "`metrics checkout since=1h30m`" in summary["text"]
    assert "last 1h30m: error ratio 9.09% · p95 latency 725 ms" in summary["text"]
    assert output["thread_ts"] == upload["thread_ts"] == summary["ts"]
    assert "error_ratio" in output["blocks"][0]["text"]["text"]
    [chart] = rig.slack.workspace.files.values()
    assert chart.name.startswith("metrics-") and chart.name.endswith(".png")
    assert chart.data is not None and chart.data.startswith(b"\x89PNG")
    [(_, _, logged)] = [e for e in await rig.events("diagnostic") if e[0] == "diagnostic"]
    assert logged["ok"] is True and logged["thread_ts"] == summary["ts"]


async def test_bad_parameters_are_refused_before_anything_runs(rig: Rig) -> None:
    before = len(rig.messages())
    for word, shown in (("forever", "forever"), ("8d", "8d"), ("1m", "1m")):
        reply = await rig.diag(f"metrics checkout since={word}")
        assert reply.startswith(
            f"`since` must be a duration from 5m to 168h, like 30m or 2h; got `{shown}`."
        )
        assert "Usage: `/incident diag metrics <service> [<since>]`" in reply
    reply = await rig.mitigate("flush-cache checkout db=16")
    assert reply.startswith("`db` must be from 0 to 15; got `16`.")
    assert len(rig.messages()) == before and not rig.slack.workspace.files


async def test_alerts_shows_the_services_firing_alerts(rig: Rig) -> None:
    assert await rig.diag("alerts checkout") == ""
    summary, output = rig.messages()[-2:]
    assert "1 firing: CheckoutErrors (1 pending)" in summary["text"]
    assert "CheckoutErrors" in output["text"] and "PaymentsErrors" not in output["text"]
    assert PLANTED not in str(rig.messages())


async def test_backends_down_are_answered_within_the_timeout(rig: Rig) -> None:
    for command, why in (
        ("metrics billing", "Prometheus unreachable"),
        ("alerts billing", "Prometheus unreachable"),
        ("redis billing", "Redis unreachable"),
    ):
        started = time.monotonic()
        assert await rig.diag(command) == ""
        assert time.monotonic() - started < TIMEOUT + 1
        assert why in rig.messages()[-1]["text"]


async def test_redis_report_in_the_channel(rig: Rig) -> None:
    assert await rig.diag("redis checkout") == ""
    summary, output = rig.messages()[-2:]
    assert "`redis checkout`" in summary["text"] and "hit ratio" in summary["text"]
    assert "slowlog" in output["text"]


async def test_flush_cache_dry_run_confirm_and_audit(rig: Rig) -> None:
    cache = aioredis.Redis.from_url(redis_or_skip(13))
    await cache.mset({f"k{i}": i for i in range(40)})

    assert await rig.mitigate("flush-cache checkout") == ""
    shown = (await rig.proposal(1))["shown"]
    assert "dry run: would delete every key of db 13 (40 keys)" in shown
    assert await cache.dbsize() == 40

    await rig.click(BOB)
    assert await cache.dbsize() == 0
    assert "flushed db 13: 40 keys deleted" in str(rig.messages()[-1])
    kinds = [kind for kind, _, _ in await rig.events("mitigation")]
    assert "mitigation_confirmed" in kinds and "mitigation_executed" in kinds
    await cache.aclose()
