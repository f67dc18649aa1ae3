"""Logging set-up: text or one JSON object per line, with request context, never a secret.

The incident, Slack request and user IDs live in context variables, so a
log line written deep inside background work still says which request and
incident it belongs to (asyncio copies the context into each task). The
services set `incident_id` as soon as they have loaded the request's incident
(after the transaction: a change made inside Database.run's thread would not
come back), and the outbox and reminders set it for the incident they serve.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from bot.redact import redact

incident_id: ContextVar[int | None] = ContextVar("incident_id", default=None)
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id: ContextVar[str | None] = ContextVar("user_id", default=None)


def _context() -> dict[str, object]:
    values = {
        "incident_id": incident_id.get(),
        "request_id": request_id.get(),
        "user_id": user_id.get(),
    }
    return {k: v for k, v in values.items() if v is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            **_context(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context().items())
        text = redact(super().format(record))
        return f"{text} [{context}]" if context else text


# Our own loggers; everything else (APScheduler, aiohttp, slack_sdk, Bolt) stays at
# WARNING, so an idle bot writes nothing (APScheduler alone logged two INFO lines
# every 2 s: 86,000 a day).
OWN_LOGGERS = ("bot", "handlers", "storage", "app", "firebreak", "devtools")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(log_format: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Called once by the CLI; nothing configures logging at import time."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
