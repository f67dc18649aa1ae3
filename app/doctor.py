"""`firebreak check`: the doctor to run before `serve`, one finding per line with its fix.

Without `--live` it reads only settings and files: what `serve` needs in the mode chosen
(HTTP or Socket Mode), the optional integrations that are on or off, the runbooks. With
`--live` it also calls out, each call under a short timeout: Slack (the token, its scopes
against manifest.yml, the broadcast channel), the database (answers, migrated) and
every target in targets.yml (Kubernetes permissions for exactly the calls the actions
make, each Postgres read-only, each health URL). Any `failed` finding makes the command
exit non-zero, so a deploy pipeline can gate on it; a `warning` does not.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

from app.manifest import bot_scopes, load_manifest
from bot.actions import Executors
from bot.actions.catalog import ActionCatalog, Target
from bot.config import Settings, missing_for_serve
from bot.executors import KubernetesExecutor, PostgresExecutor
from bot.executors.base import ExecutorError
from bot.executors.kubernetes import api_calls_of
from bot.executors.kubernetes_api import API_CALLS
from bot.gateway import ChatError
from bot.runbooks import Runbooks
from bot.triage.scenarios import ScenarioCatalog
from handlers.http_check import HttpExecutor
from handlers.slack_gateway import SlackGateway
from storage.db import describe, failure_reason, make_engine, normalise_url
from storage.migrate import code_heads, known_revisions, schema_heads

Status = Literal["ok", "warning", "failed"]
LIVE_TIMEOUT = 5.0  # seconds for each outside call of `check --live`
_SLACK_APP_PAGE = "the app's page at https://api.slack.com/apps"


@dataclass(frozen=True)
class Finding:
    """One checked item: how it stands, what was found, and what to do about it."""

    status: Status
    item: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<8}{self.item}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


def failed(findings: list[Finding]) -> bool:
    """Whether anything failed (the exit code of `check`)."""
    return any(f.status == "failed" for f in findings)


# -- settings and files ------------------------------------------------------------------


def settings_findings(
    settings: Settings,
    runbooks: Runbooks,
    catalog: ActionCatalog,
    scenarios: ScenarioCatalog,
    environ: Mapping[str, str] = os.environ,
) -> list[Finding]:
    """What can be told without calling anything: the mode, the settings it needs, the
    optional integrations, the runbooks, and the targets' own settings."""
    findings = [_mode(settings), *_slack_settings(settings), _database_setting(settings)]
    findings.append(Finding("ok", "FIREBREAK_ANNOUNCE_CHANNEL", f"#{settings.announce_channel}"))
    findings.append(_runbooks(runbooks, catalog, scenarios))
    findings.extend(_integrations(settings, catalog))
    findings.extend(_target_settings(catalog, environ))
    return findings


def _mode(settings: Settings) -> Finding:
    if settings.socket_mode:
        return Finding("ok", "mode", "Socket Mode (SLACK_APP_TOKEN is set): no public URL needed")
    return Finding(
        "ok",
        "mode",
        f"HTTP on port {settings.port}: Slack must send requests to "
        "https://<your host>/slack/events (`firebreak manifest --url https://<your host>`); "
        "set SLACK_APP_TOKEN for Socket Mode instead",
    )


_SETTING_FIXES = {
    "SLACK_BOT_TOKEN": "set it to the Bot User OAuth Token (xoxb-…) from OAuth & Permissions "
    f"on {_SLACK_APP_PAGE}",
    "SLACK_SIGNING_SECRET": "set it to the Signing Secret from Basic Information on "
    f"{_SLACK_APP_PAGE} (or use Socket Mode: SLACK_APP_TOKEN)",
}


def _slack_settings(settings: Settings) -> list[Finding]:
    missing = missing_for_serve(settings)

    def required(name: str) -> Finding:
        if name in missing:
            return Finding("failed", name, "not set", _SETTING_FIXES[name])
        return Finding("ok", name, "set")

    if settings.socket_mode:
        return [
            required("SLACK_BOT_TOKEN"),
            Finding("ok", "SLACK_APP_TOKEN", "set"),
            Finding("ok", "SLACK_SIGNING_SECRET", "not needed in Socket Mode"),
        ]
    return [required("SLACK_BOT_TOKEN"), required("SLACK_SIGNING_SECRET")]


