"""What every fake server shares: its aiohttp app served on a loopback port.

The fakes stand at the process boundary, so tests, the shell and the demo reach them
over real HTTP; each subclass says only which routes it answers (`build`).
"""

from __future__ import annotations

import socket
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Serves `build()` on 127.0.0.1, on an ephemeral port unless one is given;
    `start`/`stop`, or `async with`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    def build(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._runner = web.AppRunner(self.build(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"
