from __future__ import annotations

from datetime import timedelta

import pytest

from bot import mrkdwn
from bot.durations import format_duration, parse_duration
from bot.runbooks import Runbooks


def test_user_text_keeps_mentions_and_escapes_the_rest() -> None:
    text = "ping <@U0ALICE|alice> and <#C0123|general> <!channel> <https://evil.example|docs> a&b"
    assert mrkdwn.user_text(text) == (
        "ping <@U0ALICE> and <#C0123> &lt;!channel&gt; &lt;https://evil.example|docs&gt; a&amp;b"
    )


def test_mention_rejects_non_ids() -> None:
    assert mrkdwn.mention("U0ALICE") == "<@U0ALICE>"
    assert mrkdwn.mention("!channel") == "!channel"
    assert mrkdwn.mention("<!here>") == "&lt;!here&gt;"


def test_templates_escape_values_and_never_evaluate_them(runbooks: Runbooks) -> None:
    class Incident:
        title = "{{ 7*7 }} <!channel> {% raw %}"
        severity = "P1"
        status = "investigating"

    topic = runbooks.templates.render("topic.j2", incident=Incident(), commander="U0ALICE")
    assert "{{ 7*7 }}" in topic and "49" not in topic
    assert "&lt;!channel&gt;" in topic and "<!channel>" not in topic
    assert "<@U0ALICE>" in topic


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "15", "m", "-5m", "0s", "15 minutes", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(seconds=42)) == "42s"
    assert format_duration(timedelta(hours=1, minutes=5)) == "1h 5m"
    assert format_duration(timedelta(days=2, hours=3)) == "2d 3h"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (119, "1m 59s"),  # under 10 minutes the seconds are kept, not cut off
        (59.6, "1m"),
        (120, "2m"),
        (599.4, "9m 59s"),
        (599.5, "10m"),
        (629, "10m"),  # from 10 minutes on, the nearest minute
        (630, "11m"),
        (3599, "1h"),
        (3600 + 5 * 60 + 40, "1h 6m"),
    ],
)
def test_format_duration_rounds(seconds: float, shown: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == shown
