"""Loading runbook actions and targets: the bundled files load, every mistake names file:line."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bot.actions.catalog import OPERATIONS, load_catalog
from bot.executors import DockerExecutor, KubernetesExecutor, PostgresExecutor
from bot.yamlfile import RunbookError
from handlers.http_check import HttpExecutor
from runbooks import BUNDLED

ACTION = """\
scenario: Test
actions:
  - name: pods
    kind: diagnostic
    executor: kubernetes
    operation: pods
    help: List pods
  - name: scale
    kind: mitigation
    executor: kubernetes
    operation: scale
    help: Scale
    params:
      - {name: replicas, type: int, min: 0, max: 50, required: true}
"""

TARGETS = """\
services:
  checkout:
    kubernetes:
      namespace: shop
      deployment: checkout
      selector: app=checkout
      max_replicas: 20
    postgres: {url_env: CHECKOUT_DATABASE_URL}
    http:
      health: "http://checkout.shop.svc/health"
mitigators: [U0123ABCD, S0456EFGH]
require_distinct_confirmer: [P0]
"""


def write(tmp_path: Path, action: str = ACTION, targets: str = TARGETS) -> tuple[Path, Path]:
    folder = tmp_path / "actions"
    folder.mkdir(exist_ok=True)
    (folder / "a.yml").write_text(action)
    (tmp_path / "targets.yml").write_text(targets)
    return folder, tmp_path / "targets.yml"


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_bundled_runbooks_load() -> None:
    catalog = load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")
    diagnostics = {a.name for a in catalog.of_kind("diagnostic")}
    mitigations = {a.name for a in catalog.of_kind("mitigation")}
    assert {"pods", "logs", "db-activity", "health", "events"} <= diagnostics
    assert mitigations == {
        "restart",
        "rollback",
        "scale",
        "terminate-query",
        "isolate",
        "unisolate",
        "flush-cache",
        "set-memory",
        "terminate-idle",
    }
    checkout = catalog.targets["checkout"]
    assert checkout.kubernetes and checkout.kubernetes.namespace == "shop"
    assert checkout.max_replicas == 20 and checkout.max_memory == 4 * 2**30 and checkout.postgres
    assert catalog.mitigator_users == {"U0123ABCD"} and catalog.mitigator_groups == ("S0456EFGH",)
    assert catalog.require_distinct_confirmer == {"P0"}
    assert catalog.security_responders == ("S0789SECR",)
    assert catalog.commander_only("isolate") and not catalog.commander_only("restart")


@pytest.mark.parametrize(
    ("executor", "cls"),
    [
        ("kubernetes", KubernetesExecutor),
        ("docker", DockerExecutor),
        ("postgres", PostgresExecutor),
        ("http", HttpExecutor),
    ],
)
def test_the_allow_list_matches_the_executor_methods(executor: str, cls: type) -> None:
    """A renamed executor parameter must fail here, not in a channel during an incident."""
    for name, operation in OPERATIONS[executor].items():
        signature = inspect.signature(getattr(cls, name))
        takes = set(signature.parameters) - {"self"}
        assert set(operation.params) <= takes, name
        assert ("dry_run" in takes) == (operation.kind == "mitigation"), name
        needed = {
            p.name
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty and p.name not in ("self", "target", "dry_run")
        }
        assert needed <= set(operation.params), name


# (replace this, with this, expected line, message): lines 3 and 8 start the two
# actions, line 14 is the `replicas` parameter.
ACTION_MISTAKES = [
    (
        "executor: kubernetes\n    operation: pods",
        "executor: nomad\n    operation: pods",
        3,
        "unknown executor `nomad`",
    ),
    (
        "executor: kubernetes\n    operation: pods",
        "executor: [kubernetes, docker]\n    operation: pods",
        3,
        "docker has no operation `pods` (containers, logs",
    ),
    (
        "executor: kubernetes\n    operation: pods",
        "executor: []\n    operation: pods",
        3,
        "executor must name at least one of",
    ),
    (
        "executor: kubernetes\n    operation: pods",
        "executor: [kubernetes, kubernetes]\n    operation: pods",
        3,
        "an executor is listed twice",
    ),
    (
        "executor: kubernetes\n    operation: pods",
        "executor: [kubernetes, {a: b}]\n    operation: pods",
        3,
        "unknown executor `{'a': 'b'}`",
    ),
    (
        "executor: kubernetes\n    operation: scale",
        "executor: [kubernetes, docker]\n    operation: scale",
        8,
        "docker has no operation `scale`",
    ),
    ("operation: pods", "operation: exec", 3, "kubernetes has no operation `exec`"),
    ("kind: diagnostic", "kind: repair", 3, "kind must be diagnostic or mitigation"),
    ("kind: mitigation", "kind: diagnostic", 8, "kubernetes scale is a mitigation"),
    ("help: List pods", "help: List pods\n    run: rm -rf /", 3, "unknown key `run`"),
    ("name: pods", "name: Pods!", 3, "must be lowercase letters"),
    ("name: scale", "name: pods", 8, "duplicate action `pods` (also at "),
    ("min: 0, max: 50", "min: 0", 14, "needs integer min <= max"),
    ("min: 0, max: 50", "min: 9, max: 5", 14, "needs integer min <= max"),
    ("type: int", "type: name", 14, "parameter `replicas` must have type int"),
    ("type: int", "type: float", 14, "parameter type `float` must be one of"),
    ("name: replicas,", "name: count,", 14, "takes no parameter `count`"),
    ("required: true}", "required: true, shell: yes}", 14, "unknown key `shell`"),
    ("required: true}", "default: 99}", 14, "default of `replicas` must be from 0 to 50"),
    ("required: true}", "required: false}", 8, "`replicas` must be declared required"),
    ("help: List pods", "help: [unclosed", 8, "expected ',' or ']'"),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), ACTION_MISTAKES)
def test_action_mistakes_name_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in ACTION
    folder, targets = write(tmp_path, action=ACTION.replace(old, new, 1))
    with pytest.raises(RunbookError) as caught:
        load_catalog(folder, targets)
    assert (caught.value.path, caught.value.line) == (str(folder / "a.yml"), line)
    assert message in caught.value.message


# Lines: 3 starts checkout, 4 its kubernetes section, 8 postgres, 10 http, 11 mitigators.
TARGET_MISTAKES = [
    (
        "    postgres:",
        "    nomad: {job: x}\n    postgres:",
        3,
        "unknown executor section `nomad`",
    ),
    (
        "    postgres:",
        "    docker: {host_env: DOCKER_HOST, compose_project: shop, service: app, image: x}\n"
        "    postgres:",
        8,
        "unknown key `image`",
    ),
    (
        "    postgres:",
        "    docker: {host_env: unix:///var/run/docker.sock, compose_project: shop, service: a}\n"
        "    postgres:",
        8,
        "host_env must be the NAME of an environment variable, like CHECKOUT_DOCKER_HOST "
        "(never the URL itself)",
    ),
    (
        "    postgres:",
        "    docker: {host_env: DOCKER_HOST, compose_project: Shop, service: a}\n    postgres:",
        8,
        "compose_project `Shop` must be a Compose name",
    ),
    (
        "    postgres:",
        "    docker: {host_env: DOCKER_HOST, compose_project: shop}\n    postgres:",
        8,
        "missing `service`",
    ),
    ("  checkout:", "  Checkout:", 3, "must be an RFC 1123 label"),
    ("      namespace: shop\n", "", 4, "missing `namespace`"),
    ("namespace: shop", "namespace: Shop_1", 4, "namespace `Shop_1` is not an RFC 1123 label"),
    ("deployment: checkout", "deployment: checkout;rm", 4, "is not an RFC 1123 name"),
    ("selector: app=checkout", "selector: app=checkout;id", 4, "must be key=value"),
    ("max_replicas: 20", "max_replicas: -1", 4, "max_replicas must be a whole number"),
    (
        "url_env: CHECKOUT_DATABASE_URL",
        "url_env: postgres://app:s3cret@db/app",
        8,
        "url_env must be the NAME of an environment variable",
    ),
    ('"http://checkout.shop.svc/health"', '"file:///etc/passwd"', 10, "must be an http(s) URL"),
    ('"http://checkout.shop.svc/health"', '"http://u:s3cret@c/health"', 10, "credentials"),
    ("U0123ABCD", "bob", 11, "mitigator `bob` is not a Slack user (U…) or user-group (S…) ID"),
    ("S0456EFGH", "oncall-team", 11, "mitigator `oncall-team` is not a Slack user"),
    ("[P0]", "[SEV1]", 12, "`SEV1` is not a severity level"),
    ("mitigators:", "approvers: [U1]\nmitigators:", 1, "unknown key `approvers`"),
    (
        "mitigators:",
        "security_responders: [S0SEC, secteam]\nmitigators:",
        11,
        "security responder `secteam` is not a Slack user (U…) or user-group (S…) ID",
    ),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), TARGET_MISTAKES)
def test_target_mistakes_name_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in TARGETS
    folder, targets = write(tmp_path, targets=TARGETS.replace(old, new, 1))
    with pytest.raises(RunbookError) as caught:
        load_catalog(folder, targets)
    assert (caught.value.path, caught.value.line) == (str(targets), line)
    assert message in caught.value.message
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("service", "section", "example"),
    [
        ("payments-api", "postgres: {url_env: VALUE}", "PAYMENTS_API_DATABASE_URL"),
        ("payments-api", "redis: {url_env: VALUE}", "PAYMENTS_API_REDIS_URL"),
        ("9lives", "redis: {url_env: VALUE}", "_9LIVES_REDIS_URL"),
        ("payments-api", "prometheus: {url_env: VALUE}", "PROMETHEUS_URL"),
        (
            "payments-api",
            "docker: {host_env: VALUE, compose_project: shop, service: a}",
            "PAYMENTS_API_DOCKER_HOST",
        ),
    ],
)
def test_a_url_in_place_of_a_variable_name_is_shown_one_for_that_service(
    tmp_path: Path, service: str, section: str, example: str
) -> None:
    """The example fits the service and its section, and is itself accepted."""

    def load(value: str) -> None:
        extra = f"  {service}:\n    {section.replace('VALUE', value)}\nmitigators:"
        folder, targets = write(tmp_path, targets=TARGETS.replace("mitigators:", extra, 1))
        load_catalog(folder, targets)

    with pytest.raises(RunbookError) as caught:
        load("'redis://:s3cret@cache:6379/0'")
    key = section.partition("{")[2].partition(":")[0]
    assert caught.value.message == (
        f"`{service}`: {key} must be the NAME of an environment variable, like {example} "
        "(never the URL itself)"
    )
    load(example)


def test_a_missing_targets_file_is_named(tmp_path: Path) -> None:
    folder, _ = write(tmp_path)
    with pytest.raises(RunbookError, match="targets file not found"):
        load_catalog(folder, tmp_path / "nowhere.yml")


LOGS_ACTION = """\
scenario: Test
actions:
  - name: logs
    kind: diagnostic
    executor: kubernetes
    operation: logs
    help: Logs
    params:
      - {name: tail, type: int, min: 1, max: 100, default: 10}
      - {name: since, type: duration, min: 1m, max: 24h, default: 1h}
      - {name: grep, type: text, max: 200}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("min: 1m", "min: 1 minute", "min of `since`: `1 minute` is not a duration"),
        ("max: 24h", "max: 0s", "max of `since`: `0s` must be longer than zero"),
        ("max: 24h", "max: 30s", "needs integer min <= max"),
        ("default: 1h", "default: 2d", "default of `since` must be from 1m to 24h"),
        ("type: text, max: 200", "type: text", "needs a max length from 1 to 200"),
        ("type: text, max: 200", "type: text, max: 5000", "needs a max length from 1 to 200"),
        ("type: text, max: 200", "type: text, max: 9, min: 1", "takes a max length, no min"),
        ("type: text, max: 200", "type: text, max: 9, default: x", "can't have a default"),
    ],
)
def test_duration_and_text_mistakes_name_the_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in LOGS_ACTION
    action = LOGS_ACTION.replace(old, new, 1)
    folder, targets = write(tmp_path, action=action)
    with pytest.raises(RunbookError) as caught:
        load_catalog(folder, targets)
    assert caught.value.line == line_of(action, new.split(",")[0])
    assert message in caught.value.message


