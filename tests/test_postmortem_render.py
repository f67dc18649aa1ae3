"""The post-mortem's pure parts: Markdown safety, Slack markup, metrics, event wording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.postmortem import metrics
from bot.postmortem.markdown import escape, link, shorten, slack_to_plain, typed_to_plain
from bot.postmortem.render import PostmortemTemplate
from bot.postmortem.timeline import describe
from handlers.modals import RESOLUTION_CALLBACK, parse_resolution, resolution_form
from runbooks import BUNDLED
from storage.models import Event

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def event(minute: int, type_: str, actor: str = "U0ALICE", **payload: Any) -> Event:
    return Event(type=type_, actor=actor, at=T0 + timedelta(minutes=minute), payload=payload)


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("[docs](https://evil.example)", r"\[docs\](https://evil.example)"),
        ("![x](https://evil.example/a.png)", r"!\[x\](https://evil.example/a.png)"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("<https://evil.example>", "&lt;https://evil.example&gt;"),
        ("# not a heading", r"\# not a heading"),
        ("1. not a list", r"1\. not a list"),
        ("> not a quote", "&gt; not a quote"),
        ("**bold** _it_ `code` | ~~x~~", r"\*\*bold\*\* \_it\_ \`code\` \| \~\~x\~\~"),
        ("&lt;b&gt; as an entity", "&amp;lt;b&amp;gt; as an entity"),
        ("line one\n\n## line two", "line one ## line two"),  # one line: no heading
        ("fish & chips", "fish & chips"),
    ],
)
def test_user_text_is_inert_markdown(typed: str, shown: str) -> None:
    assert escape(typed) == shown


def test_typed_text_keeps_what_was_typed_and_names_mentions() -> None:
    """Event texts are stored as typed: only Slack's own markup in them is converted."""
    names = {"U0BOB": "Bob Example"}.get
    typed = "p99 < 200ms & x>3 <v1.4.2> &amp; <@U0BOB|bob> <!here> <https://x.example|docs>"
    assert typed_to_plain(typed, lambda u: names(u) or u) == (
        "p99 < 200ms & x>3 <v1.4.2> &amp; @Bob Example @here docs (https://x.example)"
    )


def test_links_are_built_only_for_web_urls() -> None:
    assert link("a]b", "https://x.example/p (1)") == r"[a\]b](https://x.example/p%20%281%29)"
    assert link("click", "javascript:alert(1)") == "click"


def test_slack_markup_becomes_plain_text() -> None:
    text = (
        "<@U0BOB|bob> see <https://status.example|status> and <https://a.example>, "
        "<#C0123|ops> <!here> <!subteam^S1|@oncall> &lt;tag&gt; &amp;"
    )
    names = {"U0BOB": "Bob Example"}
    assert slack_to_plain(text, lambda u: names.get(u, u)) == (
        "@Bob Example see status (https://status.example) and https://a.example, "
        "#ops @here @oncall <tag> &"
    )


def test_shorten_cuts_at_a_word() -> None:
    assert shorten("short", 10) == ("short", False)
    assert shorten("one two three four", 12) == ("one two …", True)


def test_template_source_in_data_is_printed_not_run() -> None:
    template = PostmortemTemplate(BUNDLED / "templates")
    document: dict[str, Any] = {
        "generated_at": "2024-03-01T10:00:00Z",
        "incident": {
            "id": 1,
            "title": "{{ 7*7 }} {% if true %}x{% endif %} [a](https://evil)",
            "description": "",
            "severity": "P2",
            "status": "resolved",
            "channel_id": "C1",
            "channel_name": "incident-x",
            "declared_by": "U0ALICE",
            "declared_by_name": "Alice <script>",
            "closed": False,
        },
        "times": dict.fromkeys(("acknowledged", "mitigated", "resolved", "closed"))
        | {"declared": "2024-03-01T09:00:00Z"},
        "duration": None,
        "metrics": dict.fromkeys(("time_to_acknowledge", "time_to_mitigate", "time_to_resolve")),
        "severity_history": [],
        "status_history": [],
        "roles": [],
        "participants": [],
        "joined_without_posting": [],
        "timeline": [],
        "key_moments": [],
        "resolution": None,
        "notes": [],
        "action_items": [],
        "checklist": [],
        "diagnostics": [],
        "mitigations": [],
        "folded": {},
        "stats": {},
    }
    markdown = template.markdown(document)
    assert r"# Post-mortem: {{ 7\*7 }} {% if true %}x{% endif %} \[a\](https://evil)" in markdown
    assert "49" not in markdown and "Alice &lt;script&gt;" in markdown
    assert "| Time to acknowledge | not recorded |" in markdown
    assert "> ✍️ **To fill in:** what was done to resolve the incident" in markdown


