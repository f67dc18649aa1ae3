"""The Redis fake (emulator/redis.py) answers as a real Redis does: the same commands,
sent by redis-py to both, get the same replies and errors (the real one is database 15
of the Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import redis.asyncio as aioredis

from emulator.redis import FakeRedis
from tests.backends import redis_or_skip

# What the redis executor sends, and the errors of the same commands misused.
COMMANDS = [
    ("PING",),
    ("PING", "hi"),
    ("PING", "a", "b"),
    ("DBSIZE",),
    ("FLUSHDB", "BAD"),
    ("FLUSHDB",),
    ("DBSIZE",),
    ("DBSIZE", "extra"),
    ("SELECT", "16"),
    ("SELECT", "x"),
    ("CLIENT",),
    ("CLIENT", "SETNAME", "firebreak"),
    ("CLIENT", "SETNAME", "has space"),
    ("CLIENT", "SETNAME"),
    ("CLIENT", "NOPE"),
    ("SLOWLOG", "GET", "0"),
    ("SLOWLOG", "GET", "-2"),
    ("SLOWLOG", "NOPE"),
    ("INFO", "nosuch"),
    ("NOSUCH", "a", "b"),
]


async def replies(url: str) -> list[object]:
    """Each command's reply, or its error's type and message."""
    client = aioredis.Redis.from_url(url, decode_responses=True, single_connection_client=True)
    answers: list[object] = []
    for command in COMMANDS:
        try:
            answers.append(await client.execute_command(*command))
        except aioredis.RedisError as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    await client.aclose()
    return answers


async def test_the_fake_answers_the_commands_as_a_real_redis() -> None:
    real_url = redis_or_skip(15)
    real = aioredis.Redis.from_url(real_url, decode_responses=True)
    await real.flushdb()  # whatever an earlier test left in database 15
    await real.set("cart:0", "x" * 20)
    async with FakeRedis() as fake:
        fake.fill("cart:", 1, size=20, db=15)
        fake_url = fake.url.removesuffix("/0") + "/15"
        fake_client = aioredis.Redis.from_url(fake_url, decode_responses=True)
        # The INFO fields the executor reads, in the same types, and the keyspace line.
        ours, theirs = await fake_client.info(), await real.info()
        assert {k: type(v) for k, v in ours.items()} == {k: type(theirs[k]) for k in ours}
        assert ours["db15"] == theirs["db15"] == {"keys": 1, "expires": 0, "avg_ttl": 0}
        assert set(await fake_client.info("server")) < set(await real.info("server"))
        await fake_client.aclose()

        assert await replies(fake_url) == await replies(real_url)
    await real.aclose()