def test_a_duration_default_is_kept_as_typed(tmp_path: Path) -> None:
    folder, targets = write(tmp_path, action=LOGS_ACTION.replace("default: 1h", "default: 90m"))
    since = load_catalog(folder, targets).actions["logs"].params[1]
    assert (since.min, since.max, since.default) == (60, 86400, "1h30m")


MULTI = """\
scenario: Test
actions:
  - name: logs
    kind: diagnostic
    executor: [docker, kubernetes]
    operation: logs
    help: Logs
    params:
      - {name: tail, type: int, min: 1, max: 100, default: 10}
"""


def test_an_action_runs_on_the_first_executor_a_service_has(tmp_path: Path) -> None:
    targets = TARGETS.replace(
        "mitigators:",
        "  shop:\n    docker: {host_env: SHOP_DOCKER_HOST, compose_project: shop, service: app}\n"
        "mitigators:",
    )
    catalog = load_catalog(*write(tmp_path, action=MULTI, targets=targets))
    logs = catalog.actions["logs"]
    assert logs.executors == ("docker", "kubernetes")
    assert logs.executor_for(catalog.targets["checkout"]) == "kubernetes"
    assert logs.executor_for(catalog.targets["shop"]) == "docker"
    docker = catalog.targets["shop"].docker
    assert docker and (docker.host_env, docker.compose_project, docker.service) == (
        "SHOP_DOCKER_HOST",
        "shop",
        "app",
    )
