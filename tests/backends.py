"""Real Prometheus and Redis for the metrics and cache tests.

Prometheus is Debian's `prometheus` binary, started here on a free loopback port with
its own config and storage in a temporary folder, scraping `Exporter` every second:
a tiny HTTP endpoint whose counters grow linearly with time, so every rate, ratio and
quantile the bundled queries compute has a known value. Redis is the machine's server
on 127.0.0.1:6379, used only in databases 13 to 15.

Where either is missing the tests skip with the reason, unless
FIREBREAK_REQUIRE_PROMETHEUS=1 / FIREBREAK_REQUIRE_REDIS=1 (set by .ci/run) make the
skip a failure, as FIREBREAK_REQUIRE_POSTGRES does for Postgres.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from tests.processes import free_port

REDIS_URL = os.environ.get("FIREBREAK_TEST_REDIS", "redis://127.0.0.1:6379")
PLANTED = "hunter2-planted"  # a secret the tests hide in alerts, INFO and the slowlog


def skip_or_fail(thing: str, reason: str) -> None:
    """Skip with `reason`, or fail when FIREBREAK_REQUIRE_<THING>=1 says CI needs it."""
    variable = f"FIREBREAK_REQUIRE_{thing.upper()}"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1)")
    pytest.skip(reason)


def redis_or_skip(db: int) -> str:
    """The URL of database `db` (13 to 15: ours alone) of the real Redis, emptied."""
    assert 13 <= db <= 15, "the tests keep to databases 13-15 of the shared Redis"
    url = f"{REDIS_URL}/{db}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        skip_or_fail("redis", f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}")
    return url


class Exporter:
    """`/metrics` in the text exposition format, for app="checkout" and a neighbour.

    checkout: 10 ok and 1 failed request a second (5xx ratio 1/11), latencies with 5,
    9, 10 and 11 of each 11 requests under 0.1, 0.25, 0.5 and 1 s (p95 725 ms),
    256 MiB of memory, half a core, 3 restarts long ago (increase 0). payments fails
    100 requests a second: a query that leaked past its selector would show it.
    """

    def __init__(self) -> None:
        self.started = time.time()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def text(self) -> str:
        now = time.time()
        t = now - self.started
        c, p = 'app="checkout"', 'app="payments"'
        lines = [
            f'http_requests_total{{{c},status="200"}} {10 * t}',
            f'http_requests_total{{{c},status="500"}} {1 * t}',
            f'http_requests_total{{{p},status="500"}} {100 * t}',
            *(
                f'http_request_duration_seconds_bucket{{{c},le="{le}"}} {n * t}'
                for le, n in (("0.1", 5), ("0.25", 9), ("0.5", 10), ("1", 11), ("+Inf", 11))
            ),
            f"http_request_duration_seconds_count{{{c}}} {11 * t}",
            f"container_memory_working_set_bytes{{{c}}} {256 * 2**20}",
            f"container_cpu_usage_seconds_total{{{c}}} {0.5 * t}",
            f"kube_pod_container_status_restarts_total{{{c}}} 3",
        ]
        # Each sample stamped with the moment its value was computed: under load a scrape
        # starts (Prometheus's own stamp) well before this runs, which would skew rates.
        stamp = int(now * 1000)
        return "".join(f"{line} {stamp}\n" for line in lines)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_RULES = f"""
groups:
  - name: firebreak-tests
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: sum by (app) (rate(http_requests_total{{app="checkout",status="500"}}[1m])) > 0
        labels: {{severity: page}}
        annotations: {{summary: "checkout 5xx above zero token={PLANTED}"}}
      - alert: CheckoutSlow
        expr: sum by (app) (rate(http_requests_total{{app="checkout"}}[1m])) > 0
        for: 1h
        labels: {{severity: ticket}}
      - alert: PaymentsErrors
        expr: sum by (app) (rate(http_requests_total{{app="payments",status="500"}}[1m])) > 0
        labels: {{severity: page}}
"""


@pytest.fixture(name="prometheus", scope="module")
def prometheus_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus per test module (it takes seconds to have data): its base URL."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


@contextmanager
def running_prometheus(folder: Path) -> Iterator[str]:
    """A real Prometheus scraping a fresh `Exporter`; yields its base URL once a rate
    and a firing alert can be read from it."""
    binary = shutil.which("prometheus")
    if binary is None:
        skip_or_fail("prometheus", "prometheus is not installed (apt-get install prometheus)")
    assert binary is not None
    exporter = Exporter()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yml").write_text(_RULES)
    (folder / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{folder / "rules.yml"}]
scrape_configs:
  - job_name: exporter
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
"""
    )
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_data(url, process, folder / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        exporter.close()


def _wait_for_data(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    query = urllib.parse.quote('sum(rate(http_requests_total{app="checkout"}[1m]))')
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            rates = _get(f"{url}/api/v1/query?query={query}")
            alerts = _get(f"{url}/api/v1/alerts")
        except OSError:
            rates = alerts = None
        if (
            isinstance(rates, dict)
            and rates["data"]["result"]
            and isinstance(alerts, dict)
            and any(a["state"] == "firing" for a in alerts["data"]["alerts"])
        ):
            return
        time.sleep(0.25)
    pytest.fail(f"prometheus had no data after 60s: {log.read_text()[-2000:]}")
