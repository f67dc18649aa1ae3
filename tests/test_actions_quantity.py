"""Memory quantities in runbook actions: the grammar, the bounds (the action file's and the
service's `kubernetes.max_memory`), the stored form, and the bytes an executor gets; plus
the bundled `terminate-idle` duration and `describe` pod name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.actions import ActionCatalog, load_catalog
from bot.actions.params import resolve, usage
from bot.errors import UserError
from bot.quantities import format_memory, parse_memory
from bot.yamlfile import RunbookError
from runbooks import BUNDLED
from tests.test_actions_catalog import line_of, write

GI, MI = 2**30, 2**20


@pytest.fixture(scope="module")
def catalog() -> ActionCatalog:
    return load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")


@pytest.mark.parametrize(
    ("text", "amount", "canonical"),
    [
        ("512Mi", 512 * MI, "512Mi"),
        ("1024Mi", GI, "1Gi"),
        ("2Gi", 2 * GI, "2Gi"),
        ("1536Mi", 1536 * MI, "1536Mi"),
        ("2G", 2 * 10**9, "2G"),
        ("1500M", 1500 * 10**6, "1500M"),
    ],
)
def test_memory_quantities_read_and_write_back(text: str, amount: int, canonical: str) -> None:
    assert parse_memory(text) == amount
    assert format_memory(amount) == canonical
    assert parse_memory(canonical) == amount


@pytest.mark.parametrize("text", ["2Gb", "-1Mi", "1.5Gi", "512", "1e9", "Gi", "0Mi", "2 Gi", "2gi"])
def test_memory_quantities_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory quantity|more than zero"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("service", "words", "limit"),
    [
        ("checkout", ("2Gi",), "2Gi"),
        ("checkout", ("limit=4096Mi",), "4Gi"),  # checkout's max_memory, in its shortest form
        ("payments", ("1536Mi",), "1536Mi"),
    ],
)
def test_set_memory_accepted(
    catalog: ActionCatalog, service: str, words: tuple[str, ...], limit: str
) -> None:
    assert dict(resolve(catalog, "mitigation", "set-memory", service, words).args) == {
        "limit": limit
    }


@pytest.mark.parametrize(
    ("service", "words", "message"),
    [
        (
            "checkout",
            ("5Gi",),
            "`limit` must be from 64Mi to 4Gi (4Gi is checkout's kubernetes.max_",
        ),
        ("payments", ("3Gi",), "from 64Mi to 2Gi (2Gi is payments's kubernetes.max_memory)"),
        ("checkout", ("32Mi",), "`limit` must be from 64Mi to 4Gi"),
        ("checkout", ("2Gb",), "must be a memory size like 512Mi or 2Gi, from 64Mi to 4Gi"),
        ("checkout", ("-1Mi",), "got `-1Mi`"),
        ("checkout", ("1.5Gi",), "must be a memory size"),
        ("checkout", (), "`limit` is missing"),
        ("checkout", ("2Gi", "3Gi"), "Unexpected argument `3Gi`"),
    ],
)
def test_set_memory_refused(
    catalog: ActionCatalog, service: str, words: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UserError) as caught:
        resolve(catalog, "mitigation", "set-memory", service, words)
    assert message in str(caught.value)
    assert "Usage: `/incident mitigate set-memory <service> <limit>`" in str(caught.value)


def test_usage_shows_the_services_cap(catalog: ActionCatalog) -> None:
    action = catalog.actions["set-memory"]
    assert "a memory size from 64Mi to 2Gi" in usage(action, catalog.targets["payments"])
    assert "a memory size from 64Mi to 64Gi" in usage(action)


@pytest.mark.parametrize(
    ("words", "args"),
    [((), {"older_than": "10m"}), (("older_than=90m",), {"older_than": "1h30m"})],
)
def test_terminate_idle_takes_a_duration(
    catalog: ActionCatalog, words: tuple[str, ...], args: dict
) -> None:
    assert dict(resolve(catalog, "mitigation", "terminate-idle", "checkout", words).args) == args


@pytest.mark.parametrize("word", ["older_than=forever", "older_than=30s", "older_than=2d"])
def test_terminate_idle_refuses_a_bad_duration(catalog: ActionCatalog, word: str) -> None:
    with pytest.raises(UserError, match="`older_than` must be a duration from 1m to 24h"):
        resolve(catalog, "mitigation", "terminate-idle", "checkout", (word,))


def test_describe_takes_a_pod_name(catalog: ActionCatalog) -> None:
    invocation = resolve(catalog, "diagnostic", "describe", "checkout", ("checkout-7d9f",))
    assert dict(invocation.args) == {"pod": "checkout-7d9f"}
    with pytest.raises(UserError, match="must be an RFC 1123 name"):
        resolve(catalog, "diagnostic", "describe", "checkout", ("Bad_Pod",))


SET_MEMORY = """\
scenario: Test
actions:
  - name: set-memory
    kind: mitigation
    executor: kubernetes
    operation: set_memory
    help: Raise
    params:
      - {name: limit, type: quantity, min: 64Mi, max: 8Gi, required: true}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("min: 64Mi", "min: 64MB", "min of `limit`: `64MB` is not a memory quantity"),
        ("max: 8Gi", "max: 32Mi", "needs integer min <= max"),
        ("type: quantity", "type: int", "parameter `limit` must have type quantity"),
        ("required: true}", "default: 16Gi}", "default of `limit` must be from 64Mi to 8Gi"),
    ],
)
def test_quantity_mistakes_name_the_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    action = SET_MEMORY.replace(old, new, 1)
    folder, targets = write(tmp_path, action=action)
    with pytest.raises(RunbookError) as caught:
        load_catalog(folder, targets)
    assert caught.value.line == line_of(action, "name: limit")
    assert message in caught.value.message


def test_max_memory_must_be_a_quantity(tmp_path: Path) -> None:
    targets = """\
services:
  checkout:
    kubernetes: {namespace: shop, deployment: checkout, selector: app=checkout, max_memory: 2GB}
"""
    folder, path = write(tmp_path, action=SET_MEMORY, targets=targets)
    with pytest.raises(RunbookError, match="max_memory: `2GB` is not a memory quantity"):
        load_catalog(folder, path)
