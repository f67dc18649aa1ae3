"""The command line: one clear line for a bad setting or runbook, and the exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.actions.catalog import load_catalog
from firebreak.supervisor import default_workers
from runbooks import BUNDLED
from tests.processes import ServeProcess, free_port

# Counted, not written down: every branch that adds an action would change the number.
BUNDLED_ACTIONS = len(load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml").actions)


def firebreak(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FIREBREAK_"))}
    return subprocess.run(
        [sys.executable, "-m", "firebreak.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(Path(__file__).parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_passes_on_the_bundled_runbooks(tmp_path: Path) -> None:
    result = firebreak("check", cwd=tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")
    assert result.returncode == 0, result.stdout
    assert f"{BUNDLED_ACTIONS} runbook actions" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("failed")]


def test_check_without_slack_settings_fails_naming_each_with_its_fix(tmp_path: Path) -> None:
    """What `serve` would stop on, all at once, one line each; the rest is still checked."""
    result = firebreak("check", cwd=tmp_path)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]
    assert [line.split(":")[0].split()[1] for line in failed] == [
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    ]
    assert all("-> fix: " in line for line in failed)
    assert f"{BUNDLED_ACTIONS} runbook actions" in result.stdout
    statuses = {line.split()[0] for line in result.stdout.splitlines()}
    assert statuses <= {"ok", "warning", "failed"}


def test_socket_mode_needs_no_signing_secret(tmp_path: Path) -> None:
    result = firebreak("check", cwd=tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1")
    assert result.returncode == 0, result.stdout
    assert "ok      SLACK_SIGNING_SECRET: not needed in Socket Mode" in result.stdout
    assert "ok      mode: Socket Mode" in result.stdout


def test_check_names_file_and_line_of_a_bad_runbook(tmp_path: Path) -> None:
    copy = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    severities = copy / "severities.yml"
    severities.write_text(
        severities.read_text().replace("update_cadence: 30m", "update_cadence: 5x")
    )
    result = firebreak("check", cwd=tmp_path, FIREBREAK_RUNBOOKS=str(copy))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"firebreak: {severities}:") and "update_cadence" in line


def test_serve_without_a_token_stops_with_one_line(tmp_path: Path) -> None:
    result = firebreak("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "firebreak: SLACK_BOT_TOKEN is not set (see README: Connecting a Slack workspace)"
    )


def test_bad_setting_is_named(tmp_path: Path) -> None:
    result = firebreak(
        "serve", cwd=tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", PORT="http"
    )
    assert result.returncode == 2 and "PORT must be a port number" in result.stderr


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FIREBREAK_SNOOZE_MAX=soon\n")
    result = firebreak("check", cwd=tmp_path)
    assert result.returncode == 2 and "FIREBREAK_SNOOZE_MAX" in result.stderr


def test_a_database_that_is_down_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://firebreak:hunter2@127.0.0.1:{port}/firebreak"
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    for command in (["serve", "--workers", "0"], ["db", "upgrade"]):
        result = firebreak(*command, cwd=tmp_path, DATABASE_URL=url, **slack)
        assert result.returncode == 1, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line == (
            f"firebreak: cannot reach the database at 127.0.0.1:{port}/firebreak: "
            "Connection refused"
        )
        assert "hunter2" not in result.stdout + result.stderr


async def test_first_start_says_where_slack_must_send_requests(tmp_path: Path) -> None:
    """Once, on the database's first migration: the next start has nothing new to say."""
    database = f"sqlite:///{tmp_path / 'firebreak.db'}"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    for log in logs:
        serve = ServeProcess(
            api_url=f"http://127.0.0.1:{free_port()}/api/",
            database_url=database,
            runbooks=BUNDLED,
            log=log,
            args=("--workers", "0"),
        )
        await serve.start()
        await serve.kill(signal.SIGTERM)
    [hint] = [line for line in logs[0].read_text().splitlines() if "First start" in line]
    assert "https://<this host>/slack/events" in hint and "/incident help" in hint
    assert "First start" not in logs[1].read_text()


def test_db_upgrade_then_postmortem_of_an_unknown_incident(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    assert firebreak("db", "upgrade", cwd=tmp_path, DATABASE_URL=url).returncode == 0
    result = firebreak("postmortem", "999", cwd=tmp_path, DATABASE_URL=url)
    assert result.returncode == 2 and "999" in result.stderr


@pytest.mark.parametrize(("cpus", "workers"), [(None, 0), (1, 0), (2, 1), (3, 2), (16, 4)])
def test_serve_leaves_a_cpu_to_the_acks(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, workers: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert default_workers("postgresql+psycopg://db/firebreak") == workers
    assert default_workers("sqlite:///firebreak.db") == 0  # SQLite is for one process
