"""Redis: a read-only health report, and flushing one cache database (seeds 001 and 002).

redis-py's asyncio client (the maintained official client; its asyncio API saves a
thread per call and honours connect and read timeouts), one short-lived connection
per call, no retries, under the executor's own deadline. The report reads only PING,
INFO and SLOWLOG GET, and shows chosen numeric INFO fields, never free text from the
server: client names and slowlog arguments can carry passwords (`AUTH`, a client
named after its credentials), so the slowlog shows a command's name and, for the
plain data commands, its key (redacted); every other argument is only counted.

`flush` is a mitigation. Its dry run reads the database's key count (DBSIZE) and the
server's `run_id`; the confirmation authorises emptying *that* database on *that*
server instance, holding about that many keys. A cache's key count moves all the
time, so it is not pinned exactly: the confirm re-reads it and refuses, as changed
since the dry run, when the server restarted or failed over (another `run_id`) or
the database grew past twice its dry-run size plus 1,000 keys (it is no longer the
database the responder looked at). A shrinking database only means less is lost.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.executors.base import (
    ExecutionResult,
    ExecutorError,
    OutcomeUnknown,
    RedisTarget,
    StateChanged,
    build_result,
    format_age,
    format_bytes,
    format_table,
    truncate,
)
from bot.redact import MASK, redact

SLOWLOG_READ = 128  # the server's default slowlog-max-len: read it all, show the slowest
SLOWLOG_SHOWN = 10
GROWTH_FACTOR, GROWTH_SLACK = 2, 1000  # see the module docstring

# Commands whose first argument is a key, and whose key is worth showing: the ones a
# hot or big key shows up in. Everything else (AUTH, CONFIG, EVAL, CLIENT, MIGRATE,
# HELLO...) shows its name only.
_KEY_COMMANDS = frozenset(
    "GET SET GETEX GETDEL MGET DEL UNLINK EXISTS EXPIRE TTL TYPE INCR DECR INCRBY APPEND "
    "HGET HSET HMGET HGETALL HDEL HKEYS HVALS HLEN HSCAN LRANGE LLEN LPUSH RPUSH LPOP RPOP "
    "LREM SADD SREM SMEMBERS SCARD SISMEMBER SSCAN SINTER SUNION SDIFF ZADD ZREM ZRANGE "
    "ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZCARD ZSCORE ZSCAN SORT KEYS XADD XRANGE "
    "XREAD XLEN PFADD PFCOUNT".split()
)


class RedisExecutor:
    """Runs allow-listed operations against the Redis named by a target's env var."""

    def __init__(self, environ: Mapping[str, str] = os.environ, timeout: float = 5.0) -> None:
        self._environ = environ
        self._timeout = timeout

    @asynccontextmanager
    async def _client(
        self, target: RedisTarget, db: int | None = None
    ) -> AsyncIterator[tuple[aioredis.Redis, int]]:
        """One connection, no retries, the executor's deadline; errors as ExecutorError
        with the URL (and its password) never shown. Yields the client and its db."""
        url = self._environ.get(target.url_env, "").strip()
        if not url:
            raise ExecutorError(f"{target.url_env} is not set: it names the Redis URL")
        where = _where(url)
        try:
            pool = aioredis.ConnectionPool.from_url(
                url,
                # Half the deadline, so an unanswered write is seen as such, with time
                # left to read the state back.
                socket_connect_timeout=self._timeout / 2,
                socket_timeout=self._timeout / 2,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
                client_name="firebreak",
            )
        except ValueError as exc:
            raise ExecutorError(
                f"{target.url_env} is not a Redis URL: {_scrub(exc, url)}"
            ) from None
        if db is not None:
            pool.connection_kwargs["db"] = db
        client = aioredis.Redis(connection_pool=pool, single_connection_client=True)
        selected = int(pool.connection_kwargs.get("db") or 0)
        try:
            async with asyncio.timeout(self._timeout):
                yield client, selected
        except TimeoutError:
            raise ExecutorError(
                f"Redis did not answer within {self._timeout:g}s ({where})"
            ) from None
        except (AuthenticationError, AuthorizationError):
            raise ExecutorError(f"Redis refused Firebreak's credentials ({where})") from None
        except RedisTimeoutError:
            why = f"did not answer within {self._timeout / 2:g}s"
            raise ExecutorError(f"Redis {why} ({where})") from None
        except RedisConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            strerror = cause.strerror if isinstance(cause, OSError) else None
            why = strerror or truncate(_scrub(exc, url), 200)
            raise ExecutorError(f"Redis unreachable ({where}): {why}") from None
        except RedisError as exc:
            why = _scrub(exc, url) or type(exc).__name__
            raise ExecutorError(f"Redis failed ({where}): {truncate(why, 200)}") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ExecutorError(f"Redis unreachable ({where}): {why}") from None
        finally:
            await client.aclose()
            await pool.aclose()

    async def report(self, target: RedisTarget) -> ExecutionResult:
        """PING latency, memory against its maximum, evictions, clients, hit ratio and
        the slowest commands of the slowlog."""
        async with self._client(target) as (client, _):
            started = time.perf_counter()
            await client.ping()
            ping_ms = (time.perf_counter() - started) * 1000
            info: dict[str, Any] = await client.info()
            slowlog = await client.execute_command("SLOWLOG", "GET", str(SLOWLOG_READ))
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        share = f" ({used / limit:.0%})" if limit else ""
        of = f"{format_bytes(limit)}{share}" if limit else "no limit"
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        ratio = f"{hits / (hits + misses):.1%}" if hits + misses else "n/a"
        evicted, clients = int(info.get("evicted_keys", 0)), int(info.get("connected_clients", 0))
        blocked = int(info.get("blocked_clients", 0))
        summary = (
            f"PING {ping_ms:.1f} ms · memory {format_bytes(used)} of {of} · {evicted} evicted"
            f" · {clients} clients ({blocked} blocked) · hit ratio {ratio}"
        )
        keyspace = ", ".join(
            f"{name}={value.get('keys', 0)}"
            for name, value in sorted(info.items())
            if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)
        )
        uptime = int(info.get("uptime_in_seconds", 0))
        lines = [
            (
                "version",
                f"{info.get('redis_version', '?')}, up {format_age(uptime)}",
            ),
            ("ping", f"{ping_ms:.1f} ms"),
            (
                "memory",
                f"{format_bytes(used)} used of {of}, peak "
                f"{format_bytes(int(info.get('used_memory_peak', 0)))}, policy "
                f"{info.get('maxmemory_policy', '?')}",
            ),
            ("evictions", f"{evicted} evicted, {info.get('expired_keys', 0)} expired"),
            (
                "clients",
                f"{clients} connected, {blocked} blocked, "
                f"{info.get('rejected_connections', 0)} rejected",
            ),
            ("hit ratio", f"{ratio} ({hits} hits, {misses} misses)"),
            ("keys", keyspace or "none"),
        ]
        entries = sorted(_slow_entries(slowlog), key=lambda e: -e[2])[:SLOWLOG_SHOWN]
        now = time.time()
        rows = [[i, format_age(now - at), f"{us / 1000:.1f} ms", cmd] for i, at, us, cmd in entries]
        slow = format_table(["ID", "AGO", "TOOK", "COMMAND"], rows) if rows else "(empty)"
        output = "\n".join(f"{name:<10} {value}" for name, value in lines)
        output += f"\n\nslowlog, slowest {SLOWLOG_SHOWN} of the last {SLOWLOG_READ}:\n{slow}"
        details = {"ping_ms": round(ping_ms, 1), "used_memory": used, "maxmemory": limit}
        return build_result(True, summary, output, **details)

    async def flush(
        self,
        target: RedisTarget,
        db: int | None = None,
        dry_run: bool = True,
        pinned: Mapping[str, object] | None = None,
    ) -> ExecutionResult:
        """FLUSHDB on one database; see the module docstring for what a confirm covers."""
        async with self._client(target, db) as (client, selected):
            keys = int(await client.dbsize())
            run_id = str((await client.info("server")).get("run_id", ""))
            what = f"db {selected}"
            if dry_run:
                summary = f"dry run: would delete every key of {what} ({keys} keys)"
                output = (
                    f"FLUSHDB on {what}: {keys} keys now; other databases untouched.\n"
                    f"(dry run: nothing was deleted. The confirm refuses if the server "
                    f"restarted or {what} grew past {_ceiling(keys)} keys.)"
                )
                pin = {"db": selected, "keys": keys, "run_id": run_id}
                return build_result(True, summary, output, dry_run=True, pinned=pin)
            if pinned is not None:
                _check_pinned(pinned, selected, keys, run_id)
            try:
                await client.flushdb()
                unanswered = False
            except (RedisTimeoutError, RedisConnectionError, OSError):
                unanswered = True  # an error *answer* (a renamed FLUSHDB) is a plain failure
        if unanswered and (left := await self._read_back(target, selected)) != 0:
            raise OutcomeUnknown(
                f"FLUSHDB on {what} was sent but not answered, and a read-back finds "
                f"{left} keys: check with the redis diagnostic"
            )
        summary = f"flushed {what}: {keys} keys deleted"
        output = f"FLUSHDB on {what}: {keys} keys deleted; other databases untouched."
        return build_result(True, summary, output, db=selected, keys=keys, dry_run=False)

    async def _read_back(self, target: RedisTarget, db: int) -> int | str:
        """The key count after an unanswered FLUSHDB, or `unknown`."""
        try:
            async with self._client(target, db) as (client, _):
                return int(await client.dbsize())
        except ExecutorError:
            return "unknown"


