"""The `/incident` grammar: Slack command text in, a typed command (or a clear error) out.

Pure functions; the handlers parse before they ack, so a typo is answered
at once without touching the database or Slack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from bot.durations import bounded_seconds, parse_duration
from bot.errors import UserError
from bot.incidents.limits import over_limit
from bot.incidents.rules import ROLES, STATUSES, TITLE_MAX
from bot.mrkdwn import escape
from bot.redact import redact
from bot.severities import SeverityTable

# With `should_escape: true` Slack sends `<@U123|alice>`; older clients `<@U123>`.
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,20})(?:\|[^<>]*)?>$")
_LOOKS_LIKE_SEVERITY = re.compile(r"^(p|sev)\d+$", re.IGNORECASE)
PRIVATE_FLAG = "--private"


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class ListIncidents:
    pass


@dataclass(frozen=True)
class OpenDeclareForm:
    severity: str | None = None
    private: bool = False  # the form opens with "Private (security) incident" ticked


@dataclass(frozen=True)
class Declare:
    severity: str
    title: str
    description: str = ""
    commander: str | None = None
    service: str | None = None  # when the source names it: an alert's label, the form
    # A security incident (`--private`, the modal's checkbox, or a caller such as a
    # triage rule): a private channel and nothing in the broadcast channel but a
    # notice that it exists (bot/incidents/privacy.py).
    private: bool = False
    labels: tuple[tuple[str, str], ...] = ()  # an alert's labels, for the triage's guess


@dataclass(frozen=True)
class SetSeverity:
    severity: str


@dataclass(frozen=True)
class SetStatus:
    status: str


@dataclass(frozen=True)
class AssignRole:
    role: str
    user_id: str


@dataclass(frozen=True)
class AddNote:
    text: str


@dataclass(frozen=True)
class Resolve:
    summary: str = ""  # the fix
    root_cause: str = ""


@dataclass(frozen=True)
class PostUpdate:
    """An update as the seed playbooks write one: status (set apart), the actions taken
    (`text`), next steps and the impact so far; the bot adds when the next one is due."""

    text: str
    next_steps: str = ""
    impact: str = ""


@dataclass(frozen=True)
class ShowReminders:
    pass


@dataclass(frozen=True)
class ShowSummary:
    """`/incident summary`: the read-in, for the asker only."""


@dataclass(frozen=True)
class Snooze:
    duration: timedelta


@dataclass(frozen=True)
class RunDiagnostic:
    """`diag` alone lists the diagnostics; otherwise run `action` on `service`."""

    action: str | None = None
    service: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestMitigation:
    """`mitigate` alone lists the mitigations; otherwise propose `action` on `service`."""

    action: str | None = None
    service: str | None = None
    args: tuple[str, ...] = ()


ACTION_CATEGORIES = ("prevention", "detection", "response", "documentation")
DUE_MAX_DAYS = 366


@dataclass(frozen=True)
class Due:
    """When an action item is due: a calendar date, or a number of days from today
    (the service turns it into a date with its clock)."""

    on: date | None = None
    in_days: int | None = None

    def resolve(self, today: date) -> date:
        return self.on if self.on is not None else today + timedelta(days=self.in_days or 0)


@dataclass(frozen=True)
class CollectEvidence:
    """`/incident evidence <service> [since=24h]`: an archive on disk, its hash in Slack."""

    service: str
    since: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class SwitchScenario:
    """`scenario` alone shows the scenario; `scenario <name> [service]` switches to it."""

    name: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class AddActionItem:
    text: str
    owner: str | None = None
    category: str = ""
    due: Due = Due()


@dataclass(frozen=True)
class PreviewPostmortem:
    pass


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Page:
    service: str
    message: str = ""


@dataclass(frozen=True)
class ShowOnCall:
    service: str | None = None


@dataclass(frozen=True)
class DraftStatusPage:
    """`/incident statuspage <status> [public message]`: a preview, published on confirm."""

    status: str
    message: str = ""


Command = (
    Help
    | ListIncidents
    | OpenDeclareForm
    | Declare
    | SetSeverity
    | SetStatus
    | PostUpdate
    | AssignRole
    | AddNote
    | Resolve
    | ShowReminders
    | ShowSummary
    | Snooze
    | RunDiagnostic
    | RequestMitigation
    | CollectEvidence
    | AddActionItem
    | PreviewPostmortem
    | Close
    | Page
    | ShowOnCall
    | DraftStatusPage
    | SwitchScenario
)


class CommandError(UserError):
    """Bad input; `str()` is the message the user sees. `show_help` appends the grammar."""

    def __init__(self, message: str, *, show_help: bool = False) -> None:
        super().__init__(message)
        self.show_help = show_help


# The subcommands, for metric labels (anything else is counted as "-").
_COMMAND_WORDS = frozenset(
    (
        "help list declare severity sev status update note assign commander comms lead "
        "resolve reminders snooze diag diagnose mitigate action postmortem post-mortem close "
        "page oncall statuspage evidence scenario summary"
    ).split()
)


def command_word(text: str) -> str:
    """The subcommand a command line starts with, or "-": a bounded metric label."""
    words = text.split(maxsplit=1)
    word = words[0].lower() if words else ""
    return word if word in _COMMAND_WORDS else "-"


# C0 control characters but tab and newline, and DEL: invisible in Slack, and Postgres
# refuses NUL in text, so a stray one would fail the command with a database error.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """User text fit to keep and show: no control characters (tab and newline stay) and
    no secrets. People paste tokens and connection strings into chat; whatever they
    typed is posted, broadcast and written into the post-mortem, so secrets are masked
    before any of that, and before an error message echoes a word back."""
    return redact(_CONTROL.sub("", text))


def parse(text: str, severities: SeverityTable) -> Command:
    words = clean(text).strip().split(None, 1)
    if not words:
        return OpenDeclareForm()
    verb, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if verb in ("help", "-h", "--help", "?"):
        return Help()
    if verb in ("list", "ls"):
        return ListIncidents()
    if verb == "declare":
        return _declare(rest, severities)
    if verb in ("severity", "sev"):
        return SetSeverity(_severity(_one_word(rest, "severity", "P0"), severities))
    if verb == "status":
        return SetStatus(_status(_one_word(rest, "status", "identified")))
    if verb == "update":
        return PostUpdate(_text(rest, "update", "Rolled back, error rate falling"))
    if verb == "note":
        return AddNote(_text(rest, "note", "Saw a spike of DB connections at 14:02"))
    if verb == "assign":
        return _assign(rest)
    if verb in ROLES:
        return AssignRole(verb, _mention(rest, f"/incident {verb} @alice"))
    if verb == "resolve":
        return _resolve(_text(rest, "resolve", "", required=False))
    if verb == "reminders":
        return ShowReminders()
    if verb in ("summary", "readin", "read-in"):
        return ShowSummary()
    if verb == "snooze":
        return Snooze(_duration(rest))
    if verb == "evidence":
        return _evidence(rest)
    if verb in ("diag", "diagnose") and rest.split(" ", 1)[0].lower() == "evidence":
        return _evidence(rest.partition(" ")[2].strip())  # kept off Slack, unlike a diag
    if verb in ("diag", "diagnose"):
        return RunDiagnostic(*_action_words(rest))
    if verb == "mitigate":
        return RequestMitigation(*_action_words(rest))
    if verb == "action":
        return _action_item(rest)
    if verb in ("postmortem", "post-mortem"):
        return PreviewPostmortem()
    if verb == "close":
        return Close()
    if verb == "page":
        return _page(rest)
    if verb in ("oncall", "on-call"):
        return ShowOnCall(_service_word(rest) if rest else None)
    if verb == "statuspage":
        return _statuspage(rest)
    if verb == "scenario":
        return _scenario(rest)
    raise CommandError(f"Unknown subcommand `{_shown(verb)}`.", show_help=True)


def _declare(rest: str, severities: SeverityTable) -> Declare | OpenDeclareForm:
    """`[severity] [--private] <title>`, the flag before or after the severity."""
    severity, private = None, False
    while rest:
        first, _, remainder = rest.partition(" ")
        if first.lower() == PRIVATE_FLAG and not private:
            private = True
        elif severity is None and _LOOKS_LIKE_SEVERITY.match(first):
            severity = _severity(first, severities)
        else:
            break
        rest = remainder.strip()
    if not rest:
        return OpenDeclareForm(severity, private)
    return Declare(severity or severities.default.level, validate_title(rest), private=private)


def validate_title(title: str) -> str:
    title = " ".join(clean(title).split())
    if not title:
        raise CommandError("An incident needs a title, e.g. `/incident declare P1 checkout down`.")
    if len(title) > TITLE_MAX:
        raise CommandError(f"The title is {len(title)} characters; keep it under {TITLE_MAX}.")
    return title


def _severity(word: str, severities: SeverityTable) -> str:
    severity = severities.lookup(word)
    if severity is None:
        raise CommandError(f"Unknown severity `{_shown(word)}`. Use {severities.names()}.")
    return severity.level


def _status(word: str) -> str:
    status = word.lower()
    if status not in STATUSES:
        raise CommandError(f"Unknown status `{_shown(word)}`. Use one of: {', '.join(STATUSES)}.")
    return status


def _assign(rest: str) -> AssignRole:
    role, _, who = rest.partition(" ")
    if not role:
        raise CommandError(f"Usage: `/incident assign <{'|'.join(ROLES)}> @user`.")
    if role.lower() not in ROLES:
        raise CommandError(f"Unknown role `{_shown(role)}`. Use one of: {', '.join(ROLES)}.")
    return AssignRole(role.lower(), _mention(who, f"/incident assign {role.lower()} @bob"))


def _mention(text: str, example: str) -> str:
    match = _MENTION.match(text.strip())
    if not match:
        shown = f" (got `{_shown(text.strip())}`)" if text.strip() else ""
        raise CommandError(f"Mention one user with @, e.g. `{example}`{shown}.")
    return match.group(1)


def _duration(word: str) -> timedelta:
    """A duration as people and the bot itself write it: `30m`, `1h30m`, `1m 30s`, `1h 5m`."""
    if not word:
        raise CommandError("Give a duration, e.g. `/incident snooze 30m` or `1h 30m`.")
    try:
        return parse_duration(word)
    except (ValueError, OverflowError) as exc:
        # parse_duration quotes the word as typed: show it escaped and cut short instead.
        # Too many digits (OverflowError, or int()'s own ValueError) is just too long.
        quoted = f"`{word}`"
        message = str(exc) if str(exc).startswith(quoted) else f"{quoted} is too long a duration"
        raise CommandError(message.replace(quoted, f"`{_shown(word)}`", 1)) from exc


# A word is a run of non-space characters and quoted stretches: `grep="conn reset"`.
# Slack's clients often turn straight quotes into curly ones, so both kinds count.
_QUOTED = re.compile(r'"([^"]*)"|“([^”]*)”')
_WORD = re.compile(r'(?:[^\s"“”]|"[^"]*"|“[^”]*”)+')


def _action_words(rest: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    """`<action> <service> [args…]` as words; the action catalog validates them."""
    if rest.count('"') % 2 or rest.count("“") != rest.count("”"):
        raise CommandError('A quote is not closed: write text with spaces as `grep="a b"`.')
    words = [_QUOTED.sub(lambda m: m.group(1) or m.group(2) or "", w) for w in _WORD.findall(rest)]
    if len(words) > 8 or any(len(w) > 256 for w in words):
        raise CommandError("Too many or too long arguments for a runbook action.")
    if len(words) == 1:
        raise CommandError(f"Name the service too, e.g. `{_shown(words[0])} checkout`.")
    if not words:
        return None, None, ()
    return words[0].lower(), words[1].lower(), tuple(words[2:])


EVIDENCE_SINCE = (60, 7 * 86400)  # seconds: from a minute to a week of logs and events


def _evidence(rest: str) -> CollectEvidence:
    """`<service> [since=<duration>]`; the duration also bare, e.g. `checkout 6h`."""
    words = rest.split()
    if not words or len(words) > 2:
        raise CommandError(
            "Name one service and, if you like, how far back: "
            "`/incident evidence checkout since=24h`."
        )
    service = _service_word(words[0])
    if len(words) == 1:
        return CollectEvidence(service)
    word = words[1].removeprefix("since=")
    try:
        since = bounded_seconds("since", word, *EVIDENCE_SINCE)
    except ValueError as exc:  # worded as the action catalog's duration parameters are
        raise CommandError(f"{exc}; got `{_shown(word)}`.") from None
    return CollectEvidence(service, timedelta(seconds=since))


_ACTION_EXAMPLE = (
    "/incident action Add an alert on connection-pool saturation @bob category=detection due=2w"
)
_OPTION = re.compile(r"^(due|category|cat)=(\S*)$", re.IGNORECASE)
_RELATIVE_DUE = re.compile(r"^(\d{1,3})([dw])$", re.IGNORECASE)


def _action_item(rest: str) -> AddActionItem:
    """`<text> [@owner] category=<…> due=<YYYY-MM-DD | 7d | 2w>`, options anywhere."""
    options: dict[str, str] = {}
    words: list[str] = []
    for word in rest.split(" "):
        match = _OPTION.match(word.strip())
        if match:
            options["category" if match[1].lower() == "cat" else match[1].lower()] = match[2]
        else:
            words.append(word)
    text = _text(
        " ".join(words).strip(), "action", _ACTION_EXAMPLE.removeprefix("/incident action ")
    )
    owner = None
    last = text.rsplit(None, 1)
    if len(last) == 2 and (mention := _MENTION.match(last[1])):
        text, owner = last[0], mention.group(1)
    category = options.get("category", "").lower()
    if category not in ACTION_CATEGORIES:
        given = f" (got `{_shown(category)}`)" if category else ""
        choices = ", ".join(f"`category={c}`" for c in ACTION_CATEGORIES)
        raise CommandError(
            f"Give the action item a category: {choices}{given}, e.g. `{_ACTION_EXAMPLE}`."
        )
    return AddActionItem(text, owner, category, _due(options.get("due", "")))


def _due(word: str) -> Due:
    if not word:
        raise CommandError(
            f"Give the action item a due date: `due=2026-12-01`, `due=7d` or `due=2w`, "
            f"e.g. `{_ACTION_EXAMPLE}`."
        )
    relative = _RELATIVE_DUE.match(word)
    if relative:
        days = int(relative[1]) * (7 if relative[2].lower() == "w" else 1)
        if not 0 < days <= DUE_MAX_DAYS:
            raise CommandError(
                f"A due date is 1 to {DUE_MAX_DAYS} days away (got `{_shown(word)}`)."
            )
        return Due(in_days=days)
    try:
        return Due(on=date.fromisoformat(word))
    except ValueError:
        raise CommandError(
            f"`{_shown(word)}` is not a due date; use `YYYY-MM-DD`, `7d` or `2w`."
        ) from None


_ROOT_CAUSE = re.compile(r"(?:^|[\s.;,])root cause\s*:\s*", re.IGNORECASE)


def _resolve(text: str) -> Resolve:
    """`resolve <fix> [root cause: <cause>]`, as the seeds' close message has both."""
    parts = _ROOT_CAUSE.split(text, maxsplit=1)
    if len(parts) == 2:
        return Resolve(parts[0].strip(" .;,"), parts[1].strip())
    return Resolve(text)


