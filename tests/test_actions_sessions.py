"""`terminate-idle` end to end: the Bolt app and the Slack emulator (tests/action_rig.py),
with checkout's database a scratch database on the real Postgres holding real
idle-in-transaction sessions. The pinned pids go through the proposal's stored row and
come back at the click; only they are terminated."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest

from runbooks import BUNDLED
from tests.action_rig import Rig, engine_fixture, health_fixture, kube_fixture, rig_fixture  # noqa: F401
from tests.harness import BOB
from tests.test_executor_postgres import postgres  # noqa: F401 (a fixture)
from tests.test_executor_postgres_sessions import idle_in_transaction, scratch_fixture  # noqa: F401

ONE_MINUTE = "{name: older_than, type: duration, min: 1m,"


@pytest.fixture(name="checkout_db_url")
def checkout_db_url_fixture(scratch: str) -> str:
    return scratch


@pytest.fixture(name="rig_settings")
def rig_settings_fixture(tmp_path: Path) -> dict[str, str]:
    """The bundled runbooks, but `older_than` may be as short as a second: a test can't
    keep a session idle for the minute the bundled action requires."""
    folder = tmp_path / "runbooks"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    database = folder / "actions" / "database.yml"
    text = database.read_text()
    assert ONE_MINUTE in text
    database.write_text(text.replace(ONE_MINUTE, ONE_MINUTE.replace("1m", "1s")))
    return {"FIREBREAK_RUNBOOKS": str(folder)}


async def test_terminate_idle_ends_only_the_backends_its_dry_run_listed(
    rig: Rig, scratch: str
) -> None:
    stuck = await idle_in_transaction(scratch, "stuck")
    finishes = await idle_in_transaction(scratch, "finishes")
    late = None
    try:
        await asyncio.sleep(1.1)
        assert await rig.mitigate("terminate-idle checkout older_than=1s") == ""
        shown = (await rig.proposal(1))["shown"]
        pids = sorted([stuck.info.backend_pid, finishes.info.backend_pid])
        assert "would have terminated 2 backends idle in transaction for 1s or more" in shown
        assert all(str(pid) in shown for pid in pids)
        await finishes.commit()
        late = await idle_in_transaction(scratch, "late")
        await asyncio.sleep(1.1)

        await rig.click(BOB)
        result = rig.messages()[-1]["text"]
        assert f"terminated 1 of 2 backends idle in transaction: pid {stuck.info.backend_pid}" in (
            result
        )
        assert f"skipped pid {finishes.info.backend_pid}: now idle" in result
        with pytest.raises(psycopg.OperationalError):
            await stuck.execute("SELECT 1")
        await late.execute("SELECT 1")  # idle in a transaction too, but never proposed
        [(_, actor, executed)] = await rig.events("mitigation_executed")
        assert actor == BOB and executed["ok"]
    finally:
        for conn in (stuck, finishes, late):
            if conn is not None:
                await conn.close()