def _ceiling(keys: int) -> int:
    return max(keys * GROWTH_FACTOR, keys + GROWTH_SLACK)


def _check_pinned(pinned: Mapping[str, object], db: int, keys: int, run_id: str) -> None:
    if pinned.get("db") != db:
        raise StateChanged(
            f"this dry run was for db {pinned.get('db')}, not db {db}; propose again"
        )
    if pinned.get("run_id") != run_id:
        raise StateChanged(
            "the Redis server restarted or failed over since this dry run; propose again"
        )
    before = pinned.get("keys")
    if not isinstance(before, int) or keys > _ceiling(before):
        raise StateChanged(
            f"db {db} holds {keys} keys, {before} at the dry run: changed since this dry run; "
            "propose again"
        )


def _slow_entries(raw: object) -> list[tuple[int, int, int, str]]:
    """(id, unix time, microseconds, shown command) from SLOWLOG GET's raw reply."""
    entries = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, list) or len(item) < 4:
            continue
        args = next((part for part in item[3:5] if isinstance(part, list)), [])
        entries.append((int(item[0]), int(item[1]), int(item[2]), _command(args)))
    return entries


def _command(args: list[object]) -> str:
    """`GET cart:42`, `SET cart:42 (+1 hidden)`, `AUTH (2 args hidden)`: a name, for
    the data commands their key (redacted), and how many arguments are not shown."""
    if not args:
        return "?"
    name, rest = str(args[0]).upper()[:32], args[1:]
    if name in _KEY_COMMANDS and rest:
        key = truncate(redact(str(rest[0])), 60)
        return f"{name} {key} (+{len(rest) - 1} hidden)" if len(rest) > 1 else f"{name} {key}"
    return f"{name} ({len(rest)} args hidden)" if rest else name


def _where(url: str) -> str:
    """host:port/db of a Redis URL, without its user and password."""
    try:
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
    except ValueError:
        return "the configured Redis"
    return host or "the configured Redis"


def _scrub(exc: BaseException, url: str) -> str:
    """An error message with the URL's password and the URL itself masked."""
    text = str(exc).replace(url, MASK)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, MASK)
    return redact(text)
