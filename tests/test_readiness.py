"""/readyz checks each thing it reports: the database and its schema, the runbooks."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.migrate import code_heads
from tests.harness import Harness


async def readyz(slack: Harness) -> tuple[int, dict[str, Any]]:
    url = slack.driver.app_url.replace("/slack/events", "/readyz")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def stamp(slack: Harness, revision: str) -> None:
    """Move the schema's recorded revision, as an older or newer release would leave it."""

    def write(session: Session) -> None:
        session.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})

    await slack.app.services.db.run(write)


async def test_ready_reports_what_it_checked(slack: Harness) -> None:
    status, body = await readyz(slack)
    assert status == 200, body
    assert body == {
        "ok": True,
        "database": "ok",
        "runbooks": "loaded: severities P0, P1, P2, P3, "
        f"{len(slack.app.services.runbooks.alerts.rules)} alert rules",
    }


async def test_a_schema_behind_the_code_is_not_ready(slack: Harness) -> None:
    (head,) = code_heads()
    await stamp(slack, "0005_mitigations")
    status, body = await readyz(slack)
    assert status == 503 and not body["ok"]
    assert body["database"] == f"schema at 0005_mitigations; this release needs {head}"

    await stamp(slack, "9999_from_the_future")  # a newer release upgraded it mid-rollout
    status, body = await readyz(slack)
    assert status == 200, body
    assert body["database"] == "ok (schema at 9999_from_the_future, from a newer release)"

    await stamp(slack, head)
    assert (await readyz(slack))[0] == 200