def _page(rest: str) -> Page:
    if not rest:
        raise CommandError(
            "Name the service to page, e.g. `/incident page checkout 502s on every request`."
        )
    service, _, message = rest.partition(" ")
    return Page(_service_word(service), _public(message.strip(), "page"))


def _statuspage(rest: str) -> DraftStatusPage:
    status, _, message = rest.partition(" ")
    if not status:
        raise CommandError(
            f"Give a status ({', '.join(STATUSES)}) and what customers should read, e.g. "
            "`/incident statuspage investigating We are looking into failed checkouts.`"
        )
    return DraftStatusPage(_status(status), _public(message.strip(), "statuspage"))


def _scenario(rest: str) -> SwitchScenario:
    words = rest.lower().split()
    if len(words) > 2:
        raise CommandError("Usage: `/incident scenario <name> [service]`.")
    return SwitchScenario(*words)


def _service_word(word: str) -> str:
    if len(word.split()) != 1 or len(word) > 63:
        raise CommandError(f"Give one service name, e.g. `checkout` (got `{_shown(word)}`).")
    return word.lower()


def _public(text: str, verb: str) -> str:
    """Text bound for PagerDuty or the public status page: mentions and channel links
    mean nothing there (and would leak IDs), so they are refused, not passed on."""
    if re.search(r"<[@#!][^>]*>", text):
        raise CommandError(
            f"`/incident {verb}` text goes outside Slack: write names instead of @mentions "
            "or #channels."
        )
    problem = over_limit(text)
    if problem:
        raise CommandError(problem)
    return text


def _one_word(rest: str, what: str, example: str) -> str:
    if not rest or len(rest.split()) != 1:
        raise CommandError(f"Give one {what}, e.g. `/incident {what} {example}`.")
    return rest


def _text(rest: str, verb: str, example: str, *, required: bool = True) -> str:
    if required and not rest:
        raise CommandError(f"Add some text, e.g. `/incident {verb} {example}`.")
    problem = over_limit(rest)
    if problem:
        raise CommandError(problem)
    return rest


def _shown(word: str) -> str:
    """Echo user input back inside backticks without letting it break out."""
    return escape(word.replace("`", "'")[:40])
