"""From words to typed, bounded arguments: what is accepted, and what each refusal says."""

from __future__ import annotations

import asyncio

import pytest

from bot.actions import ActionCatalog, Executors, load_catalog
from bot.actions.params import resolve, usage
from bot.errors import UserError
from runbooks import BUNDLED

NO_LOG_ARGS = {"tail": 100, "previous": False, "pod": None, "since": None, "grep": None}


@pytest.fixture(scope="module")
def catalog() -> ActionCatalog:
    return load_catalog(BUNDLED / "actions", BUNDLED / "targets.yml")


@pytest.mark.parametrize(
    ("kind", "action", "words", "args"),
    [
        ("diagnostic", "logs", (), {**NO_LOG_ARGS}),
        ("diagnostic", "logs", ("50", "previous"), {**NO_LOG_ARGS, "tail": 50, "previous": True}),
        (
            "diagnostic",
            "logs",
            ("pod=checkout-7d9f.x", "--previous"),
            {**NO_LOG_ARGS, "previous": True, "pod": "checkout-7d9f.x"},
        ),
        ("diagnostic", "logs", ("since=1h30m",), {**NO_LOG_ARGS, "since": "1h30m"}),
        ("diagnostic", "logs", ("since=24h",), {**NO_LOG_ARGS, "since": "24h"}),
        ("diagnostic", "logs", ("grep=conn reset",), {**NO_LOG_ARGS, "grep": "conn reset"}),
        # Slack escapes <, > and & in command text; the search is for what was typed.
        ("diagnostic", "logs", ("grep=a&lt;b&amp;c",), {**NO_LOG_ARGS, "grep": "a<b&c"}),
        ("diagnostic", "logs", ("grep=.*(x",), {**NO_LOG_ARGS, "grep": ".*(x"}),
        ("diagnostic", "health", ("READINESS",), {"which": "readiness"}),
        ("mitigation", "scale", ("20",), {"replicas": 20}),
        ("mitigation", "scale", ("replicas=0",), {"replicas": 0}),
        ("mitigation", "rollback", (), {"revision": None}),
        ("mitigation", "rollback", ("3",), {"revision": 3}),
        ("mitigation", "terminate-query", ("4242",), {"pid": 4242}),
    ],
)
def test_accepted(
    catalog: ActionCatalog, kind: str, action: str, words: tuple[str, ...], args: dict
) -> None:
    assert dict(resolve(catalog, kind, action, "checkout", words).args) == args


