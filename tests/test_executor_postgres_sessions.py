"""`db-slow` and `terminate-idle` against the real Postgres (tests/test_executor_postgres.py
says where and when it skips), each in a scratch database of its own: terminate-idle
acts on every idle-in-transaction session of its database, so it must never see the
sessions of other tests sharing the server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from bot.executors.base import ExecutorError, PostgresTarget
from bot.executors.postgres import PostgresExecutor
from tests.private_postgres import private_postgres
from tests.tcp_proxy import TcpProxy
from tests.test_executor_postgres import TARGET, postgres  # noqa: F401 (a fixture)


@pytest_asyncio.fixture(name="scratch")
async def scratch_fixture(postgres: str) -> AsyncIterator[str]:  # noqa: F811
    """A fresh database's URL; dropped afterwards with whatever sessions remain."""
    name = f"firebreak_scratch_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield postgres.rsplit("/", 1)[0] + f"/{name}"
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def executor(scratch: str) -> PostgresExecutor:
    return PostgresExecutor(environ={"TEST_DATABASE_URL": scratch}, timeout=3)


async def idle_in_transaction(url: str, note: str) -> psycopg.AsyncConnection:
    """A session that opened a transaction, ran one statement and went quiet."""
    conn = await psycopg.AsyncConnection.connect(url, application_name=note)
    await conn.execute("SELECT %s::text AS note, 'card 4242424242424242' AS secret", (note,))
    return conn


async def pid_of(conn: psycopg.AsyncConnection) -> int:
    return conn.info.backend_pid


# -- db-slow ------------------------------------------------------------------------------


async def test_db_slow_without_the_extension_says_how_to_get_it(executor, scratch):
    with pytest.raises(ExecutorError, match="pg_stat_statements is not installed in firebreak_"):
        await executor.slow(TARGET)


async def test_db_slow_with_the_extension_not_preloaded_says_so(executor, scratch):
    async with await psycopg.AsyncConnection.connect(scratch, autocommit=True) as conn:
        loaded = await (await conn.execute("SHOW shared_preload_libraries")).fetchone()
        if loaded and "pg_stat_statements" in loaded[0]:
            pytest.skip("this server preloads pg_stat_statements; the loaded path is tested")
        try:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
        except psycopg.errors.UndefinedFile:
            pytest.skip("pg_stat_statements is not available on this server (postgresql-contrib)")
    with pytest.raises(ExecutorError, match="installed in .* but not loaded: add it to shared_pre"):
        await executor.slow(TARGET)


async def test_db_slow_ranks_real_statements_by_total_and_mean_time():
    """On a cluster of its own that preloads pg_stat_statements: many cheap calls top
    the total, one slow call tops the mean, and literals left in a statement's text
    (utility statements keep theirs) are masked."""
    with private_postgres(["shared_preload_libraries=pg_stat_statements"]) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            await conn.execute("CREATE TABLE cards (note text DEFAULT 'hunter2-literal')")
            for i in range(300):
                await conn.execute(
                    "SELECT count(*) FROM generate_series(1, 10000) WHERE %s > 0", (i,)
                )
            await conn.execute("SELECT pg_sleep(0.05)")
        executor = PostgresExecutor(environ={"TEST_DATABASE_URL": url}, timeout=3)
        result = await executor.slow(TARGET)
    assert result.ok, result.summary
    by_total, by_mean = result.output.split("\n\nby mean time:\n")
    assert by_total.startswith("by total time:\nCALLS")
    assert by_total.splitlines()[2].split()[0] == "300"  # the cheap, frequent one first
    assert "pg_sleep" in by_mean.splitlines()[1]
    assert "most total time: SELECT count(*) FROM generate_series($2, $3)" in result.summary
    assert "slowest mean: SELECT pg_sleep($1)" in result.summary
    assert "hunter2" not in result.output and "DEFAULT '?'" in result.output


# -- terminate-idle -----------------------------------------------------------------------


