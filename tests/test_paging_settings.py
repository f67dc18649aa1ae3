"""PagerDuty and Statuspage settings, and the paging parts of the runbooks, are validated
at start-up with a message naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.actions import load_catalog
from bot.config import ConfigError, load_settings
from bot.yamlfile import RunbookError
from runbooks import BUNDLED

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


def test_paging_is_off_without_tokens_and_defaults_to_the_real_apis() -> None:
    assert load_settings(BASE).paging.pagerduty is None
    settings = load_settings(
        {
            **BASE,
            "PAGERDUTY_API_TOKEN": "tok",
            "PAGERDUTY_FROM_EMAIL": "ops@example.com",
            "STATUSPAGE_API_KEY": "key",
            "STATUSPAGE_PAGE_ID": "abc123def",
        }
    )
    assert settings.paging.pagerduty is not None
    assert settings.paging.pagerduty.api_url == "https://api.pagerduty.com"
    assert settings.paging.statuspage is not None
    assert settings.paging.statuspage.api_url == "https://api.statuspage.io/v1"
    assert "tok" not in repr(settings.paging) and "key" not in repr(settings.paging.statuspage)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PAGERDUTY_API_TOKEN": "t"}, "PAGERDUTY_FROM_EMAIL"),
        (
            {
                "PAGERDUTY_API_TOKEN": "t",
                "PAGERDUTY_FROM_EMAIL": "a@b.co",
                "PAGERDUTY_API_URL": "-",
            },
            "PAGERDUTY_API_URL",
        ),
        ({"STATUSPAGE_API_KEY": "k"}, "STATUSPAGE_PAGE_ID"),
    ],
)
def test_half_configured_integrations_stop_start_up(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**BASE, **env})


def test_bundled_targets_name_pagerduty_services_and_status_components() -> None:
    catalog = load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")
    checkout = catalog.targets["checkout"]
    assert checkout.pagerduty is not None and checkout.pagerduty.service_id == "PCHKOUT"
    assert checkout.statuspage is not None and checkout.statuspage.component_id == "cmpchk01"


def test_a_bad_pagerduty_id_in_targets_names_file_and_line(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yml"
    targets.write_text(
        "services:\n"
        "  checkout:\n"
        "    http: {health: 'http://x/health'}\n"
        "    pagerduty: {service_id: nope, escalation_policy_id: PEPCHK1}\n"
    )
    with pytest.raises(RunbookError, match="not a PagerDuty ID") as caught:
        load_catalog(BUNDLED / "actions", targets)
    assert "targets.yml:4" in str(caught.value)


def test_severities_say_which_levels_page(runbooks) -> None:  # type: ignore[no-untyped-def]
    levels = runbooks.severities.levels
    assert [level for level, s in sorted(levels.items()) if s.page] == ["P0", "P1"]