def test_metrics_follow_the_log() -> None:
    events = [
        event(0, "declared", severity="P1"),  # by Alice: a person, so acknowledged here
        event(2, "note", "U0BOB", text="looking"),
        event(8, "mitigation_executed", "firebreak", ok=False, action="restart"),
        event(10, "mitigation_executed", "firebreak", ok=True, action="scale"),  # mitigated
        event(12, "status", "U0BOB", old="identified", new="monitoring"),
        event(15, "resolved", "U0BOB", summary="done"),
        event(20, "status", "U0BOB", old="resolved", new="investigating"),  # reopened
        event(30, "resolved", "U0BOB", summary="done again"),
    ]
    measured = metrics.compute(T0, events)
    assert measured.as_dict() == {
        "time_to_acknowledge": 0.0,
        "time_to_mitigate": 600.0,
        "time_to_resolve": 1800.0,
    }


def automatic(*later: Event) -> datetime | None:
    """When an incident declared by no person (an alert, say) was acknowledged."""
    declared = [event(0, "declared", "firebreak"), event(0, "channel_created", "firebreak")]
    return metrics.compute(T0, [*declared, *later]).acknowledged_at


def test_acknowledged_is_the_first_thing_a_person_does_on_an_automatic_incident() -> None:
    assert automatic() is None  # nobody has touched it: not recorded, not guessed
    reminded_then_ticked = (
        event(15, "nudge", "firebreak"),  # Firebreak's own doings are not acknowledgement
        event(17, "checklist_checked", "U0BOB", key="triage.acknowledge"),
        event(20, "update", "U0CAROL", text="on it"),
    )
    assert automatic(*reminded_then_ticked) == T0 + timedelta(minutes=17)
    assert automatic(event(4, "status", "W0ENTERPRISE", new="identified")) == T0 + timedelta(
        minutes=4
    )


def test_a_pagerduty_acknowledgement_counts_at_the_time_pagerduty_gives() -> None:
    # The webhook arrives at minute 9; PagerDuty says the on-call acknowledged at minute 7.
    acked = event(
        9, "paging.acknowledged", "pagerduty", occurred_at=(T0 + timedelta(minutes=7)).isoformat()
    )
    assert automatic(acked, event(12, "update", "U0BOB", text="x")) == T0 + timedelta(minutes=7)
    # A person who acted first is still first; a time PagerDuty cannot give is the arrival.
    assert automatic(event(5, "note", "U0BOB", text="x"), acked) == T0 + timedelta(minutes=5)
    garbled = event(9, "paging.acknowledged", "U0DANA", occurred_at="yesterday")
    assert automatic(garbled) == T0 + timedelta(minutes=9)


@pytest.mark.parametrize(
    "first",
    [event(2, "resolved", "firebreak"), event(2, "mitigation_executed", "firebreak", ok=True)],
)
def test_acknowledged_is_never_later_than_mitigation_or_resolution(first: Event) -> None:
    assert automatic(first, event(6, "update", "U0BOB", text="x")) == T0 + timedelta(minutes=2)
    reopened = event(3, "status", "U0BOB", old="resolved", new="investigating")
    assert automatic(first, reopened) == T0 + timedelta(minutes=2)


def test_every_logged_event_reads_as_a_sentence() -> None:
    names = {"U0BOB": "Bob", "U0CAROL": "Carol"}

    def name(user: str | None) -> str:
        return names.get(user or "", user or "someone")

    cases = {
        event(0, "role", role="comms", user="U0CAROL", previous="U0BOB"): (
            "Role",
            "Carol is now comms (was Bob)",
        ),
        event(0, "action_item", text="Add an alert <@U0BOB>", owner="U0CAROL"): (
            "Action item",
            "Add an alert @Bob (owner: Carol)",
        ),
        event(0, "mitigation_refused", "U0BOB", action="restart", service="api", reason="busy"): (
            "Mitigation",
            "Bob's confirmation of restart api was refused: busy.",
        ),
        event(
            0,
            "mitigation_requested",
            "U0CAROL",
            action="scale",
            service="api",
            params={"replicas": 6},
        ): ("Mitigation", "Carol proposed scale api replicas=6."),
        event(0, "nudge", "firebreak", late=True, escalated=True): (
            "Reminder",
            "status update due, escalated",
        ),
        event(0, "nudge", "firebreak", answered=True): (
            "Reminder",
            "status update due, crossed by an update posted meanwhile",
        ),
        event(0, "something_new", x=1): ("Something new", ""),
    }
    for logged, expected in cases.items():
        assert describe(logged, name) == expected  # type: ignore[arg-type]


def test_resolution_form_round_trip() -> None:
    view = resolution_form("C123")
    assert view["callback_id"] == RESOLUTION_CALLBACK
    submitted = {
        **view,
        "state": {"values": {"summary": {"summary": {"value": "  Rolled back  "}}}},
    }
    assert parse_resolution(submitted) == ("C123", "Rolled back", {})
    blank = {**view, "state": {"values": {"summary": {"summary": {"value": " "}}}}}
    channel, summary, errors = parse_resolution(blank)
    assert (channel, summary) == ("C123", "") and "summary" in errors
