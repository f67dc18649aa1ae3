"""Hostile requests through the real HTTP app: random text, broken and oversized payloads.

Slack signs what its clients send, but a client can send anything: a slash command's
text is free, and an interactivity payload comes back with whatever fields a stale or
tampered client put in it. So every request below is signed (it reaches our code) and
built from a real one, then damaged by hypothesis: fields removed, given the wrong
type, or made huge. The app must answer within Slack's 3 seconds with a 2xx or 4xx,
never a 5xx, never fall back to the generic "something went wrong" (an unexpected
exception), never create a channel for garbage and never run a mitigation.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.actions import Executors
from bot.actions.views import CANCEL_ACTION, CONFIRM_ACTION
from bot.executors import KubernetesExecutor, PostgresExecutor
from bot.incidents.reminders import POST_UPDATE_ACTION
from bot.messages import Button, Buttons, Card, Section
from emulator import AppResponse, payloads
from emulator.kubernetes import FakeKubernetes, deployment, pod, replicaset
from emulator.models import Channel
from handlers.http_check import HttpExecutor
from storage.models import Event, Incident, PendingAction
from tests.databases import fresh_database
from tests.harness import ALICE, BOB, Harness, running_firebreak
from tests.test_hostile_grammar import HOSTILE, commands_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

EVE = "U0EVE"
GENERIC_FAILURE = "Something went wrong on Firebreak's side"
HUGE = 60_000
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(HOSTILE)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
# Drawn as short names and made big when used, so hypothesis reports stay readable.
BIG = {
    "<x * HUGE>": "x" * HUGE,
    "<fire * HUGE/4>": "🔥" * (HUGE // 4),
    "<channel pings * 5000>": "<!channel> " * 5000,
    "<NUL * 100>": "\x00" * 100,
}
OVERSIZED = st.sampled_from(sorted(BIG))


def big(value: Any) -> Any:
    return BIG.get(value, value) if isinstance(value, str) else value


class Rig:
    """Not a dataclass: hypothesis would print all of it with every failing example."""

    def __init__(
        self,
        slack: Harness,
        kube: FakeKubernetes,
        channel: Channel,
        templates: dict[str, dict[str, Any]],  # real payloads to damage
    ) -> None:
        self.slack, self.kube, self.channel, self.templates = slack, kube, channel, templates

    def __repr__(self) -> str:
        return "Rig(…)"

    def real_patches(self) -> list[Any]:
        return [p for p in self.kube.patches if not p.dry_run]

    async def send(self, payload: Any) -> AppResponse:
        body = payload if isinstance(payload, str) else json.dumps(payload)
        response = await self.slack.driver.post(urlencode({"payload": body}))
        await self.slack.settle()
        return response

    def failures(self) -> list[str]:
        return [
            str(e.get("text"))
            for e in self.slack.workspace.ephemeral_messages
            if GENERIC_FAILURE in str(e.get("text"))
        ]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One incident with a pending mitigation, and a real payload of every kind we handle.

    Shared by the module: what one test sends must not have acted, so the next one starts
    from the same incident (the one test that acts comes last). Each example is checked
    against the rig as it found it (`nothing_runs`), so one that did act fails alone."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    async with FakeKubernetes() as kube:
        dep = deployment("checkout", replicas=3, image="checkout:2", revision=2)
        kube.add(dep, replicaset(dep, 1, "checkout:1"), replicaset(dep, 2, "checkout:2"))
        kube.add(pod("checkout-a", image="checkout:2"))
        targets = tmp_path / "targets.yml"
        targets.write_text(
            "services:\n  checkout:\n    kubernetes: {namespace: shop, deployment: checkout, "
            "selector: app=checkout, max_replicas: 8}\nmitigators: [U0BOB]\n"
        )
        executors = Executors(
            kubernetes=KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kube")), timeout=1),
            postgres=PostgresExecutor({}, timeout=1),
            http=HttpExecutor(timeout=1),
        )
        async with running_firebreak(
            f"sqlite:///{tmp_path / 'firebreak.db'}",
            executors=executors,
            FIREBREAK_TARGETS=str(targets),
        ) as slack:
            slack.workspace.add_user(EVE, "eve", real_name="Eve Example")
            await slack.command("declare P2 checkout errors")
            channel = slack.only_incident_channel()
            channel.members.extend([BOB, EVE])
            yield Rig(slack, kube, channel, await _templates(slack, channel))


async def _templates(slack: Harness, channel: Channel) -> dict[str, dict[str, Any]]:
    ws = slack.workspace
    checklist_ts = channel.pins[0]["ts"]
    await slack.command("mitigate scale checkout 5", channel=channel.id)
    proposal_ts = slack.workspace.messages(channel.id)[-1]["ts"]
    button = Button("Post update", POST_UPDATE_ACTION, "1")
    nudge_ts = await slack.app.services.chat.post(
        channel.id, Card.of(Section("update due"), Buttons((button,)))
    )
    templates = {
        "checklist": payloads.block_actions(
            ws, EVE, channel.id, checklist_ts, {"checkboxes"}, "checklist:0:0", selected=[]
        ),
        "confirm": payloads.block_actions(
            ws, EVE, channel.id, proposal_ts, {"button"}, CONFIRM_ACTION
        ),
        "cancel": payloads.block_actions(
            ws, EVE, channel.id, proposal_ts, {"button"}, CANCEL_ACTION
        ),
        "post_update": payloads.block_actions(
            ws, EVE, channel.id, nudge_ts, {"button"}, POST_UPDATE_ACTION
        ),
    }
    await slack.driver.click_button(EVE, channel.id, nudge_ts, POST_UPDATE_ACTION)
    await slack.settle()
    [update_view] = ws.open_views(EVE)
    templates["update_form"] = payloads.view_submission(
        ws, EVE, update_view["id"], {"status": "identified", "update": "all good"}
    )
    await slack.command("declare", user=EVE, channel=channel.id)
    declare_view = next(v for v in ws.open_views(EVE) if v["callback_id"] == "declare_incident")
    declare = payloads.view_submission(
        ws, EVE, declare_view["id"], {"title": "x", "severity": "P1"}
    )
    templates["declare_form"] = declare
    await slack.command("close", user=EVE, channel=channel.id)
    resolution = next(
        v for v in ws.open_views(EVE) if v["callback_id"] == "postmortem_resolve_close"
    )
    templates["resolution_form"] = payloads.view_submission(
        ws, EVE, resolution["id"], {"summary": "rolled back"}
    )
    return templates


# -- damaging payloads --------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def paths(value: Any, prefix: Path_ = (), depth: int = 0) -> Iterator[Path_]:
    """Every key path into a JSON value, down to 8 levels."""
    if depth > 8:
        return
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key), depth + 1)


# What our listeners read of a block_actions payload, as opposed to the envelope Bolt
# itself routes on (type, actions[0].action_id, user, team…).
LISTENER_FIELDS: tuple[Path_, ...] = (
    ("user", "id"),
    ("channel", "id"),
    ("trigger_id",),
    ("response_url",),
    ("message",),
    ("state",),
    ("container",),
    ("actions", 0, "value"),
    ("actions", 0, "block_id"),
    ("actions", 0, "action_ts"),
    ("actions", 0, "selected_options"),
)


def damage(
    payload: dict[str, Any],
    ops: list[tuple[int, str, Any]],
    within: tuple[Path_, ...] | None = None,
) -> dict[str, Any]:
    """Apply (path index, delete|replace, value) operations to a copy of `payload`,
    anywhere or only at and below the paths in `within`."""
    damaged = copy.deepcopy(payload)
    for index, op, value in ops:
        candidates = [
            p
            for p in paths(damaged)
            if within is None or any(p[: len(prefix)] == prefix for prefix in within)
        ]
        if not candidates:
            break
        *parents, last = candidates[index % len(candidates)]
        node: Any = damaged
        for key in parents:
            node = node[key]
        if op == "delete":
            del node[last]
        else:
            node[last] = big(value)
    return damaged


ops = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10_000),
        st.sampled_from(["delete", "replace"]),
        st.one_of(JSON, OVERSIZED),
    ),
    min_size=1,
    max_size=4,
)
# The declare and resolution forms get a broken title or summary on top, so a damaged
# copy never amounts to a valid request (which would rightly declare or close).
BROKEN_INPUT = st.one_of(
    st.just(None), st.just("   "), JSON.filter(lambda v: not isinstance(v, str)), OVERSIZED
)


def break_form(payload: dict[str, Any], block: str, value: Any) -> dict[str, Any]:
    values = payload["view"]["state"]["values"]
    if value is None:
        del values[block]
    else:
        values[block][block]["value"] = big(value)
    return payload


# HYPOTHESIS_EXAMPLES=500 runs a longer search locally; CI keeps the default.
HYPOTHESIS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_answered(response: AppResponse) -> None:
    assert response.status < 500, f"{response.status}: {response.body!r}"
    assert response.acked_in_time, f"answered after {response.elapsed:.1f}s"


@dataclass(frozen=True)
class Baseline:
    """What the rig holds before an example: the example is checked against this, not
    against the rig as set up, so an example that does act fails alone instead of
    failing every example after it."""

    channels: frozenset[str]
    patches: int
    failures: int
    actions: dict[int, str]  # pending action id → status


async def baseline(rig: Rig) -> Baseline:
    def actions(session):  # type: ignore[no-untyped-def]
        return {p.id: p.status for p in session.scalars(select(PendingAction))}

    return Baseline(
        frozenset(c.id for c in rig.slack.incident_channels()),
        len(rig.real_patches()),
        len(rig.failures()),
        await rig.slack.app.services.db.run(actions),
    )


@asynccontextmanager
async def nothing_runs(rig: Rig, caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Around one example: no unexpected exception (logged at ERROR, or the generic
    reply), no new channel, no mitigation run or decided."""
    await rig.slack.settle()
    caplog.clear()
    before = await baseline(rig)
    yield
    after = await baseline(rig)
    assert rig.failures()[before.failures :] == []
    assert after.channels == before.channels, "a channel was created for garbage"
    assert rig.real_patches()[before.patches :] == [], "a mitigation ran"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert after.actions == before.actions, "a pending mitigation was decided"


