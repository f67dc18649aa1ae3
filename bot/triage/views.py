"""What the channel sees of a triage: the guess with its reasons, and the digest.

Pure functions. Reasons are phrases from the runbooks and alert label values from
the sender: every piece is escaped. The digest is one line per diagnostic (the
output goes to its thread) and one button per candidate mitigation; a button
only starts the usual dry run and confirmation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.messages import Button, Buttons, Card, Note, Part, Section
from bot.mrkdwn import escape, mention, truncate
from bot.triage.scenarios import Scenario, ScenarioCatalog

# A mitigation offered by a digest: its action_id is this prefix and the action name;
# its value is `<action> <service>` (as `/incident mitigate` takes them).
OFFER_ACTION_PREFIX = "triage_offer:"
LINE_MAX = 280  # per diagnostic: one line of the digest (5 of them fit a section's 3000)


def guess_text(
    scenarios: ScenarioCatalog,
    scenario: Scenario,
    service: str | None,
    reasons: Sequence[str],
    services: Sequence[str],
    *,
    switched_by: str | None = None,
) -> str:
    """ "Looks like *Deployment failure* on *checkout* (matched: 502, after deploy)"."""
    on = f" on *{escape(service)}*" if service else ""
    if switched_by:
        head = f":twisted_rightwards_arrows: {mention(switched_by)} switched the scenario to "
        head += f"*{escape(scenario.title)}*{on}."
    else:
        matched = ", ".join(escape(r) for r in reasons)
        head = f":mag_right: Looks like *{escape(scenario.title)}*{on} (matched: {matched})."
    lines = [head]
    if scenario.checklist:
        lines.append(f"Added {len(scenario.checklist)} items to the checklist.")
    if service and scenario.diagnostics:
        names = ", ".join(f"`{d}`" for d in scenario.diagnostics)
        lines.append(f"Running its diagnostics now: {names}.")
    elif scenario.diagnostics:
        known = ", ".join(f"`{escape(s)}`" for s in services)
        lines.append(
            f"No configured service named, so no diagnostics ran ({known}): "
            f"`/incident scenario {scenario.name} &lt;service&gt;`."
        )
    if not switched_by:
        lines.append(f"Wrong guess? `/incident scenario &lt;name&gt;`: {scenarios.names()}.")
    return "\n".join(lines)


def digest(scenario: Scenario, service: str, results: Sequence[dict[str, Any]]) -> Card:
    """One line per diagnostic, then the candidate mitigations as buttons."""
    lines = [f"*Triage of {escape(scenario.title)} on {escape(service)}*: diagnostics"]
    lines += [digest_line(r) for r in results]
    parts: list[Part] = [
        Section("\n".join(lines)),
        Note("Run by Firebreak at declare · output in the thread"),
    ]
    buttons = tuple(
        Button(f"Propose {name}", f"{OFFER_ACTION_PREFIX}{name}", f"{name} {service}")
        for name in scenario.mitigations  # at most 5: checked when the scenarios load
    )
    if buttons:
        parts.append(
            Note(
                "Candidate mitigations: a click shows a dry run to confirm; "
                "nothing runs without it."
            )
        )
        parts.append(Buttons(buttons, marker="triage-offers"))
    return Card(tuple(parts))


def digest_line(result: dict[str, Any]) -> str:
    """`:mag: `deployment checkout`: 3/3 ready` (or why it did not run)."""
    command = f"`{escape(result['command'])}`"
    if result.get("skipped"):
        return f":heavy_minus_sign: {command} skipped: {escape(result['skipped'])}"
    icon = ":x:" if result.get("error") else (":mag:" if result.get("ok") else ":warning:")
    what = " could not run:" if result.get("error") else ":"
    return f"{icon} {command}{what} {escape(truncate(str(result.get('summary', '')), LINE_MAX))}"


def parse_offer(value: str) -> tuple[str, str] | None:
    """(action, service) from an offer button's value; None for anything else."""
    words = value.split()
    return (words[0], words[1]) if len(words) == 2 else None
