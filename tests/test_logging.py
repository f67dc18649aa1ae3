"""Logging levels: ours follow LOG_LEVEL, third-party libraries stay at WARNING, and an
idle bot writes nothing (APScheduler alone used to write two lines every 2 seconds)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from app.wiring import SWEEP_SECONDS
from bot.config import ConfigError, load_settings
from bot.logs import OWN_LOGGERS, configure_logging
from bot.scheduling import SYNC_SECONDS
from tests.harness import running_firebreak

IDLE_SECONDS = SWEEP_SECONDS + SYNC_SECONDS  # every periodic job runs at least once


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as `firebreak serve` does at the default level, into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in OWN_LOGGERS}
    stream = io.StringIO()
    configure_logging("text", stream=stream)
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


async def test_an_idle_bot_writes_no_log_line(database_url: str, log_stream: io.StringIO) -> None:
    async with running_firebreak(database_url) as slack:
        await slack.command("declare P1 checkout down")  # an open incident to watch
        runs: Counter[str] = Counter()

        def executed(event: JobExecutionEvent) -> None:
            runs[event.job_id] += 1

        slack.app.scheduler._scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
        # The capture works: our INFO is written, a library's INFO is not.
        logging.getLogger("bot.probe").info("ours at INFO")
        logging.getLogger("apscheduler.probe").info("theirs at INFO")
        assert log_stream.getvalue().count("\n") == 1 and "ours at INFO" in log_stream.getvalue()
        log_stream.seek(0)
        log_stream.truncate()

        await asyncio.sleep(IDLE_SECONDS)
        assert runs["nudge-sync"] >= IDLE_SECONDS // SYNC_SECONDS - 1 and runs["sweep"] >= 1
        assert log_stream.getvalue() == ""


def test_log_level_setting() -> None:
    base = {"DATABASE_URL": "sqlite://"}
    assert load_settings(base, require_slack=False).log_level == "INFO"
    assert load_settings({**base, "LOG_LEVEL": "debug"}, require_slack=False).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_settings({**base, "LOG_LEVEL": "loud"}, require_slack=False)


def test_log_level_controls_our_loggers_only(log_stream: io.StringIO) -> None:
    configure_logging("text", "WARNING", stream=log_stream)
    logging.getLogger("handlers.x").info("hidden")
    logging.getLogger("storage.x").warning("shown")
    configure_logging("text", "DEBUG", stream=log_stream)
    logging.getLogger("bot.x").debug("debug shown")
    logging.getLogger("slack_sdk.x").info("library hidden")
    assert [line.split(": ", 1)[1] for line in log_stream.getvalue().splitlines()] == [
        "shown",
        "debug shown",
    ]