def _database_setting(settings: Settings) -> Finding:
    where = describe(settings.database_url)
    if settings.database_url.startswith("sqlite"):
        return Finding("ok", "DATABASE_URL", f"{where} (one replica only; Postgres for more)")
    return Finding("ok", "DATABASE_URL", where)


def _runbooks(runbooks: Runbooks, catalog: ActionCatalog, scenarios: ScenarioCatalog) -> Finding:
    return Finding(
        "ok",
        "runbooks",
        f"severities {', '.join(runbooks.severities.levels)}; "
        f"{len(runbooks.severities.items)} checklist items; {len(catalog.actions)} runbook "
        f"actions; {len(scenarios.scenarios)} scenarios; {len(catalog.targets)} services; "
        f"{len(runbooks.alerts.rules)} alert rules",
    )


def _integrations(settings: Settings, catalog: ActionCatalog) -> list[Finding]:
    """The optional integrations, on or off; off where targets.yml expects one is a warning."""
    findings = []
    for name, on, setting, wanted in (
        (
            "PagerDuty",
            settings.paging.pagerduty is not None,
            "PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL",
            [t.name for t in catalog.targets.values() if t.pagerduty],
        ),
        (
            "Statuspage",
            settings.paging.statuspage is not None,
            "STATUSPAGE_API_KEY and STATUSPAGE_PAGE_ID",
            [t.name for t in catalog.targets.values() if t.statuspage],
        ),
        ("alert intake", settings.alert_token is not None, "FIREBREAK_ALERT_TOKEN", []),
    ):
        if on:
            findings.append(Finding("ok", name, "on"))
        elif wanted:
            findings.append(
                Finding(
                    "warning",
                    name,
                    f"off, though targets.yml names it for {', '.join(wanted)}",
                    f"set {setting}, or remove it from targets.yml",
                )
            )
        else:
            findings.append(Finding("ok", name, f"off (set {setting} to turn it on)"))
    return findings


def _target_settings(catalog: ActionCatalog, environ: Mapping[str, str]) -> list[Finding]:
    """Settings the targets name that are missing: each is a runbook action that would
    fail in the middle of an incident."""
    findings = []
    for target in catalog.targets.values():
        if target.postgres and not environ.get(target.postgres.url_env):
            findings.append(
                Finding(
                    "warning",
                    f"target {target.name}/postgres",
                    f"{target.postgres.url_env} is not set; its postgres actions will fail",
                    f"set {target.postgres.url_env} to a read-only Postgres URL",
                )
            )
    uses_kubernetes = any(t.kubernetes for t in catalog.targets.values())
    kubeconfig = environ.get("KUBECONFIG") or (
        str(Path("~/.kube/config").expanduser())
        if Path("~/.kube/config").expanduser().is_file()
        else None
    )
    if uses_kubernetes and not kubeconfig and not environ.get("KUBERNETES_SERVICE_HOST"):
        findings.append(
            Finding(
                "warning",
                "kubernetes",
                "no KUBECONFIG, no ~/.kube/config, and not running in a cluster",
                "set KUBECONFIG, or run Firebreak in the cluster with its service account",
            )
        )
    return findings


# -- live: calls out ----------------------------------------------------------------------


async def live_findings(
    settings: Settings,
    catalog: ActionCatalog,
    *,
    timeout: float = LIVE_TIMEOUT,
    executors: Executors | None = None,
) -> list[Finding]:
    """Call Slack, the database and every target, concurrently, each under `timeout`."""
    own = executors is None
    executors = executors or Executors(
        KubernetesExecutor(timeout=timeout),
        PostgresExecutor(timeout=timeout),
        HttpExecutor(timeout=timeout),
    )
    try:
        groups = await asyncio.gather(
            _slack(settings, timeout),
            _database(settings.database_url, timeout),
            *(_target(t, catalog, executors) for t in catalog.targets.values()),
        )
    finally:
        if own:
            executors.close()
    return [finding for group in groups for finding in group]


