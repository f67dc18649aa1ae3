"""What the channel sees of runbook actions: pure functions from results to cards.

Slack rejects a whole message when one section's text exceeds 3000 characters,
and executor output (logs, tables) easily does. So output goes into one code
block cut to fit, on a line boundary, and the caller attaches the full text as a
file when `Output.truncated` says so. Everything shown is escaped for mrkdwn:
executor output is as untrusted as user input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.actions.catalog import ActionCatalog
from bot.actions.params import VERBS, as_words, usage
from bot.executors import ExecutionResult
from bot.messages import Button, Buttons, Card, Note, Section
from bot.mrkdwn import escape, mention, truncate
from storage.models import PendingAction

SECTION_MAX = 3000
CONFIRM_ACTION = "runbook_mitigation_confirm"
CANCEL_ACTION = "runbook_mitigation_cancel"
_CUT_NOTE = "\n_Cut to fit; the full output is attached in this thread._"


@dataclass(frozen=True)
class Output:
    card: Card
    truncated: bool


@dataclass(frozen=True)
class Proposal:
    """What a mitigation message shows; built from the stored `PendingAction`."""

    id: int
    command: str
    help: str
    requested_by: str
    dry_run_summary: str
    dry_run_output: str
    expires_at: datetime


def code_block(text: str, limit: int) -> tuple[str, bool]:
    """`text` escaped in a ``` block of at most `limit` characters; True when cut."""
    body = escape(text.replace("```", "'''")).rstrip()
    if len(body) + 8 <= limit:
        return f"```\n{body}\n```", False
    cut = body[: max(0, limit - 10)]
    entity = cut.rfind("&")
    if entity >= 0 and ";" not in cut[entity:]:  # never split &amp; &lt; &gt;
        cut = cut[:entity]
    line_end = cut.rfind("\n")
    if line_end > len(cut) // 2:
        cut = cut[:line_end]
    return f"```\n{cut}\n…\n```", True


def output_message(command: str, output: str) -> Output:
    """The thread reply holding a diagnostic's output."""
    block, cut = code_block(output, SECTION_MAX - len(_CUT_NOTE))
    return Output(Card.text(block + (_CUT_NOTE if cut else "")), cut)


def diagnostic_summary(command: str, actor: str, result: ExecutionResult, error: bool) -> Output:
    """The channel message: what ran, for whom, and the one-line result."""
    icon = ":x:" if error else (":mag:" if result.ok else ":warning:")
    what = "could not run" if error else "found"
    line = f"{icon} `{escape(command)}` {what}: {escape(truncate(result.summary, 2500))}"
    context = f"Diagnostic requested by {mention(actor)}"
    if result.output and not error:
        context += " · output in the thread"
    return Output(Card.of(Section(line), Note(context)), False)


def proposal(p: Proposal) -> Output:
    """The mitigation awaiting a decision, with Confirm and Cancel (value = its ID)."""
    buttons = Buttons(
        (
            Button("Confirm", CONFIRM_ACTION, str(p.id), primary=True),
            Button("Cancel", CANCEL_ACTION, str(p.id)),
        ),
        marker=f"mitigation:{p.id}",
    )
    expiry = (
        f"Expires {when(p.expires_at)}. Confirmable by the incident commander or a "
        "configured mitigator (`/incident mitigate` lists them)."
    )
    return Output(Card.of(*_head(p), Note(expiry), buttons), False)


def decided(p: Proposal, outcome: str) -> Output:
    """The same message after a decision: the outcome (mrkdwn) instead of the buttons."""
    return Output(Card.of(*_head(p), Section(truncate(outcome, SECTION_MAX))), False)


INCIDENT_CLOSED = (
    "The incident is closed: mitigations are no longer proposed or run here. "
    "If the problem is back, declare a new incident."
)


@dataclass(frozen=True)
class Deciders:
    """Who may decide a proposal right now."""

    users: tuple[str, ...]
    groups: tuple[str, ...]
    commander: str | None  # the commander, if they may decide this one
    commander_set: bool


_ICONS = {
    "ok": ":white_check_mark:",
    "unknown": ":hourglass:",
    "changed": ":warning:",
}


def outcome(command: str, confirmer: str, result: ExecutionResult, outcome: str) -> str:
    """The thread reply after a confirmed mitigation ran (fits one section)."""
    head = ran(confirmer, result, outcome)
    if not result.output:
        return head
    block, _ = code_block(result.output, SECTION_MAX - len(head) - 1)
    return f"{head}\n{block}"


def ran(confirmer: str, result: ExecutionResult, outcome: str) -> str:
    """The decision line of a confirmed mitigation: done, failed, refused because the
    target changed since the dry run, or unknown (a write that may still complete)."""
    summary = escape(truncate(result.summary, 1000))
    by = f"Confirmed by {mention(confirmer)}"
    icon = _ICONS.get(outcome, ":x:")
    if outcome == "ok":
        return f"{icon} {by}: {summary}"
    if outcome == "changed":
        return f"{icon} {by}, but {summary}. Nothing was run."
    if outcome == "unknown":
        return f"{icon} {by}; the outcome is not known yet: {summary}"
    return f"{icon} {by}, but it failed: {summary}"


def superseded(command: str, requester: str) -> str:
    """The decision line of a proposal a newer one for the same action replaced."""
    return (
        f":fast_forward: Superseded by a newer proposal from {mention(requester)}: "
        f"`{escape(command)}`. Nothing was run; only the newest can be confirmed."
    )


def closed(pending: PendingAction, outcome: str) -> str:
    """The decision line of a mitigation that was cancelled, expired or retired."""
    if outcome == "cancelled":
        return f":no_entry_sign: Cancelled by {mention(pending.decided_by)}. Nothing was run."
    if outcome == "closed":
        return ":lock: Retired: the incident is closed. Nothing was run."
    return f":hourglass: Expired unconfirmed {when(pending.expires_at)}. Nothing was run."


def refusal(
    outcome: str,
    pending: PendingAction,
    *,
    confirm: bool,
    who: Deciders,
    severity: str,
) -> str:
    """The clicker's ephemeral reply for every outcome but a run ("" for none)."""
    what = f"`{escape(command_words(pending))}`"
    if outcome == "expired":
        return (
            f"This confirmation expired {when(pending.expires_at)}, 10 minutes after the "
            "request; nothing was run. Ask again with `/incident mitigate`."
        )
    if outcome == "closed":
        return f"{INCIDENT_CLOSED} {what} was retired; nothing was run."
    if outcome == "already_decided":
        if pending.status == "superseded":
            return f"{what} was superseded by a newer proposal; only the newest can be confirmed."
        if pending.status == "retired":
            return f"{what} was retired when the incident closed; nothing was run."
        by = f" by {mention(pending.decided_by)}" if pending.decided_by else ""
        return f"{what} was already {pending.status}{by}; a decision counts once."
    if outcome == "distinct_confirmer_required":
        return (
            f"This is a {escape(severity)} incident: someone other than the requester "
            f"({mention(pending.requested_by)}) must confirm {what}. {who_can_act(who)}"
        )
    if outcome == "commander_only":
        return f"Only the incident commander may confirm {what}. {who_can_act(who)}"
    if outcome == "not_authorised":
        verb = "confirm" if confirm else "cancel"
        return f"You may not {verb} {what}. {who_can_act(who)}"
    if outcome == "no_longer_valid":
        return f"{what} is no longer valid under the current runbooks; nothing was run."
    return ""


def who_can_act(who: Deciders) -> str:
    """Who can decide now, by ID (a mention in an ephemeral notifies nobody), and how
    to become commander when nobody is."""
    people = [str(mention(u)) for u in who.users]
    people += [f"members of <!subteam^{g}>" for g in who.groups]
    if who.commander:
        people.append(f"the incident commander, {mention(who.commander)}")
    now = f"Who can now: {_joined(people)}." if people else "Nobody can right now."
    if not who.commander_set:
        now += (
            " There is no incident commander yet: anyone here can take the role with "
            "`/incident commander @yourself`, and the commander may confirm."
        )
    return now


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def command_words(pending: PendingAction) -> str:
    """A stored proposal as its command, e.g. `scale checkout replicas=8`."""
    return " ".join([pending.action, pending.service, *as_words(pending.params or {})])


def dry_run_failed(command: str, summary: str) -> str:
    return (
        f":x: The dry run of `{escape(command)}` failed: {escape(summary)}\n"
        "Nothing was changed, and nothing is waiting to be confirmed."
    )


def not_shown(command: str, summary: str, code: str) -> str:
    return (
        f":warning: `{escape(command)}` ran ({escape(summary)}), but Slack refused to "
        f"show it (`{code}`)."
    )


def action_list(catalog: ActionCatalog, kind: str) -> str:
    """`/incident diag` or `/incident mitigate` alone: what exists and where it runs."""
    verb = VERBS[kind]
    title = "Diagnostics" if kind == "diagnostic" else "Mitigations"
    lines = [f"*{title}*: `/incident {verb} <action> <service> [args…]`"]
    scenario = None
    for action in catalog.of_kind(kind):
        if action.scenario != scenario:
            scenario = action.scenario
            lines.append(f"*{escape(scenario)}*")
        call = usage(action).splitlines()[0].removeprefix("Usage: `/incident ")
        call = call.removeprefix(f"{verb} ").rstrip("`")
        runs_on = " or ".join(action.executors)
        lines.append(f"• `{call}` ({runs_on}): {escape(action.help)}")
    services = " · ".join(
        f"`{t.name}` ({', '.join(t.executors())})" for t in catalog.targets.values()
    )
    lines.append(f"Services: {services}")
    if kind == "diagnostic":
        lines.append(
            "For a security incident, `evidence <service> [since=24h]` archives logs, events "
            "and rollout history to the evidence folder, not Slack."
        )
    if kind == "mitigation":
        lines.append(
            "Each shows a dry run first (server-side on Kubernetes) and runs once confirmed "
            f"(within 10 minutes) by {allowed_confirmers(catalog)}."
        )
        only = [f"`{a.name}`" for a in catalog.of_kind(kind) if catalog.commander_only(a.name)]
        if only:
            lines.append(f"{', '.join(only)}: only the incident commander may confirm.")
    return "\n".join(lines)


def allowed_confirmers(catalog: ActionCatalog) -> str:
    """Who may confirm, by ID (for ephemeral replies: a mention here notifies nobody)."""
    people = [str(mention(u)) for u in sorted(catalog.mitigator_users)]
    people += [f"<!subteam^{g}>" for g in catalog.mitigator_groups]
    return ", ".join(people) + (" or " if people else "") + "the incident commander"


def _head(p: Proposal) -> tuple[Section, Section]:
    head = (
        f":warning: *Mitigation proposed* by {mention(p.requested_by)}: "
        f"`{escape(p.command)}`\n{escape(truncate(p.help, 500))}"
    )
    dry = f":test_tube: *Dry run:* {escape(truncate(p.dry_run_summary, 500))}"
    if p.dry_run_output:
        block, _ = code_block(p.dry_run_output, SECTION_MAX - len(dry) - 1)
        dry += "\n" + block
    return Section(head), Section(dry)


def when(at: datetime) -> str:
    """A time each reader sees in their own zone, with UTC as the fallback."""
    return f"<!date^{int(at.timestamp())}^{{time}}|{at:%H:%M} UTC>"
