from __future__ import annotations

from datetime import timedelta

import pytest

from bot import commands as c
from bot.runbooks import Runbooks


def parse(text: str, runbooks: Runbooks) -> c.Command:
    return c.parse(text, runbooks.severities)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("declare P1 checkout API returning 502s", c.Declare("P1", "checkout API returning 502s")),
        ("declare sev1 db down", c.Declare("P0", "db down")),
        ("DECLARE p3   minor   thing ", c.Declare("P3", "minor thing")),
        ("declare checkout is slow", c.Declare("P2", "checkout is slow")),
        ("", c.OpenDeclareForm()),
        ("declare", c.OpenDeclareForm()),
        ("declare P0", c.OpenDeclareForm("P0")),
        ("list", c.ListIncidents()),
        ("help", c.Help()),
        ("severity SEV2", c.SetSeverity("P1")),
        ("severity p0", c.SetSeverity("P0")),
        ("status Monitoring", c.SetStatus("monitoring")),
        ("update rolled back <@U1ABC|alice>", c.PostUpdate("rolled back <@U1ABC|alice>")),
        ("assign comms <@U0BOB|bob>", c.AssignRole("comms", "U0BOB")),
        ("assign lead <@U0BOB>", c.AssignRole("lead", "U0BOB")),
        ("commander <@U0ALICE|alice>", c.AssignRole("commander", "U0ALICE")),
        ("note saw a spike", c.AddNote("saw a spike")),
        ("resolve", c.Resolve("")),
        ("resolve bad config rolled back", c.Resolve("bad config rolled back")),
        ("snooze 1m 30s", c.Snooze(timedelta(seconds=90))),
        ("snooze 1h 5m", c.Snooze(timedelta(minutes=65))),
        ("snooze 30m", c.Snooze(timedelta(minutes=30))),
    ],
)
def test_grammar(text: str, expected: c.Command, runbooks: Runbooks) -> None:
    assert parse(text, runbooks) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severity P9", "Unknown severity `P9`. Use P0–P3 or SEV1–SEV4."),
        ("declare SEV9 title", "Unknown severity `SEV9`. Use P0–P3 or SEV1–SEV4."),
        ("status fixed", "Unknown status `fixed`"),
        ("assign boss <@U0BOB>", "Unknown role `boss`"),
        ("assign comms bob", "Mention one user with @"),
        ("assign comms <@U0BOB> <@U0EVE>", "Mention one user with @"),
        ("commander <!channel>", "Mention one user with @"),
        ("update", "Add some text"),
        ("severity", "Give one severity"),
        ("snooze", "Give a duration"),
        ("snooze 1m thirty", "is not a duration"),
        ("declare P1 " + "x" * 151, "keep it under 150"),
        ("update " + "x" * 2801, "the limit is 2,800, so it is 1 over"),
        ("update " + "&" * 1000, "comes to 5,000 characters once formatted for Slack"),
    ],
)
def test_bad_input_gets_a_specific_message(text: str, message: str, runbooks: Runbooks) -> None:
    with pytest.raises(c.CommandError) as raised:
        parse(text, runbooks)
    assert message in str(raised.value)
    assert not raised.value.show_help


def test_unknown_subcommand_shows_help(runbooks: Runbooks) -> None:
    with pytest.raises(c.CommandError) as raised:
        parse("explode now", runbooks)
    assert raised.value.show_help
    assert "Unknown subcommand `explode`" in str(raised.value)


def test_echoed_input_cannot_inject_markup(runbooks: Runbooks) -> None:
    with pytest.raises(c.CommandError) as raised:
        parse("status <!channel>", runbooks)
    assert "<!channel>" not in str(raised.value)
    assert "&lt;!channel&gt;" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("page checkout", c.Page("checkout")),
        ("page Payments card payments failing", c.Page("payments", "card payments failing")),
        ("oncall", c.ShowOnCall()),
        ("on-call checkout", c.ShowOnCall("checkout")),
        ("statuspage investigating", c.DraftStatusPage("investigating")),
        (
            "statuspage Identified We found it & are fixing it",
            c.DraftStatusPage("identified", "We found it & are fixing it"),
        ),
    ],
)
def test_paging_grammar(text: str, expected: c.Command, runbooks: Runbooks) -> None:
    assert parse(text, runbooks) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("page", "Name the service to page"),
        ("statuspage", "Give a status"),
        ("statuspage fixed all good", "Unknown status `fixed`"),
        ("statuspage resolved thanks <@U0BOB|bob>", "write names instead of @mentions"),
        ("statuspage resolved ping <!channel>", "write names instead of @mentions"),
        ("oncall checkout payments", "Give one service name"),
    ],
)
def test_paging_grammar_errors(text: str, message: str, runbooks: Runbooks) -> None:
    with pytest.raises(c.CommandError, match=message):
        parse(text, runbooks)


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ('diag logs checkout grep="conn reset" since=1h', ("grep=conn reset", "since=1h")),
        ("diag logs checkout grep=“conn reset” previous", ("grep=conn reset", "previous")),
        ('diag logs checkout "grep=a b"', ("grep=a b",)),
        ("diag logs checkout grep=it's", ("grep=it's",)),
    ],
)
def test_runbook_arguments_may_quote_text(text: str, args: tuple, runbooks: Runbooks) -> None:
    assert parse(text, runbooks) == c.RunDiagnostic("logs", "checkout", args)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('diag logs checkout grep="conn reset', "A quote is not closed"),
        ("diag logs checkout grep=“conn", "A quote is not closed"),
        ("diag logs checkout grep=" + "x" * 10_000, "Too many or too long arguments"),
    ],
)
def test_runbook_argument_mistakes(text: str, message: str, runbooks: Runbooks) -> None:
    with pytest.raises(c.CommandError, match=message):
        parse(text, runbooks)
