"""A secret of every listed form, planted in random pod or container log lines, never
leaves Firebreak.

Through the real path: `/incident diag logs` with the real kubernetes client against
emulator/kubernetes.py, or the real docker SDK against emulator/docker.py, the output
posted in a thread and uploaded whole, then the post-mortem compiled from the channel.
Searched: the arguments of every Web API call the Slack emulator recorded, every
uploaded file, every log record, and the post-mortem in both formats. On SQLite and
Postgres.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.action_rig import (  # noqa: F401
    Rig,
    engine_fixture,
    health_fixture,
    kube_fixture,
    rig_fixture,
)
from tests.secret_forms import FILLER, FORMS, leaks, log_line, unplanted

# Where the log is planted, and the command that reads it.
SOURCES = {
    "kubernetes": ("checkout-b", "logs checkout 400 pod=checkout-b"),
    "docker": ("prod-backend-1", "logs backend 400 pod=prod-backend-1"),
}


@st.composite
def planted_log(draw: st.DrawFn) -> tuple[list[str], str]:
    """Every form once, among random lines, in a random order: (secrets, log text)."""
    planted = [draw(log_line(form), label=form) for form in FORMS]
    noise = draw(st.lists(FILLER, max_size=20))
    lines = draw(st.permutations([line for _, line in planted] + noise))
    secrets, text = [secret for secret, _ in planted], "\n".join(lines)
    assume(not any(leaks(secret, unplanted(secrets, text)) for secret in secrets))
    return secrets, text


@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(log=planted_log())
@pytest.mark.parametrize("source", sorted(SOURCES))
async def test_planted_secrets_never_leave_firebreak(
    rig: Rig, caplog: pytest.LogCaptureFixture, source: str, log: tuple[list[str], str]
) -> None:
    secrets, text = log
    caplog.set_level(logging.INFO)
    caplog.clear()
    workspace = rig.slack.workspace
    calls_before, files_before = len(workspace.call_log), set(workspace.files)
    name, command = SOURCES[source]
    if source == "kubernetes":
        rig.kube.set_log("shop", name, text)
    else:
        rig.engine.set_log(name, text)
    assert await rig.diag(command) == ""

    outputs = [(f"{c.method} call", json.dumps(c.args)) for c in workspace.call_log[calls_before:]]
    uploads = [f for key, f in workspace.files.items() if key not in files_before]
    outputs += [(f"file {f.name}", (f.data or b"").decode("utf-8", "replace")) for f in uploads]
    outputs += [("the log", caplog.text)]
    for fmt in ("md", "json"):
        rendered = await rig.slack.app.services.postmortems.render(rig.channel.name, fmt)
        outputs.append((f"the post-mortem ({fmt})", rendered))
    # The planting worked: the log reached Slack, masked.
    assert any("chat.postMessage" in where and "DB_PASS=***" in out for where, out in outputs)
    found = [
        f"{form} in {where}"
        for form, secret in zip(FORMS, secrets, strict=True)
        for where, out in outputs
        if leaks(secret, out)
    ]
    assert found == []
