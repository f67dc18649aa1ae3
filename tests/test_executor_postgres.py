"""PostgresExecutor against the real Postgres at 127.0.0.1:5432 (trust auth), or at
$FIREBREAK_TEST_POSTGRES.

Skipped when that server is unreachable, unless FIREBREAK_REQUIRE_POSTGRES=1 (CI),
where an unreachable server fails the run instead of silently skipping it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from bot.executors.base import ExecutionResult, ExecutorError, PostgresTarget, StateChanged
from bot.executors.postgres import PostgresExecutor

# The same server and variable as tests/databases.py, in the form psycopg takes.
DSN = os.environ.get(
    "FIREBREAK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
).replace("postgresql+psycopg://", "postgresql://")
TARGET = PostgresTarget(url_env="TEST_DATABASE_URL")


@pytest_asyncio.fixture
async def postgres() -> AsyncIterator[str]:
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("FIREBREAK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Postgres not reachable at {DSN.split('@')[-1]}: {exc}")
        pytest.skip(f"Postgres not reachable at {DSN.split('@')[-1]}")
    await conn.close()
    yield DSN


@pytest.fixture
def executor(postgres: str) -> PostgresExecutor:
    return PostgresExecutor(environ={"TEST_DATABASE_URL": postgres}, timeout=5)


@pytest_asyncio.fixture
async def table(postgres: str) -> AsyncIterator[sql.Identifier]:
    """A table of its own for each test, dropped afterwards."""
    name = sql.Identifier(f"firebreak_test_{uuid.uuid4().hex[:10]}")
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(name))
    yield name
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))


async def eventually(
    check: Callable[[], Awaitable[ExecutionResult]], ready: Callable
) -> ExecutionResult:
    """Poll a diagnostic until `ready(result)`: another session's state takes a moment."""
    for _ in range(50):
        result = await check()
        if ready(result):
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never ready: {result}")


async def test_locks_show_the_pair_and_terminating_the_blocker_frees_the_waiter(
    postgres, executor, table
):
    holder = await psycopg.AsyncConnection.connect(postgres)
    waiter = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    bystander = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    try:
        await holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        blocked = asyncio.create_task(
            waiter.execute(sql.SQL("SELECT count(*) FROM {} WHERE note = 'x'").format(table))
        )
        holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid

        result = await eventually(lambda: executor.locks(TARGET), lambda r: r.details["pairs"])
        assert result.details["pairs"] == [{"blocked": waiter_pid, "blocking": holder_pid}]
        assert result.summary == f"1 queries waiting on locks held by pid {holder_pid}"
        assert "note = '?'" in result.output and "'x'" not in result.output

        with pytest.raises(ExecutorError, match=f"pid {bystander.info.backend_pid} is neither"):
            await executor.terminate(TARGET, bystander.info.backend_pid, dry_run=False)

        dry = await executor.terminate(TARGET, holder_pid, dry_run=True)
        assert dry.summary.startswith(f"dry run: would have terminated backend pid {holder_pid}")
        await asyncio.sleep(0.2)
        assert not blocked.done()

        done = await executor.terminate(TARGET, holder_pid, dry_run=False)
        assert done.summary.startswith(f"terminated backend pid {holder_pid}")
        await asyncio.wait_for(blocked, 5)
        assert (await executor.locks(TARGET)).details["pairs"] == []
    finally:
        for conn in (holder, waiter, bystander):
            await conn.close()


async def test_a_terminate_confirmed_for_another_backend_is_refused(postgres, executor, table):
    """The dry run pins the backend (pid and start time); a confirmation for it never
    terminates a different backend, or one that has gone."""
    holder = await psycopg.AsyncConnection.connect(postgres)
    waiter = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    try:
        await holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        blocked = asyncio.create_task(waiter.execute(sql.SQL("SELECT 1 FROM {}").format(table)))
        pid = holder.info.backend_pid
        await eventually(lambda: executor.locks(TARGET), lambda r: r.details["pairs"])
        dry = await executor.terminate(TARGET, pid, dry_run=True)
        pinned = dry.details["pinned"]
        assert pinned["pid"] == pid and pinned["backend_start"]
        other = {**pinned, "backend_start": "2000-01-01T00:00:00+00:00"}  # pid reused since
        with pytest.raises(StateChanged, match=f"pid {pid} changed since this dry run"):
            await executor.terminate(TARGET, pid, dry_run=False, pinned=other)
        assert not blocked.done()
        done = await executor.terminate(TARGET, pid, dry_run=False, pinned=pinned)
        assert done.summary.startswith(f"terminated backend pid {pid}")
        await asyncio.wait_for(blocked, 5)
        with pytest.raises(StateChanged, match="it ended"):
            await executor.terminate(TARGET, pid, dry_run=False, pinned=pinned)
    finally:
        for conn in (holder, waiter):
            await conn.close()


async def test_activity_lists_long_running_queries_with_literals_masked(postgres, executor):
    sleeper = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    pid = sleeper.info.backend_pid
    running = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30), 'card 4111111111111111'"))
    try:
        result = await eventually(
            lambda: executor.activity(TARGET, min_seconds=0), lambda r: pid in r.details["pids"]
        )
        assert "pg_sleep(?), '?'" in result.output and "4111" not in result.output
        assert result.details["states"].get("active", 0) >= 1
        quiet = await executor.activity(TARGET, min_seconds=3600)
        assert pid not in quiet.details["pids"]

        with pytest.raises(ExecutorError, match="neither open for 60s or more"):
            await executor.terminate(TARGET, pid, dry_run=True)
        await executor.terminate(TARGET, pid, dry_run=False, min_seconds=0)
        with pytest.raises(psycopg.OperationalError):
            await asyncio.wait_for(running, 5)
    finally:
        await sleeper.close()


async def test_size(executor):
    result = await executor.size(TARGET)
    assert result.ok and result.summary.startswith("database ") and " is " in result.summary
    assert isinstance(result.details["bytes"], int) and result.details["bytes"] > 0


async def test_sqlalchemy_style_url_is_accepted(postgres):
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    result = await PostgresExecutor(environ={"TEST_DATABASE_URL": url}).size(TARGET)
    assert result.ok


async def test_unknown_pid_is_refused(executor):
    with pytest.raises(ExecutorError, match="pid 2147483647 is neither"):
        await executor.terminate(TARGET, 2147483647, dry_run=False)


async def test_missing_env_var_names_the_variable():
    ex = PostgresExecutor(environ={})
    with pytest.raises(ExecutorError, match="^environment variable TEST_DATABASE_URL is not set$"):
        await ex.activity(TARGET)


async def test_connection_errors_never_show_the_url_or_password():
    url = "postgresql://firebreak:s3cr3t-pw@127.0.0.1:1/test"
    ex = PostgresExecutor(environ={"TEST_DATABASE_URL": url}, timeout=2)
    with pytest.raises(ExecutorError) as err:
        await ex.size(TARGET)
    message = str(err.value)
    assert message.startswith("Postgres unreachable via TEST_DATABASE_URL")
    assert "s3cr3t" not in message and url not in message


async def test_malformed_url_is_not_echoed():
    ex = PostgresExecutor(environ={"TEST_DATABASE_URL": "host=x password=s3cr3t oops"})
    with pytest.raises(ExecutorError) as err:
        await ex.size(TARGET)
    assert str(err.value) == "TEST_DATABASE_URL does not hold a valid Postgres URL"
