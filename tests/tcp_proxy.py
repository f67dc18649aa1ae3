"""A small asyncio TCP forwarder that a test can cut, freeze and restore.

It stands between Firebreak and a real server (Postgres, the fake Kubernetes
API) so a test can play an outage without touching the shared server:

- `cut()`: every proxied connection is closed and new ones are refused, as
  when Postgres restarts or its host goes away;
- `hold()`: connections are accepted but never answered, as a server that is
  starting up, or a firewall that swallows packets;
- `freeze()`: live connections stop carrying bytes (and new ones are held), as
  a server stuck on I/O, or a network that drops packets;
- `restore()`: what was held or frozen is closed (a restart drops it) and
  forwarding resumes on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any


class TcpProxy:
    """Listens on 127.0.0.1:`port` and forwards to `upstream_host`:`upstream_port`.

    It runs its own event loop in a thread, so it keeps forwarding while the test's loop
    is blocked in synchronous database work (a migration, a `create_engine` query).
    The control methods are coroutines for the test's loop.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._port = port
        self._server: asyncio.Server | None = None
        self._mode = "forward"  # forward | hold
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted since start, for assertions

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._thread.start()
        await self._run(self._start())

    async def stop(self) -> None:
        await self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults ------------------------------------------------------------------

    async def cut(self) -> None:
        """Close every proxied connection and refuse new ones until `restore()`."""
        await self._run(self._cut())

    async def hold(self) -> None:
        """Close every proxied connection; accept new ones but never answer them."""
        await self._run(self._hold())

    async def freeze(self) -> None:
        """Stop carrying bytes on every connection, old and new, until `restore()`."""
        await self._run(self._freeze())

    async def restore(self) -> None:
        """Drop whatever was held or frozen and forward again on the same port."""
        await self._run(self._restore())

    # -- on the proxy's own loop -------------------------------------------------

    async def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _stop(self) -> None:
        await self._close_listener()
        self._drop_connections()
        assert self._flowing is not None
        self._flowing.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _cut(self) -> None:
        await self._close_listener()
        self._drop_connections()

    async def _hold(self) -> None:
        self._drop_connections()
        self._mode = "hold"
        if self._server is None:
            await self._listen()

    async def _freeze(self) -> None:
        assert self._flowing is not None
        self._mode = "hold"
        self._flowing.clear()

    async def _restore(self) -> None:
        assert self._flowing is not None
        self._drop_connections()
        self._mode = "forward"
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _drop_connections(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                # An abortive close (RST), the way a dying server's kernel ends it.
                transport = writer.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
                else:
                    writer.close()
        self._writers.clear()

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        if self._mode == "hold":
            return  # keep it open, say nothing; `restore()` or `cut()` drops it
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self._track(self._pump(reader, up_writer, writer))
        self._track(self._pump(up_reader, writer, up_writer))

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                if sink not in self._writers:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (sink, other):
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()
