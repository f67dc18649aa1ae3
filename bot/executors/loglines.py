"""Log lines from many sources (pods, containers) as one readable stream, and the
error distribution the seeds get from `grep -i error | sort | uniq -c | sort -rn`.

Pure functions over text, shared by the Kubernetes and Docker executors: both ask
their API for lines prefixed with an RFC 3339 timestamp, so lines from every pod or
container can be merged by time. Every line is redacted before it is searched,
grouped or shown, so a search can't confirm a secret that the output hides.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.executors.base import ExecutionResult, build_result, format_table, truncate
from bot.redact import redact

TOP_ERRORS = 10
MESSAGE_CHARS = 160
LINE_CHARS = 2000  # one absurd line (a minified payload) must not fill the message alone

# `2026-11-29T21:03:04.123456789Z ` (Kubernetes, Docker) or with an offset.
_STAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2}) ?"
)


@dataclass(frozen=True)
class LogLine:
    """One line, when it was written (None when the source gave no timestamp), and
    which pod or container wrote it."""

    time: datetime | None
    source: str
    text: str


def parse_stamped(text: str, source: str) -> list[LogLine]:
    """Split `timestamps=true` output into lines; the stamp is taken off the text.
    A line without one (cut by a byte limit, or written by a driver that adds none)
    takes the time of the line before it, so merging keeps it in place."""
    lines: list[LogLine] = []
    last: datetime | None = None
    # The whole text at once: a private key spans lines, and only its BEGIN line would
    # look like one to a line-by-line pass.
    for raw in redact(text).splitlines():
        match = _STAMP.match(raw)
        if match:
            last = _when(match)
            raw = raw[match.end() :]
        lines.append(LogLine(last, source, raw))
    return lines


def _when(match: re.Match[str]) -> datetime:
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    stamp = datetime.fromisoformat(f"{match['date']}T{match['time']}.{frac}{zone}")
    return stamp.astimezone(UTC)


def merge(streams: Iterable[Sequence[LogLine]]) -> list[LogLine]:
    """Lines of every source in time order; each source is already in order, and lines
    of equal time keep their source's order (a stack trace stays together)."""
    floor = datetime.min.replace(tzinfo=UTC)
    return list(heapq.merge(*streams, key=lambda line: line.time or floor))


def search(lines: Iterable[LogLine], needle: str | None) -> list[LogLine]:
    """The lines containing `needle` in any case, as literal text: never a pattern."""
    if not needle:
        return list(lines)
    folded = needle.casefold()
    return [line for line in lines if folded in line.text.casefold()]


def render(lines: Sequence[LogLine]) -> str:
    """`21:03:04 checkout-b  message`: the time (with the date when the lines span
    more than one day) and the source, aligned, so merged pods read as one log."""
    if not lines:
        return ""
    days = {line.time.date() for line in lines if line.time}
    fmt = "%H:%M:%S" if len(days) <= 1 else "%m-%d %H:%M:%S"
    width = max(len(line.source) for line in lines)
    blank = " " * len(datetime(2000, 1, 1).strftime(fmt))
    return "\n".join(
        f"{line.time.strftime(fmt) if line.time else blank} {line.source.ljust(width)}  "
        f"{truncate(line.text, LINE_CHARS)}".rstrip()
        for line in lines
    )


def time_range(lines: Sequence[LogLine]) -> str:
    """`21:00:01–21:03:04 UTC` for a summary, or "" when no line has a time."""
    times = [line.time for line in lines if line.time]
    if not times:
        return ""
    return f"{min(times):%H:%M:%S}–{max(times):%H:%M:%S} UTC"


# -- the error distribution ---------------------------------------------------------------

_LEVEL = re.compile(
    r"(?i)(?<![a-z])(?:error|err|errors|fatal|panic|exception|critical|crit|warn|warning|"
    r"failed|failure|traceback|severe)(?![a-z])"
)
# A run of hex digits and colons with `::` or seven colons (IPv6, bracketed or not).
_IPV6 = (
    r"(?i)\[?(?<![\w:])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})[0-9a-f:]{2,39}(?![\w:])\]?"
    r"(?::\d{1,5})?"
)
# Order matters: the widest shapes go first, so a UUID is not read as five hex numbers.
_NORMALISE = (
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<ip>"),
    (re.compile(_IPV6), "<ip>"),
    (re.compile(r"(?i)\b0x[0-9a-f]+\b"), "<hex>"),
    (re.compile(r"(?i)\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"), "<hex>"),
    # A prefixed ID with digits in it: ord_5c1e, req-7f3a9, checkout-7d9f8-x2k4p.
    (re.compile(r"\b[A-Za-z]{1,20}(?:[_-](?=[A-Za-z0-9]*\d)[A-Za-z0-9]{3,})+\b"), "<id>"),
    (re.compile(r"(?<![A-Za-z<])[-+]?\d+(?:\.\d+)?"), "<n>"),
)


