"""Postgres diagnostics (connections, long-running queries, lock waits, size, the costliest
statements) and the mitigations an incident usually needs: terminating a runaway or
blocking backend, or the backends left idle in a transaction.

Each call opens its own short connection from the URL in the target's environment
variable. Diagnostics run in a READ ONLY transaction with a local statement timeout,
so a diagnostic can neither change data nor pile onto a struggling server. All SQL is
constant text with bound parameters. Query text is shown with its literals masked:
they hold customer data. Neither the URL nor its password ever appears in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from bot.durations import compact_duration
from bot.executors import pg_stats
from bot.executors.base import (
    ExecutionResult,
    ExecutorError,
    PostgresTarget,
    StateChanged,
    build_result,
    format_age,
    format_table,
    truncate,
)
from bot.redact import mask_sql_literals, redact

QUERY_CHARS = 200

_SET_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"  # = SET LOCAL, but bindable

_STATES = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS n
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
GROUP BY 1 ORDER BY 2 DESC, 1
"""

# Age counts from the start of the transaction: an `idle in transaction` session that
# holds locks is as much a problem as a slow statement.
_LONG_RUNNING = """
SELECT pid, usename AS "user", state, wait_event_type, wait_event, backend_start,
       extract(epoch FROM clock_timestamp() - coalesce(xact_start, query_start))::float8
           AS seconds,
       left(query, 4096) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'
  AND clock_timestamp() - coalesce(xact_start, query_start) >= %s * interval '1 second'
ORDER BY seconds DESC
"""

_BLOCKED = """
SELECT w.pid AS blocked_pid,
       extract(epoch FROM clock_timestamp() - w.query_start)::float8 AS blocked_seconds,
       left(w.query, 4096) AS blocked_query,
       b.pid AS pid, b.usename AS "user", b.state, b.wait_event_type, b.wait_event,
       b.backend_start,
       extract(epoch FROM clock_timestamp() - coalesce(b.xact_start, b.query_start))::float8
           AS seconds,
       left(b.query, 4096) AS query
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)
JOIN pg_stat_activity AS b ON b.pid = blocker.pid
WHERE w.datname = current_database()
ORDER BY blocked_seconds DESC, w.pid, b.pid
"""

_DATABASE_SIZE = """
SELECT current_database() AS name, pg_database_size(current_database()) AS bytes,
       pg_size_pretty(pg_database_size(current_database())) AS pretty
"""

_LARGEST_RELATIONS = """
SELECT c.oid::regclass::text AS relation, pg_size_pretty(pg_total_relation_size(c.oid)) AS pretty
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY pg_total_relation_size(c.oid) DESC
LIMIT 5
"""

_TERMINATE = "SELECT pg_terminate_backend(%s) AS terminated"


def _query(text: str | None) -> str:
    """Query text fit for a channel: literals masked, one line, at most QUERY_CHARS."""
    return truncate(" ".join(mask_sql_literals(text or "").split()), QUERY_CHARS)


_BACKEND_HEADERS = ["PID", "USER", "STATE", "WAITING ON", "AGE", "QUERY"]


def _backend_row(row: Mapping[str, Any]) -> list[object]:
    wait = f"{row['wait_event_type']}:{row['wait_event']}" if row["wait_event"] else ""
    return [
        row["pid"],
        row["user"],
        row["state"],
        wait,
        format_age(row["seconds"]),
        _query(row["query"]),
    ]


