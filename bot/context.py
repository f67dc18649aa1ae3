"""What every service talks through: the database, Slack, the runbooks and the clock.

Built once by the composition root (`bot/services.py`) and handed to each service,
so a service's constructor lists only what is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.gateway import ChatGateway
from bot.runbooks import Runbooks
from storage.db import Database

# Hands work over to the app's background work (handlers/background.py): it runs on the
# app's loop, tracked, its failures logged, without the caller waiting for it.
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True)
class Context:
    db: Database
    chat: ChatGateway
    runbooks: Runbooks
    clock: Clock


class Service:
    """Base of the services: the context's parts, where every method reaches them."""

    def __init__(self, context: Context) -> None:
        self._db = context.db
        self._chat = context.chat
        self._runbooks = context.runbooks
        self._clock = context.clock
