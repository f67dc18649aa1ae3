"""The runbook-action events of the timeline, each as one complete sentence.

The action trail is an audit record: a reader of the post-mortem must learn from each
line who did what, with which parameters, and what came of it, without the event
log or the runbooks at hand. So every action event names its actor, the whole
command (`scale checkout replicas=8`) and its result or reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.actions.params import as_words
from bot.postmortem.history import Names

# Why a click was refused, as the end of "…'s confirmation of X was refused: <why>".
REFUSALS = {
    "not_authorised": "not a mitigator or the incident commander",
    "distinct_confirmer_required": "this severity needs someone other than the requester",
    "expired": "the proposal had expired",
    "already_decided": "it had already been decided",
    "closed": "the incident is closed",
    "no_longer_valid": "it is no longer valid under the current runbooks",
}
# A confirmed run's result by outcome, as in "X, confirmed by Y, <result>: <summary>".
RESULTS = {
    "ok": "succeeded",
    "failed": "failed",
    "unavailable": "could not run",
    "changed": "was not run",
    "unknown": "has an unknown outcome",
}


def describe_action(
    event_type: str, actor: str, p: dict[str, Any], name: Names, text: Callable[[str], str]
) -> tuple[str, str] | None:
    """The label and sentence of an action event; None for any other event. `text`
    turns a payload field into plain text."""
    if not event_type.startswith(("diagnostic", "mitigation_")):
        return None
    label = "Diagnostic" if event_type.startswith("diagnostic") else "Mitigation"
    who, command = name(actor), _command(p)
    summary = text("summary").removeprefix("dry run: ")
    requester = f" (requested by {name(p['requested_by'])})" if p.get("requested_by") else ""
    match event_type:
        case "diagnostic_requested":
            sentence = f"{who} asked for the diagnostic {command}"
        case "diagnostic":
            sentence = f"{who} ran {command}" + (": " if p.get("ok") else "; it failed: ")
            sentence += summary
        case "mitigation_requested":
            sentence = f"{who} proposed {command}"
        case "mitigation_dry_run" if p.get("ok"):
            sentence = f"The dry run of {command} for {who} showed: {summary}"
        case "mitigation_dry_run":
            sentence = f"The dry run of {command} for {who} failed: {summary}; nothing was proposed"
        case "mitigation_confirmed":
            sentence = f"{who} confirmed {command}{requester}"
        case "mitigation_cancelled":
            sentence = f"{who} cancelled {command}{requester}; nothing was run"
        case "mitigation_refused":
            decision = "confirmation" if p.get("confirm", True) else "cancellation"
            why = REFUSALS.get(str(p.get("reason")), str(p.get("reason") or "no reason given"))
            sentence = f"{who}'s {decision} of {command} was refused: {why}"
        case "mitigation_superseded":
            newer = p.get("by_command") or "a newer one"
            sentence = f"{who}'s newer proposal {newer} superseded {command}; nothing was run"
        case "mitigation_retired" if actor == "firebreak":
            sentence = (
                f"Firebreak retired {command} because the incident is closed; nothing was run"
            )
        case "mitigation_retired":
            sentence = f"{who} closed the incident, so Firebreak retired {command} unconfirmed"
        case "mitigation_executed":
            outcome = str(p.get("outcome") or ("ok" if p.get("ok") else "failed"))
            result = RESULTS.get(outcome, outcome)
            sentence = f"{command}, confirmed by {who}, {result}: {summary}"
        case _:
            sentence = f"{who}: {event_type.removeprefix('mitigation_')} {command}"
    return label, _ended(sentence)


def _command(p: dict[str, Any]) -> str:
    """The command with its parameters; events written before `command` was recorded
    are rebuilt from action, service and args (`params` in the oldest)."""
    if p.get("command"):
        return str(p["command"])
    args = p.get("args", p.get("params"))
    args = args if isinstance(args, dict) else {}
    return " ".join([str(p.get("action", "?")), str(p.get("service", "?")), *as_words(args)])


def _ended(sentence: str) -> str:
    sentence = sentence.rstrip()
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."
