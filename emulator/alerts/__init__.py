"""Example alerts (Alertmanager webhook payloads, version 4), as data.

`firebreak shell`'s `:alert <name>` fires one; the tests and the benchmark start
from them too. `example(name, starts_at)` reads one and dates its alerts.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def example(name: str, starts_at: datetime | None = None, status: str = "firing") -> dict[str, Any]:
    """The payload `name`.json, its alerts starting at `starts_at`, with `status`."""
    path = FOLDER / f"{name}.json"
    if name not in names():
        raise ValueError(f"No example alert {name!r}; there are: {', '.join(names())}.")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["status"] = status
    for alert in data["alerts"]:
        alert["status"] = status
        if starts_at is not None:
            alert["startsAt"] = starts_at.isoformat().replace("+00:00", "Z")
    return data
