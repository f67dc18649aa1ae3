"""The scenario catalog (`runbooks/scenarios/*.yml`), validated once at start-up.

Each file is one scenario from the seed playbooks: its symptoms, the words and
alert labels that point to it, the checklist items it adds, the read-only
diagnostics to run at once and the mitigations to offer. Actions are named, and
checked against the action catalog here, so a typo stops start-up with
`file:line: message` instead of surfacing in the middle of an incident.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.actions.catalog import ActionCatalog
from bot.yamlfile import Node, RunbookError, load_mapping

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TEXT_MAX = 150
MAX_ACTIONS = 5  # diagnostics (a digest line each) and mitigations (a button each)
CHECKLIST_MAX = 75  # a checkbox option's text (Slack's limit), as in checklists/*.yml


@dataclass(frozen=True)
class Scenario:
    name: str  # the file's stem: what `/incident scenario <name>` takes
    title: str
    phase: str  # the checklist phase its items join
    symptoms: tuple[str, ...]
    words: tuple[str, ...]  # lowercase phrases matched in the title and description
    labels: tuple[tuple[str, str], ...]  # (alert label, value) pairs that point here
    checklist: tuple[str, ...]
    diagnostics: tuple[str, ...]  # action names, kind diagnostic
    mitigations: tuple[str, ...]  # action names, kind mitigation

    def checklist_items(self) -> list[tuple[str, str, str]]:
        """(key, phase, text) for `storage.incidents.add_checklist_items`."""
        return [
            (f"scenario.{self.name}.{n}", self.phase, t) for n, t in enumerate(self.checklist, 1)
        ]


@dataclass(frozen=True)
class ScenarioCatalog:
    scenarios: dict[str, Scenario]  # by name, in file order (the tie-break of a guess)

    def names(self) -> str:
        return ", ".join(f"`{name}`" for name in self.scenarios)


def load_scenarios(
    directory: Path, actions: ActionCatalog, phases: Sequence[str]
) -> ScenarioCatalog:
    """Load and validate against the action catalog and the checklist's phases; raises
    `RunbookError` naming the file and line."""
    files = sorted(directory.glob("*.yml"))
    if not files:
        raise RunbookError(directory, None, "no scenario files (*.yml)")
    scenarios: dict[str, Scenario] = {}
    for path in files:
        if not _NAME.match(path.stem):
            raise RunbookError(path, None, "the file name must be lowercase letters, digits, -")
        scenarios[path.stem] = _scenario(path, actions, phases)
    return ScenarioCatalog(scenarios)


def _scenario(path: Path, actions: ActionCatalog, phases: Sequence[str]) -> Scenario:
    doc = load_mapping(path)
    allowed = {"title", "symptoms", "match", "phase", "checklist", "diagnostics", "mitigations"}
    unknown = sorted(k for k in doc if k not in allowed)
    if unknown:
        raise doc.error(f"unknown key `{unknown[0]}` (expected {', '.join(sorted(allowed))})")
    title = doc.require("title")
    phase = doc.require("phase")
    if phase not in phases:
        where = _line_of(path, "phase:")
        raise RunbookError(
            path, where, f"phase `{phase}` is not a checklist phase ({', '.join(phases)})"
        )
    match = doc.require("match", Node)
    unknown = sorted(k for k in match if k not in ("words", "labels"))
    if unknown:
        raise match.error(f"unknown key `{unknown[0]}` under match (expected labels, words)")
    words = tuple(w.lower() for w in _texts(path, match, "words", required=True))
    labels: list[tuple[str, str]] = []
    by_label = match.expect("labels", Node) or Node()
    for key, values in by_label.items():
        if not _LABEL_KEY.match(key) or not isinstance(values, list) or not values:
            raise by_label.error(f"labels: `{key}` must be a label name with a list of values")
        labels += [(key, str(value)) for value in values]
    diagnostics = _actions(path, doc, "diagnostics", "diagnostic", actions)
    return Scenario(
        name=path.stem,
        title=title,
        phase=phase,
        symptoms=_texts(path, doc, "symptoms", required=True),
        words=words,
        labels=tuple(labels),
        checklist=_texts(path, doc, "checklist", required=True, limit=CHECKLIST_MAX),
        diagnostics=diagnostics,
        mitigations=_actions(path, doc, "mitigations", "mitigation", actions),
    )


def _texts(
    path: Path, node: Node, key: str, *, required: bool = False, limit: int = TEXT_MAX
) -> tuple[str, ...]:
    values = node.require(key, list) if required else node.expect(key, list, [])
    if required and not values:
        raise node.error(f"`{key}` must list at least one entry")
    for value in values:
        if not isinstance(value, str | int) or not str(value).strip():
            raise RunbookError(path, _line_of(path, str(value)), f"`{key}`: each entry is text")
        if len(str(value)) > limit:
            where = _line_of(path, str(value))
            raise RunbookError(path, where, f"`{key}`: entries are at most {limit} characters")
    return tuple(str(v).strip() for v in values)


def _actions(path: Path, doc: Node, key: str, kind: str, actions: ActionCatalog) -> tuple[str, ...]:
    names = _texts(path, doc, key)
    if len(names) > MAX_ACTIONS:
        raise doc.error(f"`{key}`: at most {MAX_ACTIONS}, so the digest fits one message")
    for name in names:
        spec = actions.actions.get(name)
        if spec is None or spec.kind != kind:
            known = ", ".join(a.name for a in actions.of_kind(kind))
            problem = "is not a" if spec is not None else "unknown"
            raise RunbookError(
                path,
                _line_of(path, name, after=f"{key}:"),
                f"`{key}`: {problem} {kind} action `{name}` (the {kind}s are {known})",
            )
    return names


def _line_of(path: Path, text: str, *, after: str = "") -> int | None:
    """The line of `text` (after the line starting `after`): YAML scalars in a list carry
    no line of their own."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith(after)), 0) if after else 0
    for number, line in enumerate(lines[start:], start + 1):
        if re.search(rf"(?<![\w-]){re.escape(text)}(?![\w-])", line.split("#", 1)[0]):
            return number
    return None