@pytest.mark.parametrize(
    ("kind", "action", "service", "words", "message"),
    [
        (
            "diagnostic",
            "zap",
            "checkout",
            (),
            "Unknown diagnostic `zap`. Available: pods, containers, logs",
        ),
        ("diagnostic", "pods", "nowhere", (), "Unknown service `nowhere`. Configured: checkout"),
        ("diagnostic", "restart", "checkout", (), "`restart` is a mitigation: use `/incident"),
        ("mitigation", "pods", "checkout", (), "`pods` is a diagnostic: use `/incident diag pods"),
        ("mitigation", "scale", "checkout", ("21",), "from 0 to 20 (20 is checkout's kubernetes"),
        ("mitigation", "scale", "checkout", ("-1",), "`replicas` must be from 0 to 20"),
        ("mitigation", "scale", "checkout", ("1e3",), "`replicas` must be a whole number"),
        ("mitigation", "scale", "checkout", ("0x10",), "`replicas` must be a whole number"),
        ("mitigation", "scale", "checkout", ("٣",), "`replicas` must be a whole number"),
        ("mitigation", "scale", "checkout", (), "`replicas` is missing"),
        ("mitigation", "scale", "checkout", ("6", "7"), "Unexpected argument `7`"),
        ("mitigation", "scale", "checkout", ("6", "replicas=7"), "`replicas` is given twice"),
        ("mitigation", "terminate-query", "checkout", ("1;DROP",), "`pid` must be a whole number"),
        ("mitigation", "terminate-query", "checkout", ("0",), "from 1 to 2147483647"),
        ("diagnostic", "logs", "checkout", ("pod=Checkout_1",), "`pod` must be an RFC 1123 name"),
        ("diagnostic", "logs", "checkout", ("pod=../../etc",), "`pod` must be an RFC 1123 name"),
        ("diagnostic", "logs", "checkout", ("pod=-x",), "`pod` must be an RFC 1123 name"),
        ("diagnostic", "logs", "checkout", ("pod=" + "a" * 254,), "must be an RFC 1123 name"),
        ("diagnostic", "logs", "checkout", ("tail=1001",), "`tail` must be from 1 to 1000"),
        ("diagnostic", "logs", "checkout", ("previous=maybe",), "`previous` is on or off"),
        (
            "diagnostic",
            "logs",
            "checkout",
            ("since=1y",),
            "`since` must be a duration from 1m to 24h",
        ),
        (
            "diagnostic",
            "logs",
            "checkout",
            ("since=forever",),
            "`since` must be a duration from 1m to 24h",
        ),
        (
            "diagnostic",
            "logs",
            "checkout",
            ("since=25h",),
            "`since` must be a duration from 1m to 24h",
        ),
        (
            "diagnostic",
            "logs",
            "checkout",
            ("since=30s",),
            "`since` must be a duration from 1m to 24h",
        ),
        (
            "diagnostic",
            "logs",
            "checkout",
            ("grep=" + "x" * 201,),
            "at most 200 characters; got 201",
        ),
        ("diagnostic", "logs", "checkout", ("grep=",), "`grep` is empty"),
        ("diagnostic", "logs", "checkout", ("since=1h",) * 2, "`since` is given twice"),
        ("diagnostic", "logs", "backend", ("grep=" + "x" * 10_000,), "at most 200 characters"),
        ("diagnostic", "logs", "backend", ("tail=100000",), "`tail` must be from 1 to 1000"),
        ("diagnostic", "errors", "backend", ("since=forever",), "`since` must be a duration"),
        ("diagnostic", "errors", "checkout", ("since=48h",), "from 1m to 24h"),
        ("diagnostic", "errors", "checkout", ("since=99999999999d",), "got `99999999999d`"),
        ("diagnostic", "health", "checkout", ("liveness",), "one of health, readiness"),
        ("diagnostic", "pods", "checkout", ("<!channel>",), "Unexpected argument `&lt;!channel"),
        ("diagnostic", "pods", "checkout", ("`x`",), "Unexpected argument `'x'`"),
    ],
)
def test_refused_with_a_specific_message_and_the_usage(
    catalog: ActionCatalog,
    kind: str,
    action: str,
    service: str,
    words: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(UserError) as caught:
        resolve(catalog, kind, action, service, words)
    text = str(caught.value)
    assert message in text
    if (
        action in catalog.actions
        and catalog.actions[action].kind == kind
        and service in (catalog.targets)
    ):
        assert "Usage: `/incident " in text
    assert "<!channel>" not in text


def test_usage_names_later_optional_values(catalog: ActionCatalog) -> None:
    text = usage(catalog.actions["logs"], catalog.targets["payments"])
    assert text.splitlines()[0] == (
        "Usage: `/incident diag logs <service> [<tail>] [previous] [pod=<pod>] [since=<since>]"
        " [grep=<grep>]`"
    )
    assert "`tail`: a whole number from 1 to 1000 (default 100)" in text
    scale = usage(catalog.actions["scale"], catalog.targets["payments"])
    assert "`replicas`: a whole number from 0 to 12" in scale  # payments' max_replicas


def test_a_service_without_the_section_is_refused(catalog: ActionCatalog, tmp_path) -> None:
    targets = tmp_path / "targets.yml"
    targets.write_text("services:\n  web:\n    http: {health: 'http://web/health'}\n")
    only_http = load_catalog(BUNDLED / "actions", targets)
    with pytest.raises(UserError, match="`pods` runs on kubernetes, and `web` has no kubernetes"):
        resolve(only_http, "diagnostic", "pods", "web", ())
    assert resolve(only_http, "diagnostic", "health", "web", ()).args == {"which": "health"}
    with pytest.raises(UserError, match="`logs` runs on kubernetes or docker, and `web` has no"):
        resolve(only_http, "diagnostic", "logs", "web", ())


@pytest.mark.parametrize(
    ("kind", "action", "service", "executor"),
    [
        ("diagnostic", "logs", "checkout", "kubernetes"),
        ("diagnostic", "logs", "backend", "docker"),
        ("diagnostic", "errors", "backend", "docker"),
        ("mitigation", "restart", "backend", "docker"),
        ("mitigation", "rollback", "checkout", "kubernetes"),
        ("mitigation", "rollback", "backend", "docker"),
    ],
)
def test_one_action_name_whatever_runs_the_service(
    catalog: ActionCatalog, kind: str, action: str, service: str, executor: str
) -> None:
    assert resolve(catalog, kind, action, service, ()).executor == executor


def test_errors_default_to_the_last_hour(catalog: ActionCatalog) -> None:
    assert resolve(catalog, "diagnostic", "errors", "backend", ()).args == {"since": "1h"}


class _Slow:
    async def scale(self, target: object, replicas: int, dry_run: bool) -> None:
        await asyncio.sleep(5)


async def test_a_slow_executor_is_cut_off_with_a_clear_result(catalog: ActionCatalog) -> None:
    slow = Executors(kubernetes=_Slow(), postgres=_Slow(), http=_Slow())  # type: ignore[arg-type]
    invocation = resolve(catalog, "mitigation", "scale", "checkout", ("3",))
    dry, failed = await slow.run(invocation, dry_run=True, timeout=0.05)
    assert failed and not dry.ok and dry.summary == "no answer within 0.05s; gave up waiting"
    real, failed = await slow.run(invocation, dry_run=False, timeout=0.05)
    assert failed and "it may still complete" in real.summary
