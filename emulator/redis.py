"""A fake Redis server on a loopback port, speaking RESP2: the shell, the demo and tests.

It answers what bot/executors/redis.py sends through redis-py with the replies of a
Redis 7.0 server: the connection set-up (CLIENT SETNAME, SELECT; CLIENT SETINFO is
an unknown subcommand before 7.2, and redis-py ignores that error), PING, INFO (all
sections or one), SLOWLOG GET, DBSIZE and FLUSHDB, and the errors for a wrong
argument. Any other command gets the server's `unknown command` error. The state is
sixteen databases of keys (each key holds only its value's size: no command here
reads a value), the slowlog, the keyspace counters and a `run_id` drawn at start, so
FLUSHDB empties one database and its memory, and a restart looks like one to the
flush's confirmation.

    async with FakeRedis(maxmemory=256 * 2**20) as server:
        server.fill("cart:", 1200, size=2048)
        server.slow("KEYS", "cart:*", took_us=48_000, ago=120)
        # REDIS_URL=server.url
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from dataclasses import dataclass

DATABASES = 16
# The arguments each command takes after its name, fewest and most. CLIENT and SLOWLOG
# are containers: their subcommands are named as Redis names them, CLIENT|SETNAME.
ARITY = {"PING": (0, 1), "INFO": (0, 1), "DBSIZE": (0, 0), "FLUSHDB": (0, 1), "SELECT": (1, 1)}
ARITY |= {"CLIENT|SETNAME": (1, 1), "SLOWLOG|GET": (0, 1)}
CONTAINERS = ("CLIENT", "SLOWLOG")
BASE_MEMORY = 1_000_000  # what an empty server uses
KEY_OVERHEAD = 64  # a key's dict entry and object header, roughly
Reply = int | str | list["Reply"]


class Status(str):
    """A simple-string reply (`+OK`), as opposed to a bulk string."""


class CommandError(Exception):
    """An error reply; the message starts with its code (ERR, WRONGTYPE...)."""


@dataclass(frozen=True)
class SlowEntry:
    id: int
    at: int  # unix time
    took_us: int
    args: tuple[str, ...]
    client: str  # ip:port
    name: str


@dataclass
class _Client:
    db: int = 0  # what SELECT chose


class FakeRedis:
    """The server and its state; see the module docstring."""

    def __init__(
        self,
        *,
        maxmemory: int = 0,
        policy: str = "noeviction",
        version: str = "7.0.15",
        uptime: float = 0,
    ) -> None:
        """`uptime`: how long the server has been up when it first listens."""
        self.maxmemory, self.policy, self.version = maxmemory, policy, version
        self._uptime = uptime
        self.databases: list[dict[str, int]] = [{} for _ in range(DATABASES)]
        self.slowlog: list[SlowEntry] = []  # newest first, as SLOWLOG GET answers
        self.hits = self.misses = self.evicted = self.expired = 0
        self.run_id = ""
        self.port = 0
        self._peak = BASE_MEMORY
        self._started = 0.0
        self._ids = itertools.count()
        self._clients: dict[asyncio.StreamWriter, _Client] = {}
        self._server: asyncio.Server | None = None

    # -- test-facing state ---------------------------------------------------------------
    def fill(self, prefix: str, count: int, *, size: int, db: int = 0) -> None:
        """Set keys `prefix0` to `prefix{count - 1}` in `db`, each holding `size` bytes."""
        self.databases[db].update((f"{prefix}{n}", size) for n in range(count))
        self._peak = max(self._peak, self.used_memory)

    def slow(self, *args: str, took_us: int, ago: float, client: str = "", name: str = "") -> None:
        """Log a command as run `ago` seconds ago by `client` (ip:port); in the order they
        ran, as the entries' IDs follow it."""
        at = int(time.time() - ago)
        entry = SlowEntry(next(self._ids), at, took_us, args, client or "10.0.3.7:41822", name)
        self.slowlog.insert(0, entry)

    @property
    def used_memory(self) -> int:
        return BASE_MEMORY + sum(
            KEY_OVERHEAD + len(key) + size for keys in self.databases for key, size in keys.items()
        )

    @property
    def url(self) -> str:
        """The address to put in a target's url_env variable."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (after `close()`, at the same port, as a restarted server: a new run_id)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.run_id = secrets.token_hex(20)
        self._started, self._uptime = time.time() - self._uptime, 0

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._clients):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- protocol ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = self._clients[writer] = _Client()
        try:
            while (command := await _read_command(reader)) is not None:
                try:
                    reply = self._run(client, command)
                except CommandError as exc:
                    writer.write(b"-%s\r\n" % str(exc).encode())
                else:
                    writer.write(encode(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up mid-command
        except ValueError as exc:  # not RESP: a real server answers so, and hangs up
            writer.write(b"-ERR Protocol error: %s\r\n" % str(exc).encode())
        finally:
            del self._clients[writer]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _run(self, client: _Client, command: list[str]) -> Reply:
        name, args = command[0].upper(), command[1:]
        if name in CONTAINERS and args:
            if f"{name}|{args[0].upper()}" not in ARITY:
                raise CommandError(f"ERR unknown subcommand '{args[0]}'. Try {name} HELP.")
            name, args = f"{name}|{args[0].upper()}", args[1:]
        elif name not in ARITY and name not in CONTAINERS:
            raise CommandError(
                f"ERR unknown command '{command[0]}', with args beginning with: {_head(args)}"
            )
        fewest, most = ARITY.get(name, (1, 0))  # a container command alone takes none
        if not fewest <= len(args) <= most:
            raise CommandError(f"ERR wrong number of arguments for '{name.lower()}' command")
        match name:
            case "PING":
                return args[0] if args else Status("PONG")
            case "INFO":
                return self._info(args[0].lower() if args else "default")
            case "DBSIZE":
                return len(self.databases[client.db])
            case "FLUSHDB":  # SYNC or ASYNC: either empties the database at once here
                if args and args[0].upper() not in ("SYNC", "ASYNC"):
                    raise CommandError("ERR syntax error")
                self.databases[client.db].clear()
                return Status("OK")
            case "SELECT":
                if not 0 <= (db := _integer(args[0])) < DATABASES:
                    raise CommandError("ERR DB index is out of range")
                client.db = db
                return Status("OK")
            case "CLIENT|SETNAME":
                if any(not "!" <= char <= "~" for char in args[0]):
                    raise CommandError(
                        "ERR Client names cannot contain spaces, newlines or special characters."
                    )
                return Status("OK")
            case _:  # SLOWLOG|GET
                try:
                    count = int(args[0]) if args else 10
                except ValueError:
                    count = -2
                if count < -1:
                    raise CommandError("ERR count should be greater than or equal to -1")
                shown = self.slowlog if count == -1 else self.slowlog[:count]
                return [[e.id, e.at, e.took_us, list(e.args), e.client, e.name] for e in shown]

    def _info(self, section: str) -> str:
        used = self.used_memory
        self._peak = max(self._peak, used)
        sections: dict[str, dict[str, object]] = {
            "server": {
                "redis_version": self.version,
                "redis_mode": "standalone",
                "run_id": self.run_id,
                "tcp_port": self.port,
                "uptime_in_seconds": int(time.time() - self._started),
            },
            "clients": {"connected_clients": len(self._clients), "blocked_clients": 0},
            "memory": {
                "used_memory": used,
                "used_memory_peak": self._peak,
                "maxmemory": self.maxmemory,
                "maxmemory_policy": self.policy,
            },
            "stats": {
                "rejected_connections": 0,
                "expired_keys": self.expired,
                "evicted_keys": self.evicted,
                "keyspace_hits": self.hits,
                "keyspace_misses": self.misses,
            },
            "keyspace": {
                f"db{n}": f"keys={len(keys)},expires=0,avg_ttl=0"
                for n, keys in enumerate(self.databases)
                if keys
            },
        }
        chosen = sections if section in ("default", "all", "everything") else {}
        if section in sections:
            chosen = {section: sections[section]}
        return "".join(
            f"# {title.capitalize()}\r\n"
            + "".join(f"{key}:{value}\r\n" for key, value in fields.items())
            + "\r\n"
            for title, fields in chosen.items()
        )


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError("ERR value is not an integer or out of range") from None


def _head(args: list[str]) -> str:
    """The arguments an unknown command's error quotes: as many as fit in 128 characters."""
    head = ""
    for arg in args:
        if len(head) >= 128:
            break
        head += f"'{arg[: 128 - len(head)]}' "
    return head


async def _read_command(reader: asyncio.StreamReader) -> list[str] | None:
    """One command as clients send it, an array of bulk strings; None at end of stream."""
    header = await reader.readline()
    if not header:
        return None
    if not header.startswith(b"*"):
        raise ValueError(f"expected '*', got '{header[:1].decode(errors='replace')}'")
    args = []
    for _ in range(int(header[1:])):
        size = await reader.readline()
        if not size.startswith(b"$"):
            raise ValueError(f"expected '$', got '{size[:1].decode(errors='replace')}'")
        data = await reader.readexactly(int(size[1:]) + 2)
        args.append(data[:-2].decode())
    if not args:
        raise ValueError("empty command")
    return args


def encode(reply: Reply) -> bytes:
    """A reply in RESP2: simple string, integer, bulk string or array."""
    if isinstance(reply, Status):
        return b"+%s\r\n" % reply.encode()
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)
    data = reply.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)
