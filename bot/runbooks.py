"""Everything under `runbooks/`, loaded and validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.alerts.rules import AlertRules, load_alert_rules
from bot.severities import SeverityTable, load_severities
from bot.templates import Templates
from bot.yamlfile import RunbookError


@dataclass(frozen=True)
class Runbooks:
    root: Path
    severities: SeverityTable
    templates: Templates
    alerts: AlertRules  # alerts.yml: how incoming alerts are routed


def load_runbooks(root: Path) -> Runbooks:
    """Load and validate; raises `RunbookError` naming the file and line."""
    if not root.is_dir():
        raise RunbookError(root, None, "runbooks folder not found")
    templates = Templates(root / "templates")
    templates.validate()
    severities = load_severities(root)
    return Runbooks(
        root=root,
        severities=severities,
        templates=templates,
        alerts=load_alert_rules(root / "alerts.yml", severities),
    )