async def test_terminate_idle_applies_to_the_pinned_backends_only(executor, scratch):
    stuck = await idle_in_transaction(scratch, "stuck")
    finishes = await idle_in_transaction(scratch, "finishes")
    moves_on = await idle_in_transaction(scratch, "moves-on")
    idle = await psycopg.AsyncConnection.connect(scratch, autocommit=True)  # idle, no transaction
    late = None
    try:
        await asyncio.sleep(1.1)
        dry = await executor.terminate_idle(TARGET, older_than=1, dry_run=True)
        pids = {await pid_of(c) for c in (stuck, finishes, moves_on)}
        assert set(dry.details["pids"]) == pids
        assert dry.summary.startswith("dry run: would have terminated 3 backends idle in transac")
        assert "4242424242424242" not in dry.output and "'?'" in dry.output  # literals masked
        # Between the dry run and the confirmation: one commits, one commits and opens a new
        # transaction, and a new session goes idle in a transaction (never authorised).
        await finishes.commit()
        await moves_on.commit()
        await moves_on.execute("SELECT 1")
        late = await idle_in_transaction(scratch, "late")
        await asyncio.sleep(1.1)
        done = await executor.terminate_idle(
            TARGET, older_than=1, dry_run=False, pinned=dry.details["pinned"]
        )
        assert done.details["terminated"] == [await pid_of(stuck)]
        assert done.details["skipped"] == {
            str(await pid_of(finishes)): "now idle",
            str(await pid_of(moves_on)): "in a newer transaction",
        }
        assert done.summary == (
            f"terminated 1 of 3 backends idle in transaction: pid {await pid_of(stuck)}"
        )
        with pytest.raises(psycopg.OperationalError):
            await stuck.execute("SELECT 1")
        await late.execute("SELECT 1")  # untouched
        await idle.execute("SELECT 1")
    finally:
        for conn in (stuck, finishes, moves_on, idle, late):
            if conn is not None:
                await conn.close()


async def test_terminate_idle_skips_a_pid_that_is_another_backend_now(executor, scratch):
    stuck = await idle_in_transaction(scratch, "stuck")
    try:
        dry = await executor.terminate_idle(TARGET, older_than=0, dry_run=True)
        (pin,) = dry.details["pinned"]["backends"]
        # The pid reused by a later connection: the same pid, another start time.
        earlier = datetime.fromisoformat(pin["backend_start"]) - timedelta(seconds=5)
        forged = {"backends": [{**pin, "backend_start": earlier.isoformat()}]}
        done = await executor.terminate_idle(TARGET, older_than=0, dry_run=False, pinned=forged)
        assert done.details == {
            "terminated": [],
            "skipped": {str(pin["pid"]): "a different backend now"},
            "dry_run": False,
        }
        await stuck.execute("SELECT 1")  # still alive
    finally:
        await stuck.close()


async def test_terminate_idle_with_nothing_idle_is_a_clear_refusal(executor, scratch):
    fresh = await idle_in_transaction(scratch, "fresh")
    try:
        with pytest.raises(ExecutorError, match="no backends are idle in transaction for 10m"):
            await executor.terminate_idle(TARGET, older_than=600, dry_run=True)
    finally:
        await fresh.close()


async def test_a_hanging_server_answers_within_the_timeout():
    """A server that accepts the connection and never answers (tests/tcp_proxy.py)."""
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        await proxy.hold()
        url = f"postgresql://u:hunter2@127.0.0.1:{proxy.port}/db"
        executor = PostgresExecutor(environ={"HUNG": url}, timeout=1)
        for call in (
            executor.slow(PostgresTarget("HUNG")),
            executor.terminate_idle(PostgresTarget("HUNG"), older_than=600, dry_run=True),
        ):
            started = time.monotonic()
            with pytest.raises(ExecutorError, match="unreachable") as caught:
                await call
            assert time.monotonic() - started < 4
            assert "hunter2" not in str(caught.value)
