"""PrometheusExecutor through the real aiohttp client against a real Prometheus
(tests/backends.py), and behind tests/tcp_proxy.py when it is down or hanging."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from bot.actions.catalog import load_catalog
from bot.executors import ExecutorError, PrometheusExecutor, PrometheusTarget
from bot.executors.prometheus import DEFAULT_QUERIES
from bot.yamlfile import RunbookError
from handlers.prometheus_api import PrometheusHttpApi
from runbooks import BUNDLED
from tests.backends import PLANTED, prometheus_fixture  # noqa: F401
from tests.tcp_proxy import TcpProxy

ENV = "FIREBREAK_TEST_PROMETHEUS"
CHECKOUT = PrometheusTarget(
    ENV, (("app", "=", "checkout"),), tuple((n, q) for n, (q, _) in DEFAULT_QUERIES.items())
)


def executor(url: str, timeout: float = 5.0) -> PrometheusExecutor:
    return PrometheusExecutor(PrometheusHttpApi(timeout=timeout), {ENV: url}, timeout=timeout)


async def test_metrics_reads_the_seeds_queries_for_this_service_only(prometheus: str) -> None:
    result = await executor(prometheus).metrics(CHECKOUT, since=300)

    assert result.ok
    summary = result.summary
    assert summary.startswith("last 5m: ")
    assert "error ratio 9.09%" in summary  # 1 in 11; payments' 100/s 5xx left out
    assert "p95 latency 725 ms" in summary
    # rate() over 5m divides by the whole window, and this Prometheus has seconds of
    # data: the rates are real but small here, and exact through irate() below.
    assert re.search(r"request rate 0\.[0-9]+/s", summary)
    assert "memory 256 MiB" in summary and "restarts 0" in summary
    assert re.search(r"cpu 0\.[0-9]+ cores", summary)
    assert 'app="payments"' not in result.output
    assert 'error_ratio: sum(rate(http_requests_total{app="checkout",status=~"5.."}' in (
        result.output
    )
    [chart] = result.files
    assert chart.content.startswith(b"\x89PNG\r\n\x1a\n") and len(chart.content) > 5000
    assert chart.filename.endswith(".png")


async def test_rates_read_as_the_exporter_serves_them(prometheus: str) -> None:
    queries = tuple(
        (name, promql.replace("sum(rate(", "sum(irate("))
        for name, promql in CHECKOUT.queries
        if name in ("request_rate", "cpu")
    )
    result = await executor(prometheus).metrics(replace(CHECKOUT, queries=queries), since=300)

    found = re.fullmatch(r"last 5m: request rate ([0-9.]+)/s · cpu ([0-9.]+) cores", result.summary)
    assert found, result.summary
    assert 10.5 <= float(found.group(1)) <= 11.5 and 0.45 <= float(found.group(2)) <= 0.55


async def test_a_query_prometheus_rejects_is_shown_beside_the_others(prometheus: str) -> None:
    target = PrometheusTarget(
        ENV,
        (("app", "=", "checkout"),),
        (("broken", "sum(rate(http_requests_total{$selector}[5m])"), ("missing", "up{$selector}")),
    )
    result = await executor(prometheus).metrics(target, since=600)

    assert result.summary == "last 10m: broken error · missing no data"
    assert "Prometheus refused the request (bad_data)" in result.output


async def test_alerts_lists_the_services_firing_alerts_redacted(prometheus: str) -> None:
    result = await executor(prometheus).alerts(CHECKOUT)

    assert result.summary == "1 firing: CheckoutErrors (1 pending)"
    assert "CheckoutErrors" in result.output and "page" in result.output
    assert "PaymentsErrors" not in result.output
    assert PLANTED not in result.output + result.summary


async def test_prometheus_down_or_hanging_is_answered_within_the_timeout(
    prometheus: str,
) -> None:
    host, port = prometheus.removeprefix("http://").split(":")
    async with TcpProxy(host, int(port)) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(ExecutorError, match="Prometheus unreachable"):
            await executor(url, timeout=1).metrics(CHECKOUT, since=3600)
        assert time.monotonic() - started < 1

        await proxy.restore()
        await proxy.hold()
        started = time.monotonic()
        with pytest.raises(ExecutorError, match="did not answer within 1"):
            await executor(url, timeout=1).alerts(CHECKOUT)
        with pytest.raises(ExecutorError, match="did not answer within 1"):
            await executor(url, timeout=1).metrics(CHECKOUT, since=3600)
        assert time.monotonic() - started < 3


async def test_answers_that_are_not_prometheus_json_are_refused_clearly(
    aiohttp_answer: str,
) -> None:
    with pytest.raises(ExecutorError, match=r"Prometheus answered 502 without its JSON"):
        await executor(f"{aiohttp_answer}/proxy-error").alerts(CHECKOUT)
    with pytest.raises(ExecutorError, match=r"Prometheus answered more than 8 MiB"):
        await executor(f"{aiohttp_answer}/huge").alerts(CHECKOUT)


@pytest_asyncio.fixture(name="aiohttp_answer")
async def aiohttp_answer_fixture() -> AsyncIterator[str]:
    """A server in Prometheus's place: a proxy's error page, and an endless answer."""

    async def proxy_error(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(200):
            await response.write(b"[" * 2**16)
        return response

    application = web.Application()
    application.router.add_get("/proxy-error/api/v1/alerts", proxy_error)
    application.router.add_get("/huge/api/v1/alerts", huge)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_an_unset_url_variable_is_named() -> None:
    with pytest.raises(ExecutorError, match=f"{ENV} is not set"):
        await PrometheusExecutor(PrometheusHttpApi(), {}).metrics(CHECKOUT)


def targets(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "targets.yml"
    path.write_text(f"services:\n  checkout:\n    prometheus: {section}\n")
    return path


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ('{url_env: P, selector: "app=a\\"} or vector(1) #"}', "must be label=value"),
        ("{url_env: P, selector: 'app=a}'}", "must be label=value"),
        ("{url_env: 'http://prom:9090'}", "never the URL itself"),
        ("{url_env: P, queries: {up: 'up'}}", "must scope itself to the service with $selector"),
        ("{url_env: P, queries: {Up: 'up{$selector}'}}", "query name `Up`"),
        ("{url_env: P, queries: {}}", "queries is empty"),
    ],
)
def test_the_catalog_refuses_unsafe_prometheus_sections(
    tmp_path: Path, section: str, error: str
) -> None:
    with pytest.raises(RunbookError, match=re.escape(error)):
        load_catalog(BUNDLED / "actions", targets(tmp_path, section))


def test_the_selector_defaults_to_the_kubernetes_one_with_prometheus_label_names(
    tmp_path: Path,
) -> None:
    path = tmp_path / "targets.yml"
    path.write_text(
        "services:\n  checkout:\n"
        "    kubernetes: {namespace: shop, deployment: checkout, "
        "selector: 'app.kubernetes.io/name=checkout,tier!=canary'}\n"
        "    prometheus: {url_env: P}\n"
    )
    target = load_catalog(BUNDLED / "actions", path).targets["checkout"].prometheus
    assert target is not None
    assert target.matchers() == 'app_kubernetes_io_name="checkout",tier!="canary"'
    assert [name for name, _ in target.queries] == list(DEFAULT_QUERIES)