# -- tests --------------------------------------------------------------------------------


@HYPOTHESIS
@given(
    text=commands_text.filter(lambda t: not t.lower().startswith(("declare", "close", "resolve")))
)
async def test_random_command_text_is_answered(
    rig: Rig, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """Anywhere and in the incident channel; `declare`, `close` and `resolve` are left out
    because a well-formed one among the examples would rightly act."""
    async with nothing_runs(rig, caplog):
        for channel in (rig.slack.general, rig.channel.id):
            for user in (ALICE, EVE):
                response = await rig.slack.driver.slash_command(user, channel, text)
                await rig.slack.settle()
                assert_answered(response)


BLOCK_ACTIONS = st.sampled_from(["checklist", "confirm", "cancel", "post_update"])


@HYPOTHESIS
@given(kind=BLOCK_ACTIONS, ops=ops)
async def test_damaged_block_actions(
    rig: Rig, caplog: pytest.LogCaptureFixture, kind: str, ops: list[tuple[int, str, Any]]
) -> None:
    """The fields our listeners read, removed, retyped or made huge."""
    async with nothing_runs(rig, caplog):
        assert_answered(await rig.send(damage(rig.templates[kind], ops, LISTENER_FIELDS)))


@HYPOTHESIS
@given(kind=BLOCK_ACTIONS, ops=ops)
async def test_damaged_block_actions_anywhere(
    rig: Rig, caplog: pytest.LogCaptureFixture, kind: str, ops: list[tuple[int, str, Any]]
) -> None:
    async with nothing_runs(rig, caplog):
        assert_answered(await rig.send(damage(rig.templates[kind], ops)))


VIEWS = st.sampled_from(["declare_form", "resolution_form", "update_form"])
VIEW_FIELDS: tuple[Path_, ...] = (
    ("user", "id"),
    ("trigger_id",),
    ("view", "id"),
    ("view", "state"),
    ("view", "private_metadata"),
)


async def submit_damaged(
    rig: Rig,
    kind: str,
    ops: list[tuple[int, str, Any]],
    broken: Any,
    within: tuple[Path_, ...] | None,
) -> None:
    payload = copy.deepcopy(rig.templates[kind])
    if kind == "declare_form":
        payload = break_form(payload, "title", broken)
    elif kind == "resolution_form":
        payload = break_form(payload, "summary", broken)
    response = await rig.send(damage(payload, ops, within))
    assert_answered(response)
    if isinstance(response.body, dict) and response.body.get("response_action") == "errors":
        assert response.body.get("errors"), response.body


@HYPOTHESIS
@given(kind=VIEWS, ops=ops, broken=BROKEN_INPUT)
async def test_damaged_view_submissions(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    ops: list[tuple[int, str, Any]],
    broken: Any,
) -> None:
    """The fields our listeners read, removed, retyped or made huge."""
    async with nothing_runs(rig, caplog):
        await submit_damaged(rig, kind, ops, broken, VIEW_FIELDS)


@HYPOTHESIS
@given(kind=VIEWS, ops=ops, broken=BROKEN_INPUT)
async def test_damaged_view_submissions_anywhere(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    ops: list[tuple[int, str, Any]],
    broken: Any,
) -> None:
    async with nothing_runs(rig, caplog):
        await submit_damaged(rig, kind, ops, broken, None)


RAW_BODIES = [
    "not json",
    "",
    "null",
    "[]",
    '"block_actions"',
    "{}",
    '{"type": "block_actions"}',
    '{"type": "block_actions", "actions": null}',
    '{"type": "block_actions", "actions": [{}]}',
    '{"type": "block_actions", "actions": [{"action_id": "runbook_mitigation_confirm"}]}',
    '{"type": "block_actions", "actions": [{"action_id": "checklist:0:0"}]}',
    '{"type": "block_actions", "actions": [{"action_id": "nudge:post_update"}]}',
    '{"type": "view_submission"}',
    '{"type": "view_submission", "view": {"callback_id": "declare_incident"}}',
    '{"type": "view_submission", "view": {"callback_id": "post_update", "state": []}}',
    '{"type": "view_submission", "user": {"id": "U0EVE"}, "view": {"type": "modal", '
    '"callback_id": "declare_incident", "state": {"values": []}}}',
    '{"type": "view_submission", "user": {"id": "U0EVE"}, "view": {"type": "modal", '
    '"callback_id": "post_update", "state": {"values": {"update": "x"}}}}',
    '{"type": "shortcut", "callback_id": "x"}',
    '{"type": "message_action"}',
    '{"type": "block_suggestion"}',
    '{"type": "view_closed", "view": {}}',
    '{"type": 7}',
    "{" * 5000 + "}" * 5000,
    '{"type": "block_actions", "user": "U0EVE", "actions": [{"action_id": "checklist:0:0"}]}',
    '{"type": "block_actions", "user": {"id": "U0EVE"}, "channel": ["C1"], '
    '"actions": [{"action_id": "nudge:post_update"}]}',
    '{"type": "view_submission", "user": {"id": "U0EVE"}, "view": "declare_incident"}',
    '{"type": "view_submission", "user": {"id": "U0EVE"}, "view": {"type": "modal", '
    '"callback_id": "postmortem_resolve_close", "id": "V1", "state": {"values": {}}}}',
    '{"type": "view_submission", "view": {"type": "modal", '
    '"callback_id": "postmortem_resolve_close", "id": "V1", "state": {"values": {"summary": '
    '{"summary": {"type": "plain_text_input", "value": "fixed"}}}}}}',
]


@pytest.mark.parametrize("body", RAW_BODIES, ids=[f"body{i}" for i in range(len(RAW_BODIES))])
async def test_malformed_payloads(rig: Rig, caplog: pytest.LogCaptureFixture, body: str) -> None:
    async with nothing_runs(rig, caplog):
        assert_answered(await rig.send(body))


# Every payload type Bolt routes (slack_bolt/request/payload_utils.py), sent with its
# object fields null or missing: Bolt's matchers and unhandled-request logger index them.
PAYLOAD_TYPES = [
    "block_actions",
    "block_suggestion",
    "dialog_cancellation",
    "dialog_submission",
    "dialog_suggestion",
    "event_callback",
    "interactive_message",
    "message_action",
    "shortcut",
    "view_closed",
    "view_submission",
    "workflow_step_edit",
    "app_rate_limited",
    "url_verification",
]
NULLED = ("view", "user", "channel", "team", "message", "container", "event", "workflow_step")
ENVELOPES = [
    {},
    {"view": None},
    {"callback_id": "unknown"},
    {"callback_id": "unknown", "view": None},
    {"callback_id": "unknown", "action_id": "unknown", **dict.fromkeys(NULLED)},
    {"callback_id": "unknown", "actions": [{"action_id": "unknown"}], "view": None},
    {"callback_id": "unknown", "actions": [None], "trigger_id": "1.2.x"},
    {"view": {"type": "workflow_step", "callback_id": "unknown", "state": {"values": {}}}},
    {"event": {"type": "app_mention", "user": None}, "user": None},
]


@pytest.mark.parametrize("kind", PAYLOAD_TYPES)
async def test_every_payload_type_with_null_or_missing_objects(
    rig: Rig, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Never a 5xx: a payload Bolt cannot route gets a 4xx, one it routes a 200."""
    async with nothing_runs(rig, caplog):
        for envelope in ENVELOPES:
            response = await rig.send({"type": kind, **envelope})
            assert response.status < 500, (envelope, response.status, response.body)
            assert response.acked_in_time


SLASH_FORMS = [
    {},
    {"command": "/incident"},
    {"command": "/incident", "text": "list"},
    {"command": "/incident", "text": "list", "user_id": ALICE},
    {"command": "/incident", "text": "update hi", "user_id": ALICE, "channel_id": "C404"},
    {"command": "/incident", "text": "note hi", "user_id": "", "channel_id": ""},
    {"command": "/incident", "text": "x" * HUGE, "user_id": ALICE, "channel_id": "C00000001"},
    {"command": "/other", "text": "declare P1 x", "user_id": ALICE, "channel_id": "C00000001"},
]


@pytest.mark.parametrize("form", SLASH_FORMS, ids=range(len(SLASH_FORMS)))
async def test_slash_commands_with_missing_fields(
    rig: Rig, caplog: pytest.LogCaptureFixture, form: dict[str, str]
) -> None:
    async with nothing_runs(rig, caplog):
        response = await rig.slack.driver.post(urlencode(form))
        await rig.slack.settle()
        assert_answered(response)


@pytest.mark.parametrize("field", ["user", "channel"])
async def test_a_mitigation_click_without_user_or_channel(
    rig: Rig, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    async with nothing_runs(rig, caplog):
        payload = copy.deepcopy(rig.templates["confirm"])
        del payload[field]["id"]
        assert_answered(await rig.send(payload))


# -- on Postgres: text it refuses -----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def postgres_slack(tmp_path: Path) -> AsyncIterator[Harness]:
    with fresh_database("postgres", tmp_path) as url:
        async with running_firebreak(url) as harness:
            yield harness


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "\x01\x02\x7f"])
async def test_control_characters_are_not_a_database_error(
    postgres_slack: Harness, bad: str
) -> None:
    """Postgres refuses NUL in text; a title or update carrying one must still work."""
    slack = postgres_slack
    await slack.command(f"declare P2 search{bad} down")
    channel = slack.only_incident_channel()
    for text in (
        f"update a{bad}b",
        f"note {bad}x",
        f"action fix{bad} it category=response due=7d",
        f"resolve ok{bad}",
    ):
        await slack.command(text, channel=channel.id)
    replies = slack.ephemeral_texts(ALICE)
    assert not [r for r in replies if GENERIC_FAILURE in r], replies

    def stored(session):  # type: ignore[no-untyped-def]
        incident = session.scalars(select(Incident)).one()
        texts = [str(e.payload) for e in session.scalars(select(Event))]
        return incident.title, texts

    title, texts = await slack.app.services.db.run(stored)
    printable = "".join(ch for ch in bad if ch.isprintable())
    assert title == f"search{printable} down"
    assert all("\x00" not in t for t in texts)
    assert any(f"a{printable}b" in t for t in texts)


async def test_an_oversized_update_form_is_refused_in_the_form(rig: Rig) -> None:
    """The update modal caps its input, but a client may not: the form says what is wrong
    instead of posting a message Slack will reject forever."""
    payload = copy.deepcopy(rig.templates["update_form"])
    payload["view"]["state"]["values"]["update"]["update"]["value"] = "y" * 40_000
    response = await rig.send(payload)
    assert response.status == 200 and response.body["response_action"] == "errors"
    assert "update" in response.body["errors"]


async def test_a_commander_that_is_not_a_user_is_refused_in_the_form(rig: Rig) -> None:
    payload = copy.deepcopy(rig.templates["declare_form"])
    values = payload["view"]["state"]["values"]
    values["title"]["title"]["value"] = "db slow"
    values["commander"] = {"commander": {"type": "users_select", "selected_user": "x" * 5000}}
    before = len(rig.slack.incident_channels())
    response = await rig.send(payload)
    assert response.status == 200 and response.body["response_action"] == "errors"
    assert "commander" in response.body["errors"]
    assert len(rig.slack.incident_channels()) == before


async def test_the_app_still_works_after_the_garbage(rig: Rig) -> None:
    """A sanity check on the rig: the templates are real requests that do act. (Last in
    the module: it changes the shared incident.)"""
    before = await baseline(rig)
    confirm = copy.deepcopy(rig.templates["confirm"])
    confirm["user"]["id"] = BOB
    assert_answered(await rig.send(confirm))
    assert len(rig.real_patches()) == before.patches + 1
    declare = rig.templates["declare_form"]
    assert_answered(await rig.send(declare))
    assert len(rig.slack.incident_channels()) == len(before.channels) + 1
