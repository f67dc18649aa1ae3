from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import mrkdwn
from bot.durations import format_duration, parse_duration
from bot.incidents import views
from bot.runbooks import Runbooks


def test_user_text_keeps_mentions_and_escapes_the_rest() -> None:
    text = "ping <@U0ALICE|alice> and <#C0123|general> <!channel> <https://evil.example|docs> a&b"
    assert mrkdwn.user_text(text) == (
        "ping <@U0ALICE> and <#C0123> &lt;!channel&gt; &lt;https://evil.example|docs&gt; a&amp;b"
    )


def test_from_slack_decodes_once() -> None:
    assert mrkdwn.from_slack("a &gt; b &amp; c &lt;!here&gt;") == "a > b & c <!here>"
    assert mrkdwn.from_slack("typed &amp;lt; literally") == "typed &lt; literally"


def test_a_topic_of_ampersands_is_cut_between_entities(runbooks: Runbooks) -> None:
    class Incident:
        title = "&" * 150
        severity = "P1"
        status = "investigating"
        channel_id = "C0123"

        def role(self, name: str) -> None:
            return None

    topic = views.topic(Incident(), runbooks)  # type: ignore[arg-type]
    assert len(topic) <= views.TOPIC_MAX and topic.endswith("&amp;…")


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
        ("1m 30s", timedelta(seconds=90)),
        ("1h 5m", timedelta(minutes=65)),
        ("2d 3h", timedelta(days=2, hours=3)),
    ],
)
def test_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "15", "m", "-5m", "0s", "15 minutes", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400)))
def test_what_the_bot_writes_it_reads(delta: timedelta) -> None:
    """Every duration the bot shows (`1h 5m`, `2d 3h`, `45s`) can be typed back as is."""
    written = format_duration(delta)
    assert format_duration(parse_duration(written)) == written


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