async def _database(url: str, timeout: float) -> list[Finding]:
    """`database_finding` off the loop; the driver's connect timeout bounds it."""
    return [await asyncio.to_thread(database_finding, url, timeout)]


async def _slack(settings: Settings, timeout: float) -> list[Finding]:
    if not settings.slack_bot_token:
        return []  # already a failed setting
    client = AsyncWebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=_seconds(timeout)
    )
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        return [
            Finding(
                "failed",
                "slack auth",
                f"auth.test refused SLACK_BOT_TOKEN ({error})",
                "copy the Bot User OAuth Token again; if the app was uninstalled, reinstall it",
            )
        ]
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [_unreachable("slack auth", settings.slack_api_url, exc)]
    who = f"bot @{response.get('user')} in {response.get('team')} ({response.get('url')})"
    findings = [Finding("ok", "slack auth", who)]
    header = response.headers.get("x-oauth-scopes")
    granted = set(header.split(",")) if header is not None else None
    findings.append(_scopes(granted))
    findings.append(await _broadcast_channel(SlackGateway(client), settings, granted))
    if settings.slack_app_token:
        findings.append(await _app_token(settings, timeout))
    return findings


def _scopes(granted: set[str] | None) -> Finding:
    if granted is None:
        return Finding("warning", "slack scopes", "Slack did not say which scopes the token has")
    wanted = bot_scopes(load_manifest())
    missing = [scope for scope in wanted if scope not in {g.strip() for g in granted}]
    if missing:
        return Finding(
            "failed",
            "slack scopes",
            f"the token lacks {', '.join(missing)} (manifest.yml asks for them)",
            "add them under OAuth & Permissions (or recreate the app from `firebreak "
            "manifest`), then reinstall the app to the workspace and copy the new token",
        )
    return Finding("ok", "slack scopes", f"all {len(wanted)} scopes of manifest.yml granted")


async def _broadcast_channel(
    gateway: SlackGateway, settings: Settings, granted: set[str] | None
) -> Finding:
    item, name = "broadcast channel", settings.announce_channel
    try:
        found = await gateway.find_channel(name)
    except ChatError as exc:
        return Finding("failed", item, f"could not list channels ({exc.code})")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _unreachable(item, settings.slack_api_url, exc)
    other = "or set FIREBREAK_ANNOUNCE_CHANNEL to an existing public channel"
    if found is None:
        return Finding("failed", item, f"no public channel #{name}", f"create #{name}, {other}")
    if found.is_archived:
        return Finding("failed", item, f"#{name} is archived", f"unarchive #{name}, {other}")
    needed = {"chat:write", "channels:join"}
    if granted is not None and not needed <= granted:
        lacking = ", ".join(sorted(needed - granted))
        return Finding("failed", item, f"#{name} exists, but the bot can't post without {lacking}")
    return Finding("ok", item, f"#{name} ({found.id}) exists; the bot joins it to post")


