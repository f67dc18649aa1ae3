"""Engine, sessions, and running synchronous database work off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database could not be reached; the user should try again."""


def normalise_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` as psycopg 3 URLs.

    SQLAlchemy would otherwise pick psycopg2, which we do not ship.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class DatabaseSetupError(Exception):
    """The database named by DATABASE_URL can't be used at start-up; one line, no password."""


def describe(url: str) -> str:
    """Where a URL points, for messages: host, port and database, never the credentials."""
    try:
        parsed = make_url(normalise_url(url))
    except (ArgumentError, ValueError):
        return "an unparsable DATABASE_URL"
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database}" if parsed.database else "in-memory sqlite"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def failure_reason(url: str, exc: BaseException) -> str:
    """Why connecting failed, in one line: the driver's own words, minus the boilerplate
    (`connection to server at …, port … failed:`) that repeats the host, and minus the
    password should a driver ever echo it."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    first = message.splitlines()[0] if message else type(exc).__name__
    reason = first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    try:
        password = make_url(normalise_url(url)).password
    except (ArgumentError, ValueError):
        password = None
    return reason.replace(str(password), "***") if password else reason


def make_engine(url: str, connect_timeout: int = 5) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        connect_args={"connect_timeout": connect_timeout},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run during a write; the busy timeout makes concurrent
    # writers (threads, or a second process) wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """The one way services touch the database.

    Services are async but SQLAlchemy sessions here are synchronous, so each
    unit of work runs in a worker thread (`run`) and never blocks the loop.
    """

    def __init__(self, engine: Engine, timeout: float = 15.0, threads: int = 2) -> None:
        self.engine = engine
        # Few threads on purpose: the queries are short, and every extra thread is one
        # more contender for the GIL that the acks (another thread) need promptly.
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="firebreak-db")
        # How long one unit of work may take before the caller is told the database is
        # unavailable. connect_timeout covers a server that does not answer a new
        # connection; this covers one that stops answering on an open one (stuck on
        # I/O, a network dropping packets), where a query would otherwise wait forever.
        self.timeout = timeout
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._closed = False
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, psycopg.OperationalError):
                message = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
                raise DatabaseUnavailable(message[0]) from exc
            raise
        except PoolTimeout as exc:  # every connection is taken, e.g. by abandoned work
            raise DatabaseUnavailable("no database connection free") from exc

    async def run(self, work: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `work(session, *args, **kwargs)` in one transaction, off the loop."""
        return await self.run_within(self.timeout, work, *args, **kwargs)

    async def run_within(
        self, timeout: float, work: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """`run`, given up (and not committed) after `timeout` seconds instead of the default."""
        abandoned = threading.Event()

        def in_thread() -> T:
            with self.transaction() as session:
                result = work(session, *args, **kwargs)
                if abandoned.is_set():  # the caller was told it failed: do not commit
                    raise DatabaseUnavailable("gave up waiting for the database")
                return result

        if self._closed:
            raise DatabaseUnavailable("Firebreak is shutting down")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, contextvars.copy_context().run, in_thread)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if not done:
            # The thread cannot be stopped; it rolls back when its query ends (a restart
            # drops the connection). Shutting down does not wait for it.
            abandoned.set()
            self._in_flight.discard(future)
            future.add_done_callback(_consume)
            raise DatabaseUnavailable(f"no answer from the database in {timeout:g}s")
        return future.result()

    async def ping(self, timeout: float = 3.0) -> bool:
        def probe() -> None:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout)
        except Exception:
            return False
        return True

    async def close(self, *, dispose: bool = True) -> None:
        """Refuse new work, let running work finish, then close every connection.

        `dispose=False` leaves the engine's connections to another `Database` sharing it.
        """
        self._closed = True
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=self.timeout)
        if dispose:
            self.engine.dispose()
        self._threads.shutdown(wait=False)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned unit of work's outcome, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
