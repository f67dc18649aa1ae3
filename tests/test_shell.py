"""`firebreak shell` and `firebreak demo`, driven as a person would drive them.

The shell runs as a subprocess with its stdin a pipe; lines go in, and the
assertions read what it printed (plain text: colour is off when stdout is not
a terminal). Nothing inside is mocked: the shell runs the real Bolt app against
the Slack emulator and a SQLite database.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.actions.catalog import load_catalog
from bot.executors import DockerExecutor, PrometheusExecutor, RedisExecutor, StateChanged
from bot.executors.base import DockerTarget, KubernetesTarget, RedisTarget
from bot.executors.kubernetes import KubernetesExecutor
from devtools import demo
from devtools.text import Style, to_text
from emulator.cluster import DOCKER_HOST_ENV, PROMETHEUS_ENV, REDIS_ENV, SimulatedCluster
from handlers.prometheus_api import PrometheusHttpApi
from runbooks import BUNDLED
from tests.harness import seeded_workspace

ROOT = Path(__file__).resolve().parents[1]
# `firebreak shell|demo` as modules, so they run from the checkout without installing.
MODULES = {"shell": ("devtools.shell", "shell"), "demo": ("devtools.demo",)}


async def firebreak(
    command: str, *args: str, lines: Sequence[str] = (), cwd: Path, timeout: float = 60
) -> tuple[int, str]:
    """Run `firebreak COMMAND ARGS` with `lines` on stdin; (exit code, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBREAK_")}
    env.pop("KUBECONFIG", None)
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *MODULES[command],
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdin = "".join(line + "\n" for line in lines).encode()
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode is not None
    assert not err, err.decode()
    return process.returncode, out.decode()


def after(out: str, line: str) -> str:
    """What the shell printed in answer to `line` (up to the next prompt)."""
    start = out.index("> " + line + "\n") + len(line) + 3
    following = re.search(r"^\w+@#[\w-]+> ", out[start:], re.MULTILINE)
    return out[start : start + following.start()] if following else out[start:]


async def test_incident_lifecycle_in_the_shell(tmp_path: Path) -> None:
    script = [
        "/incident declare P1 api down",
        ":join #incident",
        ":tick 1",
        "/incident diag errors backend",
        "/incident update Rolled back the 1.4.2 deploy",
        ":as bob",
        "/incident commander @bob",
        "On it, watching the error rate",
        ":wait 16m",
        "/incident resolve Fixed by the rollback",
        ":quit",
        "/incident declare P1 never sent",
    ]
    code, out = await firebreak("shell", lines=script, cwd=tmp_path)

    assert code == 0
    assert "\x1b[" not in out  # no colour codes when stdout is a pipe
    assert (tmp_path / "firebreak-local.db").is_file()

    declared = after(out, "/incident declare P1 api down")
    channel = re.search(r"Declared P1 incident #(incident-\d{8}-api-down)\.", declared)
    assert channel, declared
    assert f"You were added to #{channel[1]}. Open it with :join #{channel[1]}" in declared
    assert "#incidents ▸ firebreak: :rotating_light: P1 incident declared: api down" in declared

    joined = after(out, ":join #incident")
    assert f"#{channel[1]} · public · 2 members" in joined
    assert "topic: P1 · investigating · IC unassigned · api down" in joined
    assert "[ ]  1. Acknowledge the alert in the paging system" in joined

    ticked = after(out, ":tick 1")
    assert "Detection & Triage (1/7)" in ticked
    assert re.search(r"\[x\]  1\. Acknowledge the alert in the paging system — @alice", ticked)
    assert "[ ]  2." not in ticked  # only what changed is printed

    errors = after(out, "/incident diag errors backend")  # the simulated Compose host
    assert "36 error/warning lines of 2 kinds in the last 1h" in errors, errors
    assert "demo-secret" not in errors

    updated = after(out, "/incident update Rolled back the 1.4.2 deploy")
    assert re.search(r"\[\d+\] firebreak · \d\d:\d\d\n.*Update.*@alice", updated)
    assert "Rolled back the 1.4.2 deploy" in updated

    assert "You are now bob (not a member of" in after(out, ":as bob")
    assigned = after(out, "/incident commander @bob")
    assert "→ bob joined (added by firebreak)" in assigned
    assert "@bob is now the commander, set by @bob." in assigned
    assert "set the channel topic: P1 · investigating · IC @bob · api down" in assigned
    assert re.search(r"\[\d+\] bob · .*\n    On it, watching the error rate", out)

    waited = after(out, ":wait 16m")
    assert re.search(r"⏩ 16m later: \d\d:\d\d UTC", waited)
    assert "@bob, a status update is due: 15m since the last one." in waited  # on time
    assert "(1) Post update" in waited

    resolved = after(out, "/incident resolve Fixed by the rollback")
    assert "Resolved: api down (P1)" in resolved and "by @bob" in resolved
    assert "Fix: Fixed by the rollback" in resolved
    assert "set the channel topic: P1 · resolved · IC @bob · api down" in resolved
    assert "never sent" not in out.split("> :quit")[1]  # nothing runs after :quit


async def test_declare_modal_prompts_each_field(tmp_path: Path) -> None:
    # Title, severity (9 refused, then 2), description, commander, no service, not private.
    answers = ["/incident", "db is slow", "9", "2", "orders time out", "@carol", "", ""]
    answers.append(":channels")
    code, out = await firebreak("shell", lines=answers, cwd=tmp_path)

    assert code == 0
    form = after(out, "/incident")
    assert "┌ Declare an incident" in form
    assert "│   2. P1 · High" in form
    assert "choose 1-4 for Severity" in out  # "9" is refused and asked again
    assert "│ a number [P2]> 2" in out and "│ a name> @carol" in out
    assert "│ Affected service (optional)\n│   1. checkout" in out
    assert "└ submitted" in out
    assert re.search(r"Declared P1 incident #incident-\d{8}-db-is-slow\.", out)
    listing = after(out, ":channels")
    assert re.search(
        # The checklist, and the scenario guessed from "db" (no service picked: no digest).
        r"#incident-\d{8}-db-is-slow · 2 messages · P1 · investigating · IC @carol",
        listing,
    )


async def test_demo_plays_an_incident_to_its_write_up(tmp_path: Path) -> None:
    code, out = await firebreak("demo", "--out", "out", cwd=tmp_path)

    assert code == 0, out
    assert "━━ Alertmanager fires: checkout's 502 rate is critical" in out
    assert "The new pods are crash-looping: OOMKilled" in out  # the thread reply
    assert ":pushpin: 1 (alice)" in out
    assert "changed the severity from P1 to P0" in out
    # Paged from the declare, acknowledged by Bob (who becomes commander), published.
    assert "Paged checkout on PagerDuty: Bob Example is on call" in out
    assert "Bob Example acknowledged the page in PagerDuty, and is now the commander" in out
    assert "Published to the status page (identified), confirmed by @carol" in out
    assert "✗" not in out
    assert "CrashLoopBackOff" in after(out, "/incident diag pods checkout")
    assert "last 2h: error ratio " in after(out, "/incident diag metrics checkout since=2h")
    cache = after(out, "/incident diag redis checkout")  # the Redis fake, through redis-py
    assert "memory 230.7 MiB of 256 MiB (90%) · 4210 evicted" in cache, cache
    assert re.search(r"48\.2 ms +KEYS cart:\*\n.*11\.8 ms +HGETALL cart:ord_5c1e\n", cache)
    assert "AUTH (2 args hidden)" in cache and "demo-secret" not in cache
    containers = after(out, "/incident diag containers backend")  # the Docker Engine fake
    assert "`containers backend` found: 2 containers: 2 running (3 restarts)" in containers
    assert re.search(r"prod-backend-2 +running +unhealthy +3 ", containers), containers
    # Unasked: the scenario guessed at declare, its diagnostics run and posted with their
    # output in threads, and a mitigation offered that runs only once confirmed.
    joined = after(out, ":join #incident-")
    assert "Looks like Application crash on checkout (matched: 502)" in joined
    assert "Triage of Application crash on checkout: diagnostics" in joined
    assert "`pods checkout`: 3 pods: 2 Running, 1 CrashLoopBackOff" in joined
    assert "fatal error: runtime: out of memory" in joined  # the logs, in the thread
    assert "(1) Propose restart   (2) Propose rollback" in joined
    assert "Mitigation proposed by @alice: `rollback checkout`" in after(out, ":click 2")
    assert "Confirmed by @bob: rolled checkout back" in out
    written = re.search(r"^Post-mortem: (.+\.md)$", out, re.MULTILINE)
    assert written, out[-2000:]
    text = (tmp_path / written[1]).read_text()
    for scripted in (
        "Checkout API returning 502s",
        "Rolled back checkout to 1.4.1; error rate falling",
        "Rolled back the bad 1.4.2 deploy; 502s stopped",
        "502s started right after the checkout 1.4.2 deploy",  # the pinned finding
        "**Scenario** · guessed Application crash on checkout (matched: 502)",
        "**Diagnostic** · Firebreak ran pods checkout: 3 pods",
    ):
        assert scripted in text
    # Opened from the alert: when impact began, how long detection took, and its links.
    assert "| Time to detect |" in text and "runbooks.example.com" in text
    public = text.split("## Public communication")[1].split("\n## ")[0]
    assert "**Identified** · The issue affecting Checkout has been identified" in public


async def test_demo_exits_1_when_a_step_fails(tmp_path: Path, capsys: Any) -> None:
    script = [("Declared", "/incident declare P2 disk filling"), ("A box that isn't", ":tick 99")]

    code = await demo._demo(tmp_path, script)

    out = capsys.readouterr().out
    assert code == 1
    assert "✗ step failed: :tick 99" in out
    assert "✗ step failed: /incident declare" not in out
    assert "✗ no post-mortem was written" in out  # the script never closes


def test_mrkdwn_reads_as_text_and_colour_is_optional() -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general")
    text = f"*Update* from <@U0BOB>: <#{general.id}> &lt;ok&gt; `code` :memo:\n> quoted"

    assert to_text(workspace, text, Style(color=False)) == [
        "Update from @bob: #general <ok> `code` :memo:",
        "│ quoted",
    ]
    coloured = to_text(workspace, text, Style(color=True))
    assert "\x1b[1mUpdate\x1b[0m" in coloured[0] and "📝" in coloured[0]


async def test_the_demo_cluster_answers_the_real_kubernetes_executor(tmp_path: Path) -> None:
    async with SimulatedCluster() as cluster:
        cluster.write_demo_files(tmp_path)
        executor = KubernetesExecutor(str(tmp_path / "kubeconfig"))
        target = KubernetesTarget("shop", "checkout", "app=checkout")
        try:
            pods = await executor.pods(target)
            assert pods.summary == "3 pods: 2 Running, 1 CrashLoopBackOff (7 restarts, 1 OOMKilled)"
            logs = await executor.logs(target, previous=True)
            assert "out of memory" in logs.output

            rolled = await executor.rollback(target, None, dry_run=False)
            assert rolled.summary.startswith("rolled checkout back from revision 7 to 6")
            assert (await executor.pods(target)).summary == "3 pods: 3 Running"
        finally:
            executor.close()


async def test_the_demo_prometheus_follows_the_cluster(tmp_path: Path) -> None:
    async with SimulatedCluster() as cluster:
        catalog = load_catalog(BUNDLED / "actions", cluster.write_demo_files(tmp_path))
        target = catalog.targets["checkout"].prometheus
        assert target is not None
        environ = {PROMETHEUS_ENV: cluster.prometheus.base_url}
        executor = PrometheusExecutor(PrometheusHttpApi(), environ)
        kubernetes = KubernetesExecutor(str(tmp_path / "kubeconfig"))
        try:
            bad = await executor.metrics(target, since=7200)
            found = r"last 2h: error ratio (2\d|3\d)\.?\d*% · p95 latency (1|2),\d+ ms"
            assert re.match(found, bad.summary), bad.summary
            assert (
                bad.files and (await executor.alerts(target)).summary == "1 firing: CheckoutHigh5xx"
            )

            await kubernetes.rollback(
                KubernetesTarget("shop", "checkout", "app=checkout"), None, dry_run=False
            )
            good = await executor.metrics(target, since=7200)
            assert re.match(r"last 2h: error ratio 0\.\d+% · p95 latency 1\d\d ms", good.summary)
            assert (await executor.alerts(target)).summary == "no firing alerts"
        finally:
            kubernetes.close()


async def test_the_demo_compose_host_answers_the_real_docker_executor(tmp_path: Path) -> None:
    async with SimulatedCluster() as cluster:
        executor = DockerExecutor({DOCKER_HOST_ENV: cluster.docker.url})
        target = DockerTarget(DOCKER_HOST_ENV, "prod", "backend")
        try:
            health = await executor.health(target)
            assert health.summary == "2 containers: 1 healthy, 1 unhealthy"
            stats = await executor.stats(target)
            assert "highest memory: prod-backend-2 91.8%" in stats.summary
            rolled = await executor.rollback(target, None, dry_run=False)
            assert rolled.summary.endswith(
                "from registry.example.com/backend:2.3.1 to registry.example.com/backend:2.3.0"
            )
        finally:
            executor.close()


async def test_the_demo_redis_answers_the_real_redis_executor() -> None:
    async with SimulatedCluster() as cluster:
        executor = RedisExecutor({REDIS_ENV: cluster.redis.url})
        target = RedisTarget(REDIS_ENV)
        report = await executor.report(target)
        assert re.fullmatch(
            r"PING \d+\.\d ms · memory 230\.7 MiB of 256 MiB \(90%\) · 4210 evicted"
            r" · 1 clients \(0 blocked\) · hit ratio 74\.7%",
            report.summary,
        ), report.summary
        assert "version    7.0.15, up 12d" in report.output
        assert "keys       db0=12000" in report.output

        dry = await executor.flush(target, dry_run=True)
        assert dry.summary == "dry run: would delete every key of db 0 (12000 keys)"
        await cluster.redis.close()  # restarted: another run_id, the keys kept
        await cluster.redis.start()
        with pytest.raises(StateChanged, match="restarted or failed over"):
            await executor.flush(target, dry_run=False, pinned=dry.details["pinned"])  # type: ignore[arg-type]
        dry = await executor.flush(target, dry_run=True)
        flushed = await executor.flush(target, dry_run=False, pinned=dry.details["pinned"])  # type: ignore[arg-type]
        assert flushed.summary == "flushed db 0: 12000 keys deleted"
        after_flush = await executor.report(target)
        assert "memory 976.6 KiB of 256 MiB (0%)" in after_flush.summary
        assert "keys       none" in after_flush.output


async def test_alert_fires_a_bundled_example_into_the_shell(tmp_path: Path) -> None:
    script = [
        ":alert disk-filling",
        ":join #incidents",
        ":click 1",
        ":alert checkout-5xx",
        ":alert checkout-5xx resolved",
        ":alert no-such-alert",
    ]
    code, out = await firebreak("shell", lines=script, cwd=tmp_path)
    assert code == 0

    offered = after(out, ":alert disk-filling")
    assert "Alertmanager sent disk-filling (firing)" in offered
    assert "#incidents ▸ firebreak: :bell: Alert (P3): orders-db volume will be full" in offered
    assert "(1) Declare incident   (2) Dismiss" in after(out, ":join #incidents")
    assert "Declared P3 incident #incident-" in after(out, ":click 1")

    declared = after(out, ":alert checkout-5xx")
    assert "P1 incident declared: Checkout API returning 502s" in declared

    assert "Alertmanager sent checkout-5xx (resolved)" in after(out, ":alert checkout-5xx resolved")
    assert "No example alert 'no-such-alert'" in after(out, ":alert no-such-alert")
