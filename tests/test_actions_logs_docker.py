"""Searchable logs and Docker Compose services end to end: the real grammar, ActionService,
the Bolt button listeners over signed HTTP, the Slack emulator, the real kubernetes
client against emulator/kubernetes.py and the real docker SDK against emulator/docker.py.
One action name (`logs`, `errors`, `restart`, `rollback`) reaches Kubernetes or Docker
as the targets file says."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.action_rig import (  # noqa: F401
    BACKEND,
    Rig,
    engine_fixture,
    health_fixture,
    kube_fixture,
    rig_fixture,
)
from tests.harness import ALICE, BOB

# Log lines stamped a few minutes ago, inside every `since` window the tests ask for.
STAMP = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")


async def test_logs_of_every_pod_merged_by_time_with_a_search(rig: Rig) -> None:
    rig.kube.set_log("shop", "checkout-a", f"{STAMP}:01Z a: Connection reset\n{STAMP}:03Z a ok\n")
    rig.kube.set_log("shop", "checkout-b", f"{STAMP}:02Z b: CONNECTION RESET pwd=hunter2\n")
    assert await rig.diag('logs checkout since=2h grep="connection reset"') == ""
    summary, output = rig.messages()[-2:]
    assert 'last 2 log lines matching "connection reset" of app=checkout' in summary["text"]
    text = output["blocks"][0]["text"]["text"]
    assert text.index("checkout-a  a: Connection reset") < text.index("checkout-b  b: CONNECTION")
    assert "hunter2" not in text and "a ok" not in text
    queries = [r.query for r in rig.kube.requests if r.path.endswith("/log")]
    assert {q["sinceSeconds"] for q in queries} == {"7200"} and len(queries) == 2


async def test_the_same_logs_action_reads_the_compose_service(rig: Rig) -> None:
    rig.engine.set_log("prod-backend-1", f"{STAMP}:01Z started\n{STAMP}:03Z ERROR db gone\n")
    rig.engine.set_log("prod-backend-2", f"{STAMP}:02Z SECRET_KEY=s3cr3t-backend-key\n", stream=2)
    assert await rig.diag("logs backend") == ""
    summary, output = rig.messages()[-2:]
    assert "last 3 log lines of Compose service prod/backend (2 sources" in summary["text"]
    text = output["blocks"][0]["text"]["text"]
    assert "prod-backend-2  SECRET_KEY=***" in text and "s3cr3t" not in text
    assert rig.kube.requests == []  # Kubernetes was never asked


async def test_errors_top_list_for_both_backends(rig: Rig) -> None:
    rig.engine.set_log(
        "prod-backend-1",
        "\n".join(f"ERROR payment {i} declined by 10.1.2.{i}" for i in range(5)) + "\nWARN slow\n",
    )
    assert await rig.diag("errors backend") == ""
    summary, output = rig.messages()[-2:]
    assert "6 error/warning lines of 2 kinds in the last 1h" in summary["text"]
    table = output["blocks"][0]["text"]["text"]
    assert "5      " in table and "ERROR payment &lt;n&gt; declined by &lt;ip&gt;" in table
    rig.kube.set_log("shop", "checkout-b", "FATAL out of memory\n")
    assert await rig.diag("errors checkout since=30m") == ""
    assert "1 error/warning lines of 1 kinds in the last 30m" in rig.messages()[-2]["text"]


async def test_long_merged_logs_are_attached_whole(rig: Rig) -> None:
    lines = "\n".join(f"{i:04d} GET /cart 200 " + "x" * 40 for i in range(600))
    rig.engine.set_log("prod-backend-1", lines)
    assert await rig.diag("logs backend tail=1000") == ""
    summary, reply, upload = rig.messages()[-3:]
    assert "full output is attached" in reply["blocks"][0]["text"]["text"]
    assert upload["thread_ts"] == summary["ts"]
    [stored] = rig.slack.workspace.files.values()
    assert stored.data is not None and "0599 GET /cart" in stored.data.decode()


async def test_bad_parameters_get_the_usage_and_run_nothing(rig: Rig) -> None:
    for text, message in [
        ("logs backend since=forever", "`since` must be a duration from 1m to 24h"),
        ("logs backend grep=" + "x" * 201, "`grep` must be at most 200 characters"),
        ("logs checkout tail=5000", "`tail` must be from 1 to 1000"),
        ("errors backend since=25h", "`since` must be a duration from 1m to 24h"),
        ("stats checkout", "`stats` runs on docker, and `checkout` has no docker section"),
    ]:
        reply = await rig.diag(text)
        assert message in reply, (text, reply)
    # A 10 kB search through the slash command itself: the grammar refuses it first.
    await rig.slack.command("diag logs backend grep=" + "x" * 10_000, channel=rig.channel.id)
    assert "Too many or too long arguments" in rig.last_ephemeral(ALICE)
    assert rig.engine.requests == [] and rig.kube.requests == []


async def test_a_hanging_or_stopped_engine_answers_within_the_timeout(rig: Rig) -> None:
    rig.engine.delay = 30
    started = time.monotonic()
    assert await rig.diag("containers backend") == ""
    assert time.monotonic() - started < 5
    assert "Docker Engine unreachable (timeout after 1s)" in rig.messages()[-1]["text"]
    rig.engine.delay = 0
    await rig.engine.stop()
    assert await rig.diag("stats backend") == ""
    assert "Docker Engine unreachable (connection refused)" in rig.messages()[-1]["text"]


async def test_rollback_of_the_compose_service_after_confirmation(rig: Rig) -> None:
    assert await rig.mitigate("rollback backend") == ""
    shown = (await rig.proposal(1))["shown"]
    assert f"dry run: would have rolled prod/backend back from {BACKEND}:2.3.1" in shown
    assert not [r for r in rig.engine.requests if r.method in ("POST", "DELETE")]
    await rig.click(BOB)
    assert await rig.status(1) == "executed"
    for name in ("prod-backend-1", "prod-backend-2"):
        container = rig.engine.inspect(name)
        assert rig.engine.images[container["Image"]]["RepoTags"] == [f"{BACKEND}:2.3.0"]
        assert "SECRET_KEY=s3cr3t-backend-key" in container["Config"]["Env"]
    executed = next(p for kind, _, p in await rig.events("mitigation_executed"))
    assert executed["ok"] and "s3cr3t" not in str(await rig.events("mitigation"))


async def test_restart_refused_when_the_service_changed_after_its_dry_run(rig: Rig) -> None:
    assert await rig.mitigate("restart backend", user=ALICE) == ""
    rig.engine.container(
        "prod-backend-3", f"{BACKEND}:2.3.1", project="prod", service="backend", number=3
    )
    await rig.click(BOB)
    assert await rig.status(1) == "changed"
    assert "prod/backend's containers changed since this dry run; propose again" in str(
        await rig.events("mitigation_executed")
    )
    assert not [r for r in rig.engine.requests if r.path.endswith("/restart")]
