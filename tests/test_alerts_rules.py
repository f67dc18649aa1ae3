"""runbooks/alerts.yml: routing, and start-up errors that name the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.alerts.rules import load_alert_rules
from bot.runbooks import Runbooks
from bot.yamlfile import RunbookError
from runbooks import BUNDLED
from tests.test_cli import firebreak


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_rules_route_by_equality_regex_and_default(runbooks: Runbooks) -> None:
    route = runbooks.alerts.route
    critical = route({"alertname": "X", "severity": "critical", "app": "shop"})
    assert (critical.rule, critical.action, critical.severity) == ("critical", "declare", "P1")
    assert critical.service == "shop"  # from `app` when there is no `service`
    assert route({"alertname": "Watchdog"}).action == "ignore"
    assert route({"alertname": "WatchdogX"}).action == "offer"  # regexes match whole values
    warning = route({"alertname": "Y", "severity": "warning", "service": "db", "app": "x"})
    assert (warning.rule, warning.action, warning.severity) == ("default", "offer", "P3")
    assert warning.service == "db"
    assert route({"alertname": "Y", "severity": "SEV1"}).severity == "P0"  # names a level
    assert route({"alertname": "Y", "severity": "page", "priority": "P0"}).severity == "P0"


def test_auto_resolve_and_service_labels_per_rule(tmp_path: Path, runbooks: Runbooks) -> None:
    path = rules_file(
        tmp_path,
        "rules:\n"
        "  - name: db\n    match_re: {alertname: 'Postgres.*'}\n    action: declare\n"
        "    severity: P2\n    auto_resolve: true\n    service_labels: [cluster]\n",
    )
    rules = load_alert_rules(path, runbooks.severities)
    route = rules.route({"alertname": "PostgresDown", "cluster": "orders", "service": "x"})
    assert (route.action, route.severity, route.service, route.auto_resolve) == (
        "declare",
        "P2",
        "orders",
        True,
    )
    assert rules.route({"alertname": "Other"}).action == "offer"  # no default given: offer


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("rules:\n  - name: a\n    action: page\n", 2, "`action` must be one of"),
        ("rules:\n  - name: a\n    action: offer\n    match_re: {x: '('}\n", 2, "not a valid"),
        ("rules:\n  - name: a\n    action: declare\n    severity: P9\n", 2, "not a severity"),
        ("rules:\n  - name: a\n    action: offer\n    colour: red\n", 2, "unknown key `colour`"),
        ("rules:\n  - action: offer\n", 2, "missing `name`"),
        (
            "rules:\n  - {name: a, action: offer}\n  - {name: a, action: ignore}\n",
            3,
            "two rules are named `a`",
        ),
        ("default:\n  action: offer\n  match: {a: b}\n", 2, "takes no `match`"),
        (
            "rules:\n  - name: a\n    action: offer\n    severity_from:\n      label: s\n"
            "      map: {critical: P7}\n",
            5,
            "`P7` is not a severity",
        ),
        ("rules: [\n", 2, "expected"),
    ],
)
def test_bad_rules_stop_start_up_naming_file_and_line(
    tmp_path: Path, runbooks: Runbooks, text: str, line: int, message: str
) -> None:
    path = rules_file(tmp_path, text)
    with pytest.raises(RunbookError) as caught:
        load_alert_rules(path, runbooks.severities)
    assert caught.value.path == str(path)
    assert caught.value.line == line
    assert message in caught.value.message


def test_check_and_start_up_stop_on_a_bad_alerts_file(tmp_path: Path) -> None:
    copy = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    good = firebreak("check", cwd=tmp_path, FIREBREAK_RUNBOOKS=str(copy), **slack)
    assert good.returncode == 0 and "3 alert rules" in good.stdout, good.stdout
    alerts = copy / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("action: ignore", "action: shrug"))
    result = firebreak("check", cwd=tmp_path, FIREBREAK_RUNBOOKS=str(copy))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"firebreak: {alerts}:15: ") and "`action` must be one of" in line