async def _app_token(settings: Settings, timeout: float) -> Finding:
    """Socket Mode: the app-level token may open a connection (the URL is not used)."""
    assert settings.slack_app_token is not None
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=_seconds(timeout))
    try:
        await client.apps_connections_open(app_token=settings.slack_app_token)
    except SlackApiError as exc:
        return Finding(
            "failed",
            "socket mode",
            f"apps.connections.open refused SLACK_APP_TOKEN ({exc.response.get('error')})",
            "enable Socket Mode and create an app-level token with connections:write under "
            f"Basic Information on {_SLACK_APP_PAGE}",
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _unreachable("socket mode", settings.slack_api_url, exc)
    return Finding("ok", "socket mode", "the app-level token may open connections")


def _unreachable(item: str, where: str, exc: BaseException) -> Finding:
    reason = str(exc) or type(exc).__name__
    return Finding("failed", item, f"could not reach {where} ({reason})", "check the network")


def database_finding(url: str, timeout: float = LIVE_TIMEOUT) -> Finding:
    """Whether the database answers and its schema is this release's (blocking: a thread)."""
    item, where = "database", describe(url)
    try:
        parsed = make_url(normalise_url(url))
    except (ArgumentError, ValueError):
        return Finding("failed", item, "DATABASE_URL can't be parsed", "check DATABASE_URL")
    sqlite = parsed.get_backend_name() == "sqlite" and parsed.database
    if sqlite and not Path(str(parsed.database)).is_file():  # connecting would create it
        return Finding("warning", item, f"{where} does not exist yet; `serve` creates it")
    engine = make_engine(url, connect_timeout=_seconds(timeout))
    try:
        with Session(engine) as session:
            heads = schema_heads(session)
    except OperationalError as exc:
        return Finding(
            "failed",
            item,
            f"cannot reach {where}: {failure_reason(url, exc)}",
            "check DATABASE_URL (host, port, user, password) and that the server is up",
        )
    finally:
        engine.dispose()
    migrate = "run `firebreak db upgrade` (serve also migrates on start)"
    expected = code_heads()
    if heads == expected:
        return Finding("ok", item, f"{where} answers; schema at {_names(heads)}")
    if heads - known_revisions():
        return Finding("warning", item, f"{where} is at {_names(heads)}, from a newer release")
    shown = _names(heads) or "nothing (never migrated)"
    return Finding(
        "warning", item, f"{where} answers; schema at {shown}, needs {_names(expected)}", migrate
    )


def _seconds(timeout: float) -> int:
    """Whole seconds, at least one, for clients that take no fractions."""
    return max(1, math.ceil(timeout))


def _names(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions))


async def _target(target: Target, catalog: ActionCatalog, executors: Executors) -> list[Finding]:
    findings = []
    if target.kubernetes:
        operations = [a.operation for a in catalog.actions.values() if "kubernetes" in a.executors]
        findings.append(await _kubernetes(target, api_calls_of(operations), executors.kubernetes))
    # An unset url_env is already a warning of the settings; nothing to call then.
    if target.postgres and executors.postgres.configured(target.postgres):
        item = f"target {target.name}/postgres"
        try:
            await executors.postgres.ping(target.postgres)
        except ExecutorError as exc:
            fix = f"check {target.postgres.url_env}, and that the server accepts Firebreak"
            findings.append(Finding("failed", item, str(exc), fix))
        else:
            answer = f"answers read-only (SELECT 1) via {target.postgres.url_env}"
            findings.append(Finding("ok", item, answer))
    if target.http and target.http.health:
        item, fix = f"target {target.name}/health", "check the health URL in targets.yml"
        try:
            result = await executors.http.check(target.http, "health")
        except ExecutorError as exc:
            findings.append(Finding("failed", item, str(exc), fix))
        else:
            status: Status = "ok" if result.ok else "failed"
            findings.append(Finding(status, item, result.summary, "" if result.ok else fix))
    return findings


async def _kubernetes(target: Target, calls: list[str], executor: KubernetesExecutor) -> Finding:
    """`kubectl auth can-i` for each call the actions make, in the target's namespace."""
    assert target.kubernetes is not None
    section, item = target.kubernetes, f"target {target.name}/kubernetes"
    try:
        answers = await asyncio.gather(*(executor.can_i(section, call) for call in calls))
    except ExecutorError as exc:
        return Finding("failed", item, str(exc), "check KUBECONFIG (or the in-cluster account)")
    denied = [
        " ".join(API_CALLS[call][1:])
        for call, (allowed, _) in zip(calls, answers, strict=True)
        if not allowed
    ]
    ns = section.namespace
    if denied:
        return Finding(
            "failed",
            item,
            f"forbidden in namespace {ns}: {', '.join(denied)}",
            "grant them to Firebreak's service account (see deploy/kubernetes/role.yaml)",
        )
    return Finding("ok", item, f"the {len(calls)} permissions the actions need in {ns} granted")
