"""Readiness: whether this process can do its work, each dependency checked as reported.

A load balancer sends traffic only to a ready replica, so readiness covers what
every request needs: the database answers and its schema fits this code, and the
runbooks are loaded. The systems an incident is about (Kubernetes, a service's
health URL) are not in it: one being down is the incident, not Firebreak being
unready. Nor is Slack: if Slack is unreachable every replica is, and taking them
all out of service would only lose the requests Slack does deliver.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.runbooks import Runbooks
from storage import migrate
from storage.db import Database, DatabaseUnavailable


@dataclass(frozen=True)
class Readiness:
    ok: bool
    checks: dict[str, str]  # what was checked → what was found


async def readiness(db: Database, runbooks: Runbooks) -> Readiness:
    """Check each dependency now; nothing here is cached between calls."""
    database_ok, database = await _database(db)
    runbooks_ok, loaded = _runbooks(runbooks)
    return Readiness(database_ok and runbooks_ok, {"database": database, "runbooks": loaded})


async def _database(db: Database) -> tuple[bool, str]:
    if not await db.ping():
        return False, "unreachable"
    try:
        heads = await db.run(migrate.schema_heads)
    except DatabaseUnavailable:
        return False, "unreachable"
    expected = migrate.code_heads()
    if heads == expected:
        return True, "ok"
    if heads - migrate.known_revisions():
        # A newer release migrated it during a rolling update; its migrations add to
        # the schema, so this replica keeps serving until it is replaced.
        return True, f"ok (schema at {_names(heads)}, from a newer release)"
    return False, f"schema at {_names(heads) or 'nothing'}; this release needs {_names(expected)}"


def _runbooks(runbooks: Runbooks) -> tuple[bool, str]:
    levels = runbooks.severities.levels
    if not levels:
        return False, "no severities loaded"
    return True, f"loaded: severities {', '.join(levels)}, {len(runbooks.alerts.rules)} alert rules"


def _names(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions))
