"""runbooks/scenarios/*.yml: loaded at start-up, checked against the action catalog,
and every mistake named by file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.actions import ActionCatalog, load_catalog
from bot.runbooks import load_runbooks
from bot.triage import load_scenarios
from bot.yamlfile import RunbookError
from runbooks import BUNDLED
from tests.test_cli import firebreak

PHASES = load_runbooks(BUNDLED).severities.phases
SEEDED = {
    "application-crash": "Crash loops",
    "database": "Connection pool exhausted",
    "deployment-failure": "502/503 errors",
    "external-dependency": "Stripe webhook errors",
    "performance": "P95 latency > 500ms",
    "resources-disk": "Disk space running out",
    "security": "Unusual authentication patterns",
}


@pytest.fixture(scope="module")
def catalog() -> ActionCatalog:
    return load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")


def test_the_bundled_scenarios_are_the_seeds(catalog: ActionCatalog) -> None:
    scenarios = load_scenarios(BUNDLED / "scenarios", catalog, PHASES).scenarios
    assert set(scenarios) == set(SEEDED)
    for name, symptom in SEEDED.items():
        scenario = scenarios[name]
        assert symptom in scenario.symptoms and scenario.checklist and scenario.diagnostics
        assert all(catalog.actions[d].kind == "diagnostic" for d in scenario.diagnostics)
        assert all(catalog.actions[m].kind == "mitigation" for m in scenario.mitigations)
    assert scenarios["deployment-failure"].mitigations == ("rollback",)


def folder_with(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "scenarios"
    shutil.copytree(BUNDLED / "scenarios", folder)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


GOOD = """\
title: Queue backlog
symptoms: [Messages piling up]
match:
  words: [backlog]
phase: Investigation
checklist: [Check the consumers]
diagnostics:
  - pods
  - {diag}
mitigations: [{mitigation}]
"""


@pytest.mark.parametrize(
    ("diag", "mitigation", "line", "problem"),
    [
        ("podz", "restart", 9, "`diagnostics`: unknown diagnostic action `podz`"),
        ("rollback", "restart", 9, "`diagnostics`: is not a diagnostic action `rollback`"),
        ("logs", "pods", 10, "`mitigations`: is not a mitigation action `pods`"),
    ],
)
def test_an_action_not_in_the_catalog_is_an_error_at_its_line(
    tmp_path: Path, catalog: ActionCatalog, diag: str, mitigation: str, line: int, problem: str
) -> None:
    folder = folder_with(tmp_path, "queue.yml", GOOD.format(diag=diag, mitigation=mitigation))
    with pytest.raises(RunbookError) as error:
        load_scenarios(folder, catalog, PHASES)
    assert str(error.value).startswith(f"{folder / 'queue.yml'}:{line}: {problem}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (GOOD.replace("phase: Investigation", "phase: Whenever"), ":5: phase `Whenever`"),
        (GOOD.replace("title: Queue backlog\n", ""), ":1: missing `title`"),
        (GOOD + "colour: red\n", ":1: unknown key `colour`"),
        (
            GOOD.replace("  words: [backlog]", "  words: [backlog]\n  labels:\n    alertname: x"),
            ":6: labels: `alertname` must be a label name with a list of values",
        ),
        (GOOD.replace("[Check the consumers]", "[]"), "`checklist` must list at least one"),
        (
            GOOD.replace(
                "[{mitigation}]", "[restart, restart, restart, restart, restart, restart]"
            ),
            ":1: `mitigations`: at most 5, so the digest fits one message",
        ),
        (
            GOOD.replace("Check the consumers", "Check " + "the consumers " * 6),
            ":6: `checklist`: entries are at most 75 characters",
        ),
    ],
)
def test_other_mistakes_name_the_file_and_line(
    tmp_path: Path, catalog: ActionCatalog, text: str, problem: str
) -> None:
    folder = folder_with(tmp_path, "queue.yml", text.format(diag="logs", mitigation="restart"))
    with pytest.raises(RunbookError) as error:
        load_scenarios(folder, catalog, PHASES)
    assert str(error.value).startswith(str(folder / "queue.yml")) and problem in str(error.value)


def test_firebreak_check_counts_the_scenarios_and_refuses_a_bad_one(tmp_path: Path) -> None:
    copy = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    good = firebreak("check", cwd=tmp_path, FIREBREAK_RUNBOOKS=str(copy), **slack)
    assert good.returncode == 0 and "7 scenarios" in good.stdout
    bad = GOOD.format(diag="podz", mitigation="restart")
    (copy / "scenarios" / "queue.yml").write_text(bad, encoding="utf-8")
    result = firebreak("check", cwd=tmp_path, FIREBREAK_RUNBOOKS=str(copy))
    assert result.returncode == 2
    assert "queue.yml:9: `diagnostics`: unknown diagnostic action `podz`" in result.stderr
