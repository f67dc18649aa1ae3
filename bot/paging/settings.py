"""PagerDuty and Statuspage settings, and each service's place in them (`targets.yml`).

Both integrations are optional: without `PAGERDUTY_API_TOKEN` nothing is paged,
without `STATUSPAGE_API_KEY` nothing is published, and the commands say so.
A half-configured integration stops start-up with one line naming what is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.yamlfile import Node

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PD_ID = re.compile(r"^P[A-Z0-9]{5,13}$")
_SP_ID = re.compile(r"^[a-z0-9]{6,20}$")


class PagingConfigError(Exception):
    """One bad or missing paging setting; the message names it."""


@dataclass(frozen=True)
class PagerDutySettings:
    api_token: str
    from_email: str
    webhook_secret: str
    api_url: str

    def __repr__(self) -> str:  # never print the token or the secret
        return f"PagerDutySettings(api_url={self.api_url!r}, from_email={self.from_email!r})"


@dataclass(frozen=True)
class StatuspageSettings:
    api_key: str
    page_id: str
    api_url: str

    def __repr__(self) -> str:
        return f"StatuspageSettings(api_url={self.api_url!r}, page_id={self.page_id!r})"


@dataclass(frozen=True)
class PagingSettings:
    pagerduty: PagerDutySettings | None
    statuspage: StatuspageSettings | None


def load_paging_settings(env: Mapping[str, str]) -> PagingSettings:
    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    def url(name: str, default: str) -> str:
        value = get(name, default) or default
        if not value.startswith(("http://", "https://")):
            raise PagingConfigError(f"{name} must be an http(s) URL")
        return value.rstrip("/")

    pagerduty = None
    token = get("PAGERDUTY_API_TOKEN")
    if token:
        from_email = get("PAGERDUTY_FROM_EMAIL")
        if not _EMAIL.match(from_email):
            raise PagingConfigError(
                "PAGERDUTY_FROM_EMAIL must be the email of a PagerDuty user (writes need it)"
            )
        pagerduty = PagerDutySettings(
            api_token=token,
            from_email=from_email,
            webhook_secret=get("PAGERDUTY_WEBHOOK_SECRET"),
            api_url=url("PAGERDUTY_API_URL", "https://api.pagerduty.com"),
        )
    statuspage = None
    key = get("STATUSPAGE_API_KEY")
    if key:
        page_id = get("STATUSPAGE_PAGE_ID")
        if not _SP_ID.match(page_id):
            raise PagingConfigError("STATUSPAGE_PAGE_ID must be the page's ID (like 0ypqjmkwgqmh)")
        statuspage = StatuspageSettings(
            api_key=key,
            page_id=page_id,
            api_url=url("STATUSPAGE_API_URL", "https://api.statuspage.io/v1"),
        )
    return PagingSettings(pagerduty, statuspage)


@dataclass(frozen=True)
class PagerDutyTarget:
    service_id: str
    escalation_policy_id: str


@dataclass(frozen=True)
class StatuspageTarget:
    component_id: str


def pagerduty_target(name: str, node: Node) -> PagerDutyTarget:
    """`pagerduty: {service_id, escalation_policy_id}` of one service in targets.yml."""
    unknown = sorted(str(k) for k in node if k not in ("service_id", "escalation_policy_id"))
    if unknown:
        raise node.error(f"`{name}.pagerduty`: unknown key `{unknown[0]}`")
    service_id = node.require("service_id")
    policy_id = node.require("escalation_policy_id")
    for what, value in (("service_id", service_id), ("escalation_policy_id", policy_id)):
        if not _PD_ID.match(value):
            raise node.error(f"`{name}.pagerduty.{what}` `{value}` is not a PagerDuty ID (P…)")
    return PagerDutyTarget(service_id, policy_id)


def statuspage_target(name: str, node: Node) -> StatuspageTarget:
    """`statuspage: {component_id}` of one service in targets.yml."""
    unknown = sorted(str(k) for k in node if k != "component_id")
    if unknown:
        raise node.error(f"`{name}.statuspage`: unknown key `{unknown[0]}`")
    component_id = node.require("component_id")
    if not _SP_ID.match(component_id):
        raise node.error(f"`{name}.statuspage.component_id` `{component_id}` is not a component ID")
    return StatuspageTarget(component_id)
