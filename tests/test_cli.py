"""The command line: one clear line for a bad setting or runbook, and the exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from runbooks import BUNDLED


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
    result = firebreak("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "18 runbook actions" in result.stdout


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


def test_db_upgrade_then_postmortem_of_an_unknown_incident(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    assert firebreak("db", "upgrade", cwd=tmp_path, DATABASE_URL=url).returncode == 0
    result = firebreak("postmortem", "999", cwd=tmp_path, DATABASE_URL=url)
    assert result.returncode == 2 and "999" in result.stderr
