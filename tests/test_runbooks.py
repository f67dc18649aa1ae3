from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from bot.runbooks import Runbooks, load_runbooks
from bot.yamlfile import RunbookError
from runbooks import BUNDLED


def test_bundled_runbooks(runbooks: Runbooks) -> None:
    table = runbooks.severities
    assert list(table.levels) == ["P0", "P1", "P2", "P3"]
    assert table.lookup("sev1") is table.levels["P0"]
    assert table.lookup("Sev4") is table.levels["P3"]
    assert table.levels["P0"].update_cadence == timedelta(minutes=15)
    assert table.levels["P2"].update_cadence == timedelta(minutes=30)
    assert table.levels["P3"].update_cadence is None
    assert table.phases[0] == "Detection & Triage"
    assert table.phases[-1] == "Post-incident"
    p0_items = table.checklist_for(table.levels["P0"])
    p3_items = table.checklist_for(table.levels["P3"])
    assert len(p3_items) < len(table.checklist_for(table.levels["P2"])) < len(p0_items)
    # One phase is longer than a checkboxes element holds, so it must be split.
    assert max(sum(1 for i in p0_items if i.phase == p) for p in table.phases) > 10


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_bad_cadence_names_file_and_line(copy: Path) -> None:
    path = copy / "severities.yml"
    edit(path, "update_cadence: 30m", "update_cadence: soon")
    with pytest.raises(RunbookError) as raised:
        load_runbooks(copy)
    assert raised.value.path == str(path)
    assert "update_cadence" in raised.value.message
    # The error points at the severity's mapping, just above the bad line.
    assert 0 < line_of(path, "update_cadence: soon") - raised.value.line < 12


def test_unknown_checklist_pattern(copy: Path) -> None:
    edit(copy / "severities.yml", '- "triage.*"', '- "nothing.*"')
    with pytest.raises(RunbookError, match=r"severities.yml:\d+: checklist pattern `nothing.\*`"):
        load_runbooks(copy)


def test_yaml_syntax_error_has_line(copy: Path) -> None:
    path = copy / "checklists" / "2-investigation.yml"
    edit(path, "  - key: investigation.logs", "  - key: [investigation.logs")
    with pytest.raises(RunbookError) as raised:
        load_runbooks(copy)
    assert raised.value.path == str(path) and raised.value.line


def test_duplicate_checklist_key(copy: Path) -> None:
    edit(
        copy / "checklists" / "3-mitigation.yml", "key: mitigation.choose", "key: triage.commander"
    )
    with pytest.raises(RunbookError, match="duplicate checklist item key `triage.commander`"):
        load_runbooks(copy)


def test_template_syntax_error_has_line(copy: Path) -> None:
    (copy / "templates" / "note.j2").write_text("line one\n{{ actor|mention }\n")
    with pytest.raises(RunbookError, match=r"note.j2:2"):
        load_runbooks(copy)


def test_missing_template(copy: Path) -> None:
    (copy / "templates" / "topic.j2").unlink()
    with pytest.raises(RunbookError, match="topic.j2: template is missing"):
        load_runbooks(copy)
