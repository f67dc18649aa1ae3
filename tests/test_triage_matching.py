"""The guess at declare (bot/triage/matching.py): deterministic, explained, pure."""

from __future__ import annotations

import pytest

from bot.actions import load_catalog
from bot.runbooks import Runbooks
from bot.triage import ScenarioCatalog, guess, load_scenarios
from runbooks import BUNDLED

SERVICES = ["checkout", "payments"]


@pytest.fixture(scope="module")
def scenarios() -> ScenarioCatalog:
    from bot.runbooks import load_runbooks

    runbooks: Runbooks = load_runbooks(BUNDLED)
    catalog = load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")
    return load_scenarios(BUNDLED / "scenarios", catalog, runbooks.severities.phases)


@pytest.mark.parametrize(
    ("title", "scenario", "reasons"),
    [
        ("checkout returning 502s after deploy", "deployment-failure", ("502", "after deploy")),
        (
            "pods crashloopbackoff, OOMKilled",
            "application-crash",
            ("crashloopbackoff", "oomkilled"),
        ),
        ("too many connections on the db", "database", ("too many connections", "db")),
        ("search is slow, p95 latency 2s", "performance", ("slow", "p95", "latency")),
        ("leaked credentials in a public gist", "security", ("leaked credentials",)),
        ("Stripe webhooks failing", "external-dependency", ("stripe", "webhooks")),
        ("disk full on the primary", "resources-disk", ("disk full",)),
    ],
)
def test_each_scenario_is_found_from_its_symptom_words(
    scenarios: ScenarioCatalog, title: str, scenario: str, reasons: tuple[str, ...]
) -> None:
    found = guess(scenarios, SERVICES, title=title)
    assert (found.scenario, found.reasons) == (scenario, reasons)


def test_a_phrase_inside_a_longer_match_counts_once(scenarios: ScenarioCatalog) -> None:
    # "deploy" is inside "after deploy": reported once, scored by its two words.
    found = guess(scenarios, SERVICES, title="errors after deploy")
    assert found.reasons == ("after deploy",) and found.score == 2


def test_words_match_whole_words_only(scenarios: ScenarioCatalog) -> None:
    # "dbx" is not "db", "slowly" is not "slow", "5023" is not "502".
    found = guess(scenarios, SERVICES, title="dbx slowly 5023")
    assert found.scenario is None and found.reasons == () and found.score == 0


def test_the_highest_score_wins_and_a_tie_goes_to_the_first_file(
    scenarios: ScenarioCatalog,
) -> None:
    # 502 is a symptom of both; crash sorts before deployment.
    assert guess(scenarios, SERVICES, title="502s").scenario == "application-crash"
    assert guess(scenarios, SERVICES, title="502s after deploy").scenario == "deployment-failure"


def test_alert_labels_weigh_more_than_a_word(scenarios: ScenarioCatalog) -> None:
    found = guess(
        scenarios,
        SERVICES,
        title="checkout slow",
        labels={"alertname": "KubePodCrashLooping", "service": "checkout"},
    )
    assert found.scenario == "application-crash"
    assert found.reasons == ("alertname=KubePodCrashLooping",) and found.score == 3


def test_the_description_counts_too(scenarios: ScenarioCatalog) -> None:
    found = guess(scenarios, SERVICES, title="checkout", description="a migration is stuck")
    assert (found.scenario, found.reasons) == ("database", ("migration",))


def test_the_service_given_wins_over_one_named(scenarios: ScenarioCatalog) -> None:
    found = guess(scenarios, SERVICES, title="checkout slow", service="payments")
    assert (found.service, found.service_reason) == ("payments", "given")


def test_the_first_service_named_in_the_title_then_the_description(
    scenarios: ScenarioCatalog,
) -> None:
    found = guess(scenarios, SERVICES, title="payments then checkout slow")
    assert (found.service, found.service_reason) == ("payments", "named in the title")
    found = guess(scenarios, SERVICES, title="slow", description="checkout mostly")
    assert (found.service, found.service_reason) == ("checkout", "named in the description")


def test_an_unknown_service_is_not_guessed(scenarios: ScenarioCatalog) -> None:
    found = guess(scenarios, SERVICES, title="checkoutv2 slow", service="search")
    assert found.service is None and found.scenario == "performance"


def test_the_guess_is_the_same_every_time(scenarios: ScenarioCatalog) -> None:
    title = "checkout db slow after deploy, 503s"
    assert len({guess(scenarios, SERVICES, title=title) for _ in range(20)}) == 1
