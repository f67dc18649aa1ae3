"""The guess at declare: which configured service, and which scenario, and why.

A pure function of the declaration (title, description, the alert's labels, a
service picked in the form) and the catalogs, so it is the same on every replica
and on every retry, and its reasons can be shown as they are. No learning, no
hidden weights:

- the service is the one the alert's label or the form names, else the first
  configured service named in the title, else in the description;
- each scenario scores one point per word of each of its phrases found in the
  text (so "after deploy" counts 2), and 3 per alert label it lists; a phrase
  inside a longer matched one ("deploy" in "after deploy") is not counted again;
- the highest score wins, a tie goes to the scenario whose file sorts first, and
  no match at all is no guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.triage.scenarios import Scenario, ScenarioCatalog

LABEL_POINTS = 3


@dataclass(frozen=True)
class Guess:
    scenario: str | None  # a scenario name, None when nothing matched
    service: str | None  # a configured service, None when none was named
    reasons: tuple[str, ...]  # what matched: phrases as written, then `label=value`
    score: int = 0
    service_reason: str = ""  # where the service came from, e.g. "named in the title"


def guess(
    scenarios: ScenarioCatalog,
    services: Iterable[str],
    *,
    title: str,
    description: str = "",
    labels: Mapping[str, str] | None = None,
    service: str | None = None,
) -> Guess:
    """The likely scenario and service of a declaration, with the reasons for both."""
    labels = labels or {}
    known = list(services)
    found, why = _service(known, title, description, service)
    text = " ".join((title, description, *labels.values())).lower()
    best: tuple[int, Scenario, tuple[str, ...]] | None = None
    for scenario in scenarios.scenarios.values():
        score, reasons = _score(scenario, text, labels)
        if score and (best is None or score > best[0]):
            best = (score, scenario, reasons)
    if best is None:
        return Guess(None, found, (), 0, why)
    score, scenario, reasons = best
    return Guess(scenario.name, found, reasons, score, why)


def _service(
    known: list[str], title: str, description: str, picked: str | None
) -> tuple[str | None, str]:
    if picked in known:
        return picked, "given"
    for where, text in (("title", title), ("description", description)):
        hits = [(m.start(), name) for name in known if (m := _find(name, text.lower()))]
        if hits:
            return min(hits)[1], f"named in the {where}"
    return None, ""


def _score(scenario: Scenario, text: str, labels: Mapping[str, str]) -> tuple[int, tuple[str, ...]]:
    matched = [phrase for phrase in scenario.words if _find(phrase, text)]
    kept = [p for p in matched if not any(p != q and _find(p, q) for q in matched)]
    kept.sort(key=lambda p: (_at(p, text), p))  # as they read in the declaration
    hits = [f"{key}={value}" for key, value in scenario.labels if labels.get(key) == value]
    score = sum(len(p.split()) for p in kept) + LABEL_POINTS * len(hits)
    return score, (*kept, *hits)


def _at(phrase: str, text: str) -> int:
    match = _find(phrase, text)
    return match.start() if match else len(text)


def _find(phrase: str, text: str) -> re.Match[str] | None:
    """`phrase` as whole words (a plural `s` allowed: "502s" is "502")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?:s|es)?(?![a-z0-9])", text)
