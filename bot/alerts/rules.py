"""Routing rules for alerts, from `runbooks/alerts.yml`, validated at start-up.

The first rule whose `match` (label equals value) and `match_re` (label fully
matches a regular expression) all hold decides: `declare` an incident at once,
`offer` it in the broadcast channel with Declare incident / Dismiss buttons, or
`ignore` it. `default` decides for everything else (out of the box: offer).
The severity is the rule's own, or the label `severity_from.label` mapped
through `severity_from.map` (a value that already names a level, such as `P1`
or `SEV2`, counts as that level). The service is the first of the labels
`service_labels` (default `service`, `app`) the alert has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.severities import SeverityTable
from bot.yamlfile import Node, load_mapping

ACTIONS = ("declare", "offer", "ignore")
DEFAULT_SERVICE_LABELS = ("service", "app")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class SeverityFrom:
    label: str
    mapping: dict[str, str]  # lower-cased label value -> level
    default: str | None


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    match: dict[str, str] = field(default_factory=dict)
    match_re: dict[str, re.Pattern[str]] = field(default_factory=dict)
    severity: str | None = None
    severity_from: SeverityFrom | None = None
    service_labels: tuple[str, ...] = DEFAULT_SERVICE_LABELS
    auto_resolve: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match.items()) and all(
            k in labels and p.fullmatch(labels[k]) for k, p in self.match_re.items()
        )


@dataclass(frozen=True)
class Route:
    """What to do with one alert group."""

    rule: str
    action: str
    severity: str
    service: str | None
    auto_resolve: bool


@dataclass(frozen=True)
class AlertRules:
    rules: tuple[Rule, ...]
    default: Rule
    severities: SeverityTable

    def route(self, labels: Mapping[str, str]) -> Route:
        rule = next((r for r in self.rules if r.matches(labels)), self.default)
        service = next((labels[k] for k in rule.service_labels if labels.get(k)), None)
        return Route(
            rule=rule.name,
            action=rule.action,
            severity=self._severity(rule, labels),
            service=service,
            auto_resolve=rule.auto_resolve,
        )

    def _severity(self, rule: Rule, labels: Mapping[str, str]) -> str:
        if rule.severity:
            return rule.severity
        if rule.severity_from is not None:
            value = labels.get(rule.severity_from.label, "").strip()
            named = self.severities.lookup(value) if value else None
            if named is not None:
                return named.level
            mapped = rule.severity_from.mapping.get(value.lower()) or rule.severity_from.default
            if mapped:
                return mapped
        return self.severities.default.level


def default_rules(severities: SeverityTable) -> AlertRules:
    """Without an alerts.yml: offer every alert, severity from its `severity` label."""
    offer = Rule(
        name="default",
        action="offer",
        severity_from=SeverityFrom("severity", {}, None),
    )
    return AlertRules((), offer, severities)


def load_alert_rules(path: Path, severities: SeverityTable) -> AlertRules:
    """Load and validate; raises `RunbookError` naming the file and line."""
    if not path.exists():
        return default_rules(severities)
    doc = load_mapping(path)
    service_labels = _service_labels(doc, DEFAULT_SERVICE_LABELS)
    entries = doc.expect("rules", list, [])
    rules: list[Rule] = []
    for entry in entries:
        if not isinstance(entry, Node):
            raise doc.error("each rule must be a mapping with `name` and `action`")
        rule = _rule(entry, severities, service_labels)
        if any(r.name == rule.name for r in rules):
            raise entry.error(f"two rules are named `{rule.name}`")
        rules.append(rule)
    default_node = doc.expect("default", dict)
    if default_node is None:
        default = default_rules(severities).default
    else:
        default_node.setdefault("name", "default")
        if default_node.get("match") or default_node.get("match_re"):
            raise default_node.error("the default rule matches everything; it takes no `match`")
        default = _rule(default_node, severities, service_labels)
    return AlertRules(tuple(rules), default, severities)


def _rule(node: Node, severities: SeverityTable, service_labels: tuple[str, ...]) -> Rule:
    known = {"name", "match", "match_re", "action", "severity", "severity_from"}
    known |= {"service_labels", "auto_resolve"}
    unknown = sorted(set(node) - known)
    if unknown:
        raise node.error(f"unknown key `{unknown[0]}` (rules take {', '.join(sorted(known))})")
    name = str(node.require("name"))
    if not _NAME.match(name):
        raise node.error(f"rule name `{name}` must be lowercase letters, digits, - or _")
    action = node.require("action")
    if action not in ACTIONS:
        raise node.error(f"`action` must be one of {', '.join(ACTIONS)}, not `{action}`")
    severity = node.expect("severity", str)
    if severity is not None:
        severity = _level(node, severities, severity)
    return Rule(
        name=name,
        action=action,
        match={k: _scalar(node, k, v) for k, v in _mapping(node, "match").items()},
        match_re={k: _regex(node, k, v) for k, v in _mapping(node, "match_re").items()},
        severity=severity,
        severity_from=_severity_from(node, severities),
        service_labels=_service_labels(node, service_labels),
        auto_resolve=bool(node.expect("auto_resolve", bool, False)),
    )


def _mapping(node: Node, key: str) -> dict[str, object]:
    value = node.expect(key, dict, {})
    return {str(k): v for k, v in value.items()}


def _scalar(node: Node, label: str, value: object) -> str:
    if isinstance(value, dict | list) or value is None:
        raise node.error(f"`match.{label}` must be a single value")
    return str(value)


def _regex(node: Node, label: str, value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise node.error(f"`match_re.{label}` must be a regular expression in quotes")
    try:
        return re.compile(value)
    except re.error as exc:
        raise node.error(f"`match_re.{label}` is not a valid regular expression: {exc}") from exc


def _level(node: Node, severities: SeverityTable, text: str) -> str:
    level = severities.lookup(str(text))
    if level is None:
        raise node.error(f"`{text}` is not a severity ({severities.names()})")
    return level.level


def _severity_from(node: Node, severities: SeverityTable) -> SeverityFrom | None:
    spec = node.expect("severity_from", dict)
    if spec is None:
        return None
    if node.get("severity"):
        raise node.error("give `severity` or `severity_from`, not both")
    if not isinstance(spec, Node):  # pragma: no cover - load() always makes Nodes
        raise node.error("`severity_from` must be a mapping")
    label = str(spec.require("label"))
    mapping = {
        str(value).lower(): _level(spec, severities, str(level))
        for value, level in spec.expect("map", dict, {}).items()
    }
    default = spec.expect("default", str)
    return SeverityFrom(label, mapping, _level(spec, severities, default) if default else None)


def _service_labels(node: Node, inherited: tuple[str, ...]) -> tuple[str, ...]:
    labels = node.expect("service_labels", list)
    if labels is None:
        return inherited
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise node.error("`service_labels` must be a list of label names")
    return tuple(labels)