class PostgresExecutor:
    """Runs allow-listed operations against the database named by a target's env var."""

    def __init__(self, environ: Mapping[str, str] = os.environ, timeout: float = 5.0) -> None:
        self._environ = environ
        self._timeout = timeout

    @asynccontextmanager
    async def _transaction(
        self, target: PostgresTarget, read_only: bool = True
    ) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """A cursor in a fresh transaction with a local statement timeout; every
        psycopg failure inside comes out as a secret-free ExecutorError."""
        url = self._environ.get(target.url_env)
        if not url:
            raise ExecutorError(f"environment variable {target.url_env} is not set")
        # Accept SQLAlchemy-style `postgresql+psycopg://` URLs, as Firebreak's own uses.
        url = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    url,
                    autocommit=True,
                    connect_timeout=max(2, math.ceil(self._timeout)),
                    application_name="firebreak",
                    row_factory=dict_row,
                ),
                self._timeout + 1,
            )
        except TimeoutError:
            raise ExecutorError(
                f"Postgres unreachable via {target.url_env} (timeout after {self._timeout:g}s)"
            ) from None
        except psycopg.ProgrammingError:  # its message quotes the malformed string
            raise ExecutorError(f"{target.url_env} does not hold a valid Postgres URL") from None
        except psycopg.Error as exc:
            reason = _scrub(str(exc), url)
            raise ExecutorError(f"Postgres unreachable via {target.url_env}: {reason}") from None
        try:
            async with conn.transaction():
                cur = conn.cursor()
                if read_only:
                    await cur.execute("SET TRANSACTION READ ONLY")
                await cur.execute(_SET_TIMEOUT, (f"{math.ceil(self._timeout * 1000)}ms",))
                yield cur
        except psycopg.errors.QueryCanceled:
            raise ExecutorError(f"query cancelled after the {self._timeout:g}s timeout") from None
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc)
            raise ExecutorError(f"Postgres error: {_scrub(message, url)}") from None
        finally:
            await conn.close()

    def configured(self, target: PostgresTarget) -> bool:
        """Whether the target's environment variable holds a URL at all."""
        return bool(self._environ.get(target.url_env))

    async def ping(self, target: PostgresTarget) -> None:
        """`SELECT 1` in a read-only transaction: the database behind the target answers
        (`firebreak check --live`). Raises ExecutorError saying why not."""
        async with self._transaction(target) as cur:
            await cur.execute("SELECT 1")

    async def _blocking(self, cur: psycopg.AsyncCursor[dict[str, Any]]) -> list[dict[str, Any]]:
        await cur.execute(_BLOCKED)
        return await cur.fetchall()

    async def activity(self, target: PostgresTarget, min_seconds: int = 60) -> ExecutionResult:
        """Connections by state, and the backends whose transaction has been open for
        `min_seconds` or more, longest first."""
        async with self._transaction(target) as cur:
            await cur.execute(_STATES)
            states = {row["state"]: row["n"] for row in await cur.fetchall()}
            await cur.execute(_LONG_RUNNING, (min_seconds,))
            slow = await cur.fetchall()
        by_state = ", ".join(f"{n} {state}" for state, n in states.items()) or "none"
        summary = (
            f"{sum(states.values())} connections ({by_state}); {len(slow)} open >= {min_seconds}s"
        )
        if slow:
            summary += f", longest pid {slow[0]['pid']} ({format_age(slow[0]['seconds'])})"
        table = format_table(_BACKEND_HEADERS, [_backend_row(r) for r in slow])
        output = f"connections: {by_state}\n\nopen for {min_seconds}s or more:\n" + (
            table if slow else "(none)"
        )
        return build_result(True, summary, output, states=states, pids=[r["pid"] for r in slow])

    async def locks(self, target: PostgresTarget) -> ExecutionResult:
        """Who waits on whom: each blocked backend with the backend(s) blocking it."""
        async with self._transaction(target) as cur:
            pairs = await self._blocking(cur)
        if not pairs:
            return build_result(True, "no queries are waiting on locks", "", pairs=[])
        rows = [
            [
                p["blocked_pid"],
                format_age(p["blocked_seconds"]),
                _query(p["blocked_query"]),
                p["pid"],
                p["state"],
                format_age(p["seconds"]),
                _query(p["query"]),
            ]
            for p in pairs
        ]
        blockers = sorted({p["pid"] for p in pairs})
        summary = f"{len({p['blocked_pid'] for p in pairs})} queries waiting on locks held by pid "
        summary += ", ".join(map(str, blockers))
        headers = ["BLOCKED", "WAITING", "QUERY", "BLOCKER", "STATE", "AGE", "BLOCKER QUERY"]
        pair_list = [{"blocked": p["blocked_pid"], "blocking": p["pid"]} for p in pairs]
        return build_result(
            True, summary, format_table(headers, rows), pairs=pair_list, blocking_pids=blockers
        )

    async def size(self, target: PostgresTarget) -> ExecutionResult:
        """The database's size, and its five largest tables with indexes and TOAST."""
        async with self._transaction(target) as cur:
            await cur.execute(_DATABASE_SIZE)
            (db,) = await cur.fetchall()
            await cur.execute(_LARGEST_RELATIONS)
            largest = await cur.fetchall()
        output = f"database {db['name']}: {db['pretty']}"
        if largest:
            rows = [[r["relation"], r["pretty"]] for r in largest]
            output += "\n\nlargest relations:\n" + format_table(["RELATION", "SIZE"], rows)
        summary = f"database {db['name']} is {db['pretty']}"
        return build_result(True, summary, output, bytes=db["bytes"])

    async def terminate(
        self,
        target: PostgresTarget,
        pid: int,
        dry_run: bool,
        min_seconds: int = 60,
        pinned: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """`pg_terminate_backend(pid)`, only for a backend that `activity` lists as open
        for `min_seconds` or more or that `locks` lists as blocking, never our own.

        `pinned` is the dry run's backend (pid and start time): a pid reused by another
        connection since the dry run is refused, not terminated."""
        async with self._transaction(target) as cur:
            await cur.execute("SELECT pg_backend_pid() AS pid")
            (own,) = await cur.fetchall()
            await cur.execute(_LONG_RUNNING, (min_seconds,))
            candidates = {r["pid"]: r for r in await cur.fetchall()}
            candidates |= {r["pid"]: r for r in await self._blocking(cur)}
        if pid == own["pid"]:
            raise ExecutorError("refusing to terminate Firebreak's own connection")
        if pid not in candidates and pinned is not None:
            raise StateChanged(f"pid {pid} changed since this dry run (it ended); propose again")
        if pid not in candidates:
            raise ExecutorError(
                f"pid {pid} is neither open for {min_seconds}s or more nor blocking "
                f"another query; see db-activity and db-locks"
            )
        row = candidates[pid]
        started = row["backend_start"].isoformat() if row["backend_start"] else ""
        if pinned is not None and pinned.get("backend_start") != started:
            raise StateChanged(f"pid {pid} changed since this dry run; propose again")
        output = format_table(_BACKEND_HEADERS, [_backend_row(row)])
        what = f"backend pid {pid} ({row['user']}, {row['state']}, {format_age(row['seconds'])})"
        if dry_run:
            output += "\n(dry run: nothing was terminated)"
            summary = f"dry run: would have terminated {what}"
            pin = {"pid": pid, "backend_start": started}
            return build_result(True, summary, output, pid=pid, dry_run=True, pinned=pin)
        async with self._transaction(target, read_only=False) as cur:
            await cur.execute(_TERMINATE, (pid,))
            done = await cur.fetchone()
        if not done or not done["terminated"]:
            raise ExecutorError(f"pid {pid} could not be terminated (it may have exited already)")
        return build_result(True, f"terminated {what}", output, pid=pid, dry_run=False)

    async def slow(self, target: PostgresTarget) -> ExecutionResult:
        """The statements that cost the most in this database, from pg_stat_statements:
        the top by total time (what loads the server) and by mean time (what users
        wait on). Says plainly when the extension is missing or not loaded."""
        async with self._transaction(target) as cur:
            await cur.execute("SELECT current_database() AS name")
            (db,) = await cur.fetchall()
            await cur.execute(pg_stats.STATEMENTS_EXTENSION)
            extension = await cur.fetchone()
            if extension is None:
                raise ExecutorError(
                    f"pg_stat_statements is not installed in {db['name']}: add it to "
                    "shared_preload_libraries, restart Postgres, then run CREATE EXTENSION "
                    "pg_stat_statements (db-activity shows what runs now)"
                )
            old = tuple(int(p) for p in extension["version"].split(".")[:2]) < (1, 8)
            total, mean = (
                ("total_time", "mean_time") if old else ("total_exec_time", "mean_exec_time")
            )
            top: dict[str, list[dict[str, Any]]] = {}
            try:
                for order in (total, mean):
                    query = sql.SQL(pg_stats.TOP_STATEMENTS_SQL).format(
                        schema=sql.Identifier(extension["schema"]),
                        total=sql.Identifier(total),
                        mean=sql.Identifier(mean),
                        order=sql.Identifier(order),
                    )
                    await cur.execute(query, (pg_stats.TOP_STATEMENTS,))
                    top[order] = await cur.fetchall()
            except psycopg.errors.ObjectNotInPrerequisiteState:
                raise ExecutorError(
                    f"pg_stat_statements is installed in {db['name']} but not loaded: add it "
                    "to shared_preload_libraries and restart Postgres"
                ) from None
        by_total, by_mean = top[total], top[mean]
        if not by_total:
            return build_result(True, f"pg_stat_statements has no statements for {db['name']}", "")
        headers = ["CALLS", "TOTAL", "MEAN", "ROWS", "QUERY"]
        output = (
            f"by total time:\n{format_table(headers, _statement_rows(by_total))}\n\n"
            f"by mean time:\n{format_table(headers, _statement_rows(by_mean))}"
        )
        first, slowest = by_total[0], by_mean[0]
        summary = (
            f"most total time: {truncate(_query(first['query']), 60)} "
            f"({pg_stats.milliseconds(first['total_ms'])} over {first['calls']} calls); "
            f"slowest mean: {truncate(_query(slowest['query']), 60)} "
            f"({pg_stats.milliseconds(slowest['mean_ms'])})"
        )
        return build_result(True, summary, output, statements=len(by_total))

    async def terminate_idle(
        self,
        target: PostgresTarget,
        older_than: int,
        dry_run: bool,
        pinned: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Terminate the backends idle in a transaction for `older_than` seconds or more:
        they hold locks and hold back vacuum while doing nothing (seeds 001 and 002).

        The dry run lists and pins each backend (pid, start time, transaction start);
        the confirmation terminates exactly those, and skips, naming why, any that ended,
        moved on to work or to a newer transaction, or whose pid now belongs to another
        backend. Backends that went idle after the dry run are not touched."""
        wanted = f"idle in transaction for {compact_duration(older_than)} or more"
        if pinned is None:
            async with self._transaction(target) as cur:
                await cur.execute(pg_stats.IDLE_IN_TRANSACTION, (older_than, pg_stats.MAX_IDLE + 1))
                rows = await cur.fetchall()
            if not rows:
                raise ExecutorError(f"no backends are {wanted}")
            more = len(rows) > pg_stats.MAX_IDLE
            rows = rows[: pg_stats.MAX_IDLE]
            pins = [
                {
                    "pid": r["pid"],
                    "backend_start": pg_stats.pinned_time(r["backend_start"]),
                    "xact_start": pg_stats.pinned_time(r["xact_start"]),
                }
                for r in rows
            ]
            table = format_table(_BACKEND_HEADERS, [_backend_row(r) for r in rows])
            if more:
                most = pg_stats.MAX_IDLE
                table += f"\n(more than {most}: the {most} idle longest; run again after)"
            if dry_run:
                pids = [r["pid"] for r in rows]
                summary = f"dry run: would have terminated {len(rows)} backends {wanted}: pid "
                summary += ", ".join(map(str, pids))
                output = table + "\n(dry run: nothing was terminated)"
                pin = {"backends": pins}
                return build_result(True, summary, output, pids=pids, dry_run=True, pinned=pin)
        else:
            pins, table = list(pinned["backends"]), ""
        return await self._terminate_pinned(target, pins, table)

    async def _terminate_pinned(
        self, target: PostgresTarget, pins: list[dict[str, Any]], table: str
    ) -> ExecutionResult:
        pids = [int(p["pid"]) for p in pins]
        async with self._transaction(target) as cur:
            await cur.execute(pg_stats.BACKENDS_NOW, (pids,))
            now = {r["pid"]: r for r in await cur.fetchall()}
        reasons = {p["pid"]: pg_stats.skip_reason(p, now.get(p["pid"])) for p in pins}
        skipped = {pid: why for pid, why in reasons.items() if why is not None}
        eligible = [p for p in pins if p["pid"] not in skipped]
        done: set[int] = set()
        if eligible:
            columns = (
                [p["pid"] for p in eligible],
                [datetime.fromisoformat(p["backend_start"]) for p in eligible],
                [datetime.fromisoformat(p["xact_start"]) for p in eligible],
            )
            async with self._transaction(target, read_only=False) as cur:
                await cur.execute(pg_stats.TERMINATE_PINNED, columns)
                done = {r["pid"] for r in await cur.fetchall() if r["terminated"]}
        skipped |= {
            p["pid"]: "changed as it was terminated" for p in eligible if p["pid"] not in done
        }
        summary = f"terminated {len(done)} of {len(pins)} backends idle in transaction"
        if done:
            summary += ": pid " + ", ".join(str(p) for p in pids if p in done)
        lines = [f"skipped pid {pid}: {why}" for pid, why in skipped.items()]
        output = "\n".join(filter(None, [table, *lines]))
        details = {"terminated": sorted(done), "skipped": {str(k): v for k, v in skipped.items()}}
        return build_result(True, summary, output, **details, dry_run=False)


def _statement_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            r["calls"],
            pg_stats.milliseconds(r["total_ms"]),
            pg_stats.milliseconds(r["mean_ms"]),
            r["rows"],
            _query(r["query"]),
        ]
        for r in rows
    ]


def _scrub(message: str, url: str) -> str:
    """A driver message without the URL or its password, on one line."""
    secrets = [url]
    with contextlib.suppress(psycopg.Error):
        secrets.append(str(conninfo_to_dict(url).get("password") or ""))
    for secret in filter(None, secrets):
        message = message.replace(secret, "***")
    return truncate(redact(" ".join(message.split())), 300)
