"""RedisExecutor against the real Redis on 127.0.0.1:6379 (databases 14 and 15 only),
and behind tests/tcp_proxy.py when it is down or hanging."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from bot.executors import ExecutorError, OutcomeUnknown, RedisExecutor, RedisTarget, StateChanged
from bot.executors.redis import _command
from tests.backends import PLANTED, REDIS_URL, redis_or_skip
from tests.tcp_proxy import TcpProxy

ENV = "FIREBREAK_TEST_REDIS_URL"
TARGET = RedisTarget(ENV)
# A Lua loop slow enough (tens of ms) for the default 10 ms slowlog threshold.
SLOW_SCRIPT = "local i = 0 while i < 3000000 do i = i + 1 end return 1"


@pytest_asyncio.fixture(name="cache")
async def cache_fixture() -> AsyncIterator[aioredis.Redis]:
    """Database 14 of the real Redis, emptied before and after; 15 is its neighbour."""
    url = redis_or_skip(14)
    redis_or_skip(15)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    yield client
    await client.flushdb()
    await client.aclose()
    redis_or_skip(15)  # empties it again


def executor(url: str = f"{REDIS_URL}/14", timeout: float = 3.0) -> RedisExecutor:
    return RedisExecutor({ENV: url}, timeout=timeout)


async def test_report_shows_health_and_never_a_planted_secret(cache: aioredis.Redis) -> None:
    await cache.client_setname(f"password={PLANTED}")
    await cache.set("greeting", "hello")
    await cache.get("greeting")
    await cache.get("absent")
    await cache.eval(SLOW_SCRIPT, 0, f"AUTH-{PLANTED}")  # lands in the slowlog
    secret_url = REDIS_URL.replace("redis://", f"redis://firebreak-nobody:{PLANTED}@") + "/14"

    result = await executor().report(TARGET)

    assert result.ok
    assert result.summary.startswith("PING ") and "hit ratio" in result.summary
    for line in ("ping", "memory", "evictions", "clients", "hit ratio", "keys"):
        assert f"\n{line}" in "\n" + result.output
    assert "db14=1" in result.output
    assert "EVAL (3 args hidden)" in result.output
    assert PLANTED not in result.output + result.summary

    with pytest.raises(ExecutorError, match="refused Firebreak's credentials") as refused:
        await executor(secret_url).report(TARGET)
    assert PLANTED not in str(refused.value)


def test_slowlog_commands_show_a_key_at_most_and_mask_secrets() -> None:
    assert _command(["get", "cart:42"]) == "GET cart:42"
    assert _command(["AUTH", "default", PLANTED]) == "AUTH (2 args hidden)"
    assert _command(["CONFIG", "SET", "requirepass", PLANTED]) == "CONFIG (3 args hidden)"
    assert _command(["SET", f"password={PLANTED}", "v"]) == "SET password=*** (+1 hidden)"
    assert _command(["PING"]) == "PING"
    assert _command([]) == "?"


async def test_flush_dry_run_counts_then_flushes_only_that_database(
    cache: aioredis.Redis,
) -> None:
    await cache.mset({f"k{i}": i for i in range(25)})
    neighbour = aioredis.Redis.from_url(f"{REDIS_URL}/15")
    await neighbour.set("keep", 1)

    dry = await executor().flush(TARGET, dry_run=True)
    assert dry.summary == "dry run: would delete every key of db 14 (25 keys)"
    assert await cache.dbsize() == 25
    pinned = dry.details["pinned"]
    assert isinstance(pinned, dict) and pinned["db"] == 14 and pinned["keys"] == 25

    await cache.set("one-more", 1)  # a live cache moves a little: still covered
    done = await executor().flush(TARGET, dry_run=False, pinned=pinned)
    assert done.summary == "flushed db 14: 26 keys deleted"
    assert await cache.dbsize() == 0
    assert await neighbour.get("keep") == b"1"
    await neighbour.aclose()


async def test_flush_of_another_db_number_than_the_urls(cache: aioredis.Redis) -> None:
    other = aioredis.Redis.from_url(f"{REDIS_URL}/15")
    await other.set("x", 1)
    dry = await executor().flush(TARGET, db=15, dry_run=True)
    assert dry.summary == "dry run: would delete every key of db 15 (1 keys)"
    await executor().flush(TARGET, db=15, dry_run=False, pinned=dry.details["pinned"])  # type: ignore[arg-type]
    assert await other.dbsize() == 0
    await other.aclose()


async def test_a_database_that_grew_past_its_dry_run_is_not_flushed(
    cache: aioredis.Redis,
) -> None:
    await cache.set("a", 1)
    dry = await executor().flush(TARGET, dry_run=True)
    pinned = dict(dry.details["pinned"])  # type: ignore[call-overload]
    await cache.mset({f"k{i}": i for i in range(1500)})

    with pytest.raises(StateChanged, match="1501 keys, 1 at the dry run"):
        await executor().flush(TARGET, dry_run=False, pinned=pinned)
    with pytest.raises(StateChanged, match="restarted or failed over"):
        await executor().flush(TARGET, dry_run=False, pinned={**pinned, "run_id": "other"})
    assert await cache.dbsize() == 1501


async def test_redis_down_or_hanging_is_answered_within_the_timeout(
    cache: aioredis.Redis,
) -> None:
    host, port = REDIS_URL.removeprefix("redis://").split(":")
    async with TcpProxy(host, int(port)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/14"
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(ExecutorError, match=r"Redis unreachable \(127.0.0.1:[0-9]+\): "):
            await executor(url, timeout=1).report(TARGET)
        assert time.monotonic() - started < 1

        await proxy.restore()
        await proxy.hold()
        for attempt in (executor(url, 1).report(TARGET), executor(url, 1).flush(TARGET)):
            started = time.monotonic()
            with pytest.raises(ExecutorError, match="did not answer within 0.5s"):
                await attempt
            assert time.monotonic() - started < 1.5


async def test_an_unset_or_broken_url_is_named_without_its_password() -> None:
    with pytest.raises(ExecutorError, match=f"{ENV} is not set"):
        await RedisExecutor({}).report(TARGET)
    with pytest.raises(ExecutorError, match="is not a Redis URL") as refused:
        await RedisExecutor({ENV: f"http://user:{PLANTED}@cache"}).report(TARGET)
    assert PLANTED not in str(refused.value)


class SwallowedFlush:
    """A RESP server that answers like Redis but never answers FLUSHDB: the write that
    times out. `lands` says whether that FLUSHDB took effect all the same."""

    def __init__(self, keys: int, lands: bool) -> None:
        self.keys, self.lands, self.flushes = keys, lands, 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/14"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                count = int((await reader.readline())[1:])
                args = []
                for _ in range(count):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2].decode().upper())
                if args[0] == "FLUSHDB":
                    self.flushes += 1
                    self.keys = 0 if self.lands else self.keys
                    continue  # never answered
                if args[0] == "DBSIZE":
                    writer.write(f":{self.keys}\r\n".encode())
                elif args[0] == "INFO":
                    body = "# Server\r\nrun_id:0123abcd\r\n"
                    writer.write(f"${len(body)}\r\n{body}\r\n".encode())
                else:  # CLIENT SETNAME, CLIENT SETINFO, SELECT
                    writer.write(b"+OK\r\n")
                await writer.drain()
        writer.close()


async def test_an_unanswered_flush_is_read_back_landed_or_unknown() -> None:
    pinned = {"db": 14, "keys": 5, "run_id": "0123abcd"}
    fake = SwallowedFlush(keys=5, lands=False)
    async with fake as url:
        with pytest.raises(OutcomeUnknown, match="a read-back finds 5 keys"):
            await executor(url, timeout=1).flush(TARGET, dry_run=False, pinned=pinned)
    assert fake.flushes == 1

    async with SwallowedFlush(keys=5, lands=True) as url:
        done = await executor(url, timeout=1).flush(TARGET, dry_run=False, pinned=pinned)
    assert done.summary == "flushed db 14: 5 keys deleted"