def is_problem(text: str) -> bool:
    """An error or warning line: a level word such as ERROR, warn, Exception, fatal."""
    return bool(_LEVEL.search(text))


def normalise(text: str) -> str:
    """The message with what varies between occurrences (times, UUIDs, IPs, hex and
    prefixed IDs, numbers) replaced by placeholders, so occurrences of one error group together."""
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())


@dataclass
class ErrorGroup:
    message: str
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, when: datetime | None) -> None:
        self.count += 1
        if when is not None:
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)


def error_groups(lines: Iterable[LogLine]) -> list[ErrorGroup]:
    """Every distinct error or warning message with its count and when it was first and
    last seen, the most frequent first (ties: the most recent first)."""
    groups: dict[str, ErrorGroup] = {}
    for line in lines:
        if is_problem(line.text):
            key = truncate(normalise(line.text), MESSAGE_CHARS)
            groups.setdefault(key, ErrorGroup(key)).add(line.time)
    floor = datetime.min.replace(tzinfo=UTC)
    found = sorted(groups.values(), key=lambda g: g.last or floor, reverse=True)
    found.sort(key=lambda g: g.count, reverse=True)  # stable: ties stay most recent first
    return found


def error_table(groups: Sequence[ErrorGroup], top: int = TOP_ERRORS) -> str:
    """COUNT FIRST LAST MESSAGE for the `top` groups."""

    def at(when: datetime | None) -> str:
        return f"{when:%m-%d %H:%M:%S}" if when else "?"

    rows = [[g.count, at(g.first), at(g.last), g.message] for g in groups[:top]]
    return format_table(["COUNT", "FIRST SEEN", "LAST SEEN", "MESSAGE"], rows)


def errors_summary(groups: Sequence[ErrorGroup], scanned: int, where: str, window: str) -> str:
    """One line for the channel: how many problem lines, how many kinds, the top one."""
    if not groups:
        return f"no error or warning lines in {scanned} log lines of {where} in the last {window}"
    total = sum(g.count for g in groups)
    top = groups[0]
    return (
        f"{total} error/warning lines of {len(groups)} kinds in the last {window} from {where}; "
        f"top ({top.count}×): {truncate(top.message, 80)}"
    )


# -- results shared by the executors -------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """What an executor read from one service: a list of lines per pod or container,
    and notes on what it could not read (a pod without a previous container, a window
    cut at the byte budget)."""

    streams: Sequence[Sequence[LogLine]]
    sources: int
    notes: Sequence[str] = ()


def logs_result(read: Read, *, tail: int, grep: str | None, where: str) -> ExecutionResult:
    """The last `tail` lines (with `grep`: the last `tail` matching lines) of every
    source, merged by time."""
    lines = search(merge(read.streams), grep)[-tail:]
    span = time_range(lines)
    matching = f' matching "{grep}"' if grep else ""
    what = f"{read.sources} {'source' if read.sources == 1 else 'sources'}"
    if lines:
        summary = f"last {len(lines)} log lines{matching} of {where} ({what}"
        summary += f", {span})" if span else ")"
    else:
        summary = f"no log lines{matching} from {where} ({what})"
    output = "\n".join([render(lines), *_notes(read)]).strip()
    sources = sorted({line.source for line in lines})
    return build_result(True, summary, output, lines=len(lines), sources=sources)


def errors_result(read: Read, *, where: str, window: str) -> ExecutionResult:
    """The error distribution of everything read: top 10 with count, first and last seen."""
    lines = merge(read.streams)
    groups = error_groups(lines)
    summary = errors_summary(groups, len(lines), where, window)
    output = "\n".join([error_table(groups) if groups else "", *_notes(read)]).strip()
    top = [{"message": g.message, "count": g.count} for g in groups[:TOP_ERRORS]]
    return build_result(True, summary, output, groups=len(groups), top=top, scanned=len(lines))


def _notes(read: Read) -> list[str]:
    return [f"({note})" for note in read.notes]
