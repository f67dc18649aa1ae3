"""Durations written as `30s`, `15m`, `1h`, `1h30m`, `1m 30s` (cadences, snoozes).

`parse_duration` accepts everything `format_duration` writes (`1h 5m`, `2d 3h`), so a
person can type back what the bot showed them.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhd])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhd]\s*)+$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
SECONDS_SHOWN_UNDER = 600  # below 10 minutes a duration keeps its seconds


def parse_duration(text: str) -> timedelta:
    """Parse `15m`-style text; raise ValueError with a readable message otherwise."""
    if not _WHOLE.match(text.lower()):
        raise ValueError(
            f"`{text}` is not a duration; use a number and a unit, like 30s, 15m or 1h"
        )
    total = timedelta()
    for amount, unit in _PART.findall(text.lower()):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta():
        raise ValueError(f"`{text}` must be longer than zero")
    return total


def bounded_seconds(name: str, text: str, low: int, high: int) -> int:
    """`text` in whole seconds when it is a duration from `low` to `high` seconds; else a
    ValueError naming the range, the one answer every bounded duration gives."""
    try:
        seconds = int(parse_duration(text).total_seconds())
    except (ValueError, OverflowError):  # OverflowError: more days than a timedelta holds
        seconds = -1
    if not low <= seconds <= high:
        raise ValueError(
            f"`{name}` must be a duration from {compact_duration(low)} to "
            f"{compact_duration(high)}, like 30m or 2h"
        )
    return seconds


def format_duration(delta: timedelta) -> str:
    """`1h 5m`, `7m 30s`, `45s`: short, readable, and rounded rather than cut off.

    Under 10 minutes the seconds still matter to a reader (119 s is "1m 59s",
    not "1m"); from there on the nearest minute is enough.
    """
    seconds = int(delta.total_seconds() + 0.5)  # halves up, as people round
    if seconds < 60:
        return f"{seconds}s"
    if seconds < SECONDS_SHOWN_UNDER:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m {rest}s" if rest else f"{minutes}m"
    minutes = (seconds + 30) // 60  # to the nearest minute, halves up
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return " ".join(p for p in parts if p)


def compact_duration(seconds: int) -> str:
    """`5400` as `1h30m`, a day as `24h`: one word, which `parse_duration` reads back."""
    return (
        "".join(
            f"{amount}{unit}"
            for amount, unit in zip(
                (seconds // 3600, seconds % 3600 // 60, seconds % 60),
                "hms",
                strict=True,
            )
            if amount
        )
        or "0s"
    )
