"""The SQL and the pure helpers of `db-slow` (pg_stat_statements) and `terminate-idle`
(pg_stat_activity), kept apart from the executor's connection handling.

All SQL is constant text: `{schema}`, `{total}`, `{mean}` and `{order}` are filled with
`psycopg.sql.Identifier`s read from the catalog, and values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

STATEMENTS_EXTENSION = """
SELECT extnamespace::regnamespace::text AS schema, extversion AS version
FROM pg_extension WHERE extname = 'pg_stat_statements'
"""

# {schema} is the extension's schema from pg_catalog, {total}/{mean} its column names
# (renamed in 1.8, Postgres 13), {order} one of them: never user text.
TOP_STATEMENTS_SQL = """
SELECT calls, {total} AS total_ms, {mean} AS mean_ms, rows, left(query, 4096) AS query
FROM {schema}.pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY {order} DESC NULLS LAST
LIMIT %s
"""

IDLE_IN_TRANSACTION_STATES = ("idle in transaction", "idle in transaction (aborted)")
_IDLE_STATES = "(" + ", ".join(f"'{state}'" for state in IDLE_IN_TRANSACTION_STATES) + ")"

# Idle time counts from the last state change: how long the transaction has sat
# holding its locks and snapshot without doing anything.
IDLE_IN_TRANSACTION = f"""
SELECT pid, usename AS "user", state, wait_event_type, wait_event, backend_start, xact_start,
       extract(epoch FROM clock_timestamp() - state_change)::float8 AS seconds,
       left(query, 4096) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND state IN {_IDLE_STATES}
  AND clock_timestamp() - state_change >= %s * interval '1 second'
ORDER BY state_change, pid
LIMIT %s
"""

BACKENDS_NOW = """
SELECT pid, state, backend_start, xact_start FROM pg_stat_activity
WHERE pid = ANY(%s) AND datname = current_database()
"""

# Terminates only a backend that is still the one pinned (pid, start) in the very
# transaction pinned, and still idle in it: checked and signalled in one statement.
TERMINATE_PINNED = f"""
SELECT a.pid, pg_terminate_backend(a.pid) AS terminated
FROM pg_stat_activity AS a
JOIN unnest(%s::int[], %s::timestamptz[], %s::timestamptz[]) AS p(pid, backend_start, xact_start)
  ON a.pid = p.pid AND a.backend_start = p.backend_start AND a.xact_start = p.xact_start
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.state IN {_IDLE_STATES}
"""
TOP_STATEMENTS = 10  # rows of each ranking
MAX_IDLE = 50  # backends one terminate-idle confirmation covers


def milliseconds(ms: float | None) -> str:
    """A pg_stat_statements time (milliseconds) as `12.3ms` or, from a second, `4.2s`."""
    if ms is None:
        return "?"
    return f"{ms:.1f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def pinned_time(value: datetime | None) -> str | None:
    """A pg_stat_activity timestamp pinned as text: exact to the microsecond."""
    return value.isoformat() if value is not None else None


def skip_reason(pin: Mapping[str, Any], now: Mapping[str, Any] | None) -> str | None:
    """Why a pinned backend no longer qualifies, or None when it still does."""
    if now is None:
        return "ended"
    if pinned_time(now["backend_start"]) != pin["backend_start"]:
        return "a different backend now"
    if now["state"] not in IDLE_IN_TRANSACTION_STATES:
        return f"now {now['state'] or 'gone'}"
    if pinned_time(now["xact_start"]) != pin["xact_start"]:
        return "in a newer transaction"
    return None
