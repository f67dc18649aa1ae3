"""Settings from the environment and an optional `.env` file.

A missing or bad setting stops start-up with one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values

from bot.durations import parse_duration
from bot.logs import LEVELS
from bot.paging.settings import PagingConfigError, PagingSettings, load_paging_settings
from runbooks import BUNDLED


class ConfigError(Exception):
    """One bad or missing setting; the message names it."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    slack_app_token: str | None
    slack_api_url: str
    database_url: str
    port: int
    runbooks_dir: Path
    announce_channel: str
    log_format: str
    log_level: str
    targets_file: Path
    postmortem_dir: Path
    archive_on_close: bool
    nudge_escalate_after: int
    snooze_max: timedelta
    paging: PagingSettings
    alert_token: str | None = None  # FIREBREAK_ALERT_TOKEN; None: alert intake off
    # FIREBREAK_EVIDENCE_DIR: where `/incident evidence` writes its (unredacted)
    # archives; None: evidence collection is off.
    evidence_dir: Path | None = None

    @property
    def socket_mode(self) -> bool:
        """Slack traffic over Socket Mode (an app-level token is set), not signed HTTP."""
        return self.slack_app_token is not None

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Settings(database={self.database_url.split('@')[-1]!r}, port={self.port})"


def load_settings(
    environ: Mapping[str, str] | None = None, *, require_slack: bool = True
) -> Settings:
    """Read settings; `.env` in the working directory fills what the environment lacks."""
    env: dict[str, str] = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    env.update(os.environ if environ is None else environ)

    bot_token = env.get("SLACK_BOT_TOKEN", "").strip()
    if bot_token and not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    app_token = env.get("SLACK_APP_TOKEN", "").strip() or None
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    port_text = env.get("PORT", "3000")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"PORT must be a port number, got {port_text!r}")
    api_url = env.get("SLACK_API_URL", "https://slack.com/api/").strip()
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError("SLACK_API_URL must be an http(s) URL")
    database_url = env.get("DATABASE_URL", "sqlite:///firebreak.db").strip()
    if not database_url.startswith(("sqlite", "postgres")):
        raise ConfigError("DATABASE_URL must be sqlite:///… or postgresql+psycopg://…")
    runbooks_dir = Path(env.get("FIREBREAK_RUNBOOKS", "") or BUNDLED)
    if not runbooks_dir.is_dir():
        raise ConfigError(f"FIREBREAK_RUNBOOKS: no folder at {runbooks_dir}")
    announce = env.get("FIREBREAK_ANNOUNCE_CHANNEL", "incidents").strip().lstrip("#")
    if not announce:
        raise ConfigError("FIREBREAK_ANNOUNCE_CHANNEL must name a channel")
    log_format = env.get("LOG_FORMAT", "text").strip().lower()
    if log_format not in ("text", "json"):
        raise ConfigError("LOG_FORMAT must be text or json")
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper()
    if log_level not in LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}")
    targets_file = Path(env.get("FIREBREAK_TARGETS", "") or runbooks_dir / "targets.yml")
    escalate_after = env.get("FIREBREAK_NUDGE_ESCALATE_AFTER", "2").strip()
    if not escalate_after.isdigit() or int(escalate_after) < 1:
        raise ConfigError(
            "FIREBREAK_NUDGE_ESCALATE_AFTER must be a whole number of nudges, 1 or more"
        )
    try:
        snooze_max = parse_duration(env.get("FIREBREAK_SNOOZE_MAX", "2h"))
    except ValueError as exc:
        raise ConfigError(f"FIREBREAK_SNOOZE_MAX: {exc}") from exc
    archive = env.get("FIREBREAK_ARCHIVE_ON_CLOSE", "false").strip().lower()
    if archive not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError("FIREBREAK_ARCHIVE_ON_CLOSE must be true or false")
    try:
        paging = load_paging_settings(env)
    except PagingConfigError as exc:
        raise ConfigError(str(exc)) from exc
    settings = Settings(
        slack_bot_token=bot_token,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip(),
        slack_app_token=app_token,
        slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
        database_url=database_url,
        port=int(port_text),
        runbooks_dir=runbooks_dir,
        announce_channel=announce,
        log_format=log_format,
        log_level=log_level,
        targets_file=targets_file,
        postmortem_dir=Path(env.get("FIREBREAK_POSTMORTEM_DIR", "") or "postmortems"),
        archive_on_close=archive in ("true", "1", "yes"),
        nudge_escalate_after=int(escalate_after),
        snooze_max=snooze_max,
        alert_token=env.get("FIREBREAK_ALERT_TOKEN", "").strip() or None,
        evidence_dir=Path(evidence)
        if (evidence := env.get("FIREBREAK_EVIDENCE_DIR", "").strip())
        else None,
        paging=paging,
    )
    missing = missing_for_serve(settings)
    if require_slack and missing:
        raise ConfigError(f"{missing[0]} is not set (see README: Connecting a Slack workspace)")
    return settings


def missing_for_serve(settings: Settings) -> list[str]:
    """The Slack settings `serve` still needs in the mode chosen (by SLACK_APP_TOKEN).

    Socket Mode requests come over a WebSocket opened with the app-level token and are
    not signed, so only HTTP mode needs the signing secret.
    """
    needed = {"SLACK_BOT_TOKEN": settings.slack_bot_token}
    if not settings.socket_mode:
        needed["SLACK_SIGNING_SECRET"] = settings.slack_signing_secret
    return [name for name, value in needed.items() if not value]
