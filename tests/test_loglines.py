"""bot/executors/loglines.py: timestamped lines from many pods or containers merged by
time, literal search, and the error distribution (normalised, counted, top 10)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.executors.loglines import (
    LogLine,
    error_groups,
    error_table,
    is_problem,
    merge,
    normalise,
    parse_stamped,
    render,
    search,
)

T0 = datetime(2026, 11, 29, 21, 0, tzinfo=UTC)


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def test_parse_takes_nanosecond_stamps_off_and_keeps_unstamped_lines_in_place() -> None:
    text = f"{stamp(1)} first\n  continued\n2026-11-29T22:00:00+01:00 offset zone\n"
    lines = parse_stamped(text, "pod-a")
    assert [line.text for line in lines] == ["first", "  continued", "offset zone"]
    assert lines[0].time == lines[1].time == T0 + timedelta(seconds=1)
    assert lines[2].time == T0 + timedelta(hours=0)  # 22:00+01:00 is 21:00 UTC
    assert {line.source for line in lines} == {"pod-a"}


def test_merge_interleaves_pods_by_time() -> None:
    a = parse_stamped(f"{stamp(1)} a1\n{stamp(5)} a5\n", "checkout-a")
    b = parse_stamped(f"{stamp(2)} b2\n{stamp(3)} b3\n{stamp(9)} b9\n", "checkout-b")
    merged = merge([a, b])
    assert [line.text for line in merged] == ["a1", "b2", "b3", "a5", "b9"]
    shown = render(merged).splitlines()
    assert shown[0] == "21:00:01 checkout-a  a1"
    assert shown[1] == "21:00:02 checkout-b  b2"


def test_render_shows_the_date_when_lines_span_days() -> None:
    lines = parse_stamped(f"{stamp(0)} today\n{stamp(86400)} tomorrow\n", "c")
    assert render(lines).splitlines() == ["11-29 21:00:00 c  today", "11-30 21:00:00 c  tomorrow"]


def test_search_is_literal_and_case_insensitive() -> None:
    lines = parse_stamped(f"{stamp(0)} Connection RESET by peer\n{stamp(1)} a.*b\n", "p")
    assert [line.text for line in search(lines, "connection reset")] == ["Connection RESET by peer"]
    assert [line.text for line in search(lines, ".*")] == ["a.*b"]  # never a pattern
    assert search(lines, "(") == []
    assert len(search(lines, None)) == 2


def test_secrets_are_masked_before_search_so_a_search_cannot_confirm_them() -> None:
    lines = parse_stamped(f"{stamp(0)} connecting with password=hunter2 to db\n", "p")
    assert "hunter2" not in render(lines)
    assert search(lines, "hunter2") == []


def test_a_private_key_logged_over_several_lines_is_masked_whole() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    text = "\n".join(
        f"{stamp(i)} {line}"
        for i, line in enumerate(
            [
                "loading key",
                "-----BEGIN PRIVATE KEY-----",
                body,
                body[::-1],
                "-----END PRIVATE KEY-----",
            ]
        )
    )
    shown = render(parse_stamped(text, "p"))
    assert body not in shown and body[::-1] not in shown and "loading key" in shown


def test_error_distribution_groups_what_varies_and_orders_by_count() -> None:
    text = "\n".join(
        [
            f"{stamp(1)} ERROR payment {uuid.uuid4()} failed after 350ms to 10.0.3.7:5432",
            f"{stamp(2)} INFO request served in 12ms",
            f"{stamp(3)} ERROR payment {uuid.uuid4()} failed after 90ms to 10.0.3.9:5432",
            f"{stamp(4)} WARN pool exhausted (20/20) id=deadbeef01",
            f"{stamp(7)} ERROR payment {uuid.uuid4()} failed after 1200ms to 10.0.4.1:5432",
        ]
    )
    groups = error_groups(parse_stamped(text, "p"))
    assert [(g.count, g.message) for g in groups] == [
        (3, "ERROR payment <uuid> failed after <n>ms to <ip>"),
        (1, "WARN pool exhausted (<n>/<n>) id=<hex>"),
    ]
    assert groups[0].first == T0 + timedelta(seconds=1)
    assert groups[0].last == T0 + timedelta(seconds=7)
    table = error_table(groups).splitlines()
    assert table[0].split() == ["COUNT", "FIRST", "SEEN", "LAST", "SEEN", "MESSAGE"]
    assert table[1].startswith("3      11-29 21:00:01  11-29 21:00:07  ERROR payment")


def test_error_table_keeps_the_top_ten() -> None:
    lines = [
        LogLine(T0, "p", f"ERROR kind{chr(97 + i)} broke") for i in range(15) for _ in range(i)
    ]
    groups = error_groups(lines)
    assert len(groups) == 14
    assert len(error_table(groups).splitlines()) == 11
    assert groups[0].message == "ERROR kindo broke"


def test_prefixed_ids_group_together() -> None:
    first = normalise(
        '{"level":"error","msg":"timeout","order":"ord_5c1e","pod":"web-7d9f8-x2k4p"}'
    )
    second = normalise(
        '{"level":"error","msg":"timeout","order":"ord_77a0","pod":"web-5b6c1-q9w4m"}'
    )
    assert first == second == '{"level":"error","msg":"timeout","order":"<id>","pod":"<id>"}'
    assert normalise("http2 to api/v2 in 30ms") == "http2 to api/v2 in <n>ms"


def test_level_words_are_words() -> None:
    assert is_problem("level=error msg=x") and is_problem("Traceback (most recent call last):")
    assert not is_problem("wrote to stderr") and not is_problem("terror of the deep")


times = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30).map(sorted)


@given(st.lists(times, max_size=5))
def test_merge_is_an_ordered_permutation(streams: list[list[int]]) -> None:
    parsed = [
        [LogLine(T0 + timedelta(seconds=s), f"pod{i}", f"{i}:{n}") for n, s in enumerate(stream)]
        for i, stream in enumerate(streams)
    ]
    merged = merge(parsed)
    assert sorted(line.text for line in merged) == sorted(
        line.text for stream in parsed for line in stream
    )
    stamps = [line.time for line in merged]
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    for i in range(len(streams)):  # each source keeps its own order
        assert [line.text for line in merged if line.source == f"pod{i}"] == [
            line.text for line in parsed[i]
        ]


@given(
    st.integers(min_value=0, max_value=10**9),
    st.uuids(),
    st.ip_addresses(),
    st.datetimes(timezones=st.just(UTC)),
)
def test_occurrences_that_differ_in_ids_normalise_alike(
    number: int, ident: uuid.UUID, address: object, when: datetime
) -> None:
    template = "ERROR at {} order {} failed for {} from {}"
    line = template.format(when.isoformat(), number, ident, address)
    other = template.format(T0.isoformat(), 7, uuid.UUID(int=0), "10.0.0.1")
    assert normalise(line) == normalise(other)
    assert normalise(normalise(line)) == normalise(line)


@given(st.text(max_size=300))
def test_normalise_and_grouping_take_any_text(text: str) -> None:
    groups = error_groups([LogLine(None, "p", text)])
    assert len(groups) == (1 if is_problem(text) else 0)
