"""How long compiling a post-mortem takes, and its peak memory, for 1k, 10k and 50k messages.

The fake Slack serves the history over loopback HTTP (200 messages a page,
one `conversations.replies` call a thread), so the time includes the
emulator answering in the same process. Memory is traced from just before
the compile (the seeded workspace is not counted): it is what the reader,
the compiler and the Markdown renderer hold at their peak, plus the page
the emulator is building at that moment. The emulator's own share of the
time (its handlers scan the whole channel on every call) is shown apart.

    .venv/bin/python bench/postmortem.py            # 1000 10000 50000
    .venv/bin/python bench/postmortem.py 2000       # any sizes
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.postmortem.compiler import compile_document
from bot.postmortem.render import PostmortemTemplate
from emulator import SlackEmulator, Workspace
from handlers.slack_gateway import SlackGateway, make_client
from runbooks import BUNDLED
from storage.models import Incident

TOKEN = "xoxb-bench"
PEOPLE = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE")
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
THREAD_EVERY, REPLIES = 40, 4  # a 4-reply thread on every 40th message: about 9% replies


def seeded(messages: int) -> tuple[Workspace, str]:
    """A channel holding `messages` messages in all, replies included."""
    seconds = itertools.count()
    workspace = Workspace(clock=lambda: START.timestamp() + next(seconds))
    for user in PEOPLE:
        workspace.add_user(user, user[2:].lower())
    channel = workspace.add_channel("incident-bench", members=[*PEOPLE, workspace.bot_user_id])
    people = itertools.cycle(PEOPLE)
    posted, n = 0, 0
    while posted < messages:
        text = f"message {n}: " + "the checkout latency is still climbing " * (n % 3 + 1)
        ts = workspace.post_as_user(channel.id, next(people), text)["ts"]
        posted, n = posted + 1, n + 1
        for r in range(REPLIES if n % THREAD_EVERY == 0 else 0):
            if posted < messages:
                workspace.post_as_user(channel.id, next(people), f"reply {r}", ts)
                posted += 1
    return workspace, channel.id


async def compile_once(api_url: str, channel: str, template: PostmortemTemplate) -> str:
    incident = Incident(
        id=1,
        title="bench",
        description="",
        severity="P1",
        status="resolved",
        declared_by="U0ALICE",
        declared_at=START,
        channel_id=channel,
        channel_name="incident-bench",
    )
    gateway = SlackGateway(make_client(TOKEN, api_url))
    document = await compile_document(gateway, incident, [], generated_at=START)
    return template.markdown(document)


@dataclass
class Result:
    messages: int
    seconds: float
    emulator_seconds: float
    peak_mib: float
    markdown_mib: float


def timed(call: Callable[..., dict[str, Any]], spent: list[float]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    return wrapper


async def measure(messages: int) -> Result:
    workspace, channel = seeded(messages)
    spent = [0.0]
    workspace.call = timed(workspace.call, spent)  # type: ignore[method-assign]
    template = PostmortemTemplate(BUNDLED / "templates")
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        started = time.perf_counter()
        markdown = await compile_once(emulator.api_url, channel, template)
        elapsed, in_emulator = time.perf_counter() - started, spent[0]
        tracemalloc.start()
        await compile_once(emulator.api_url, channel, template)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Result(messages, elapsed, in_emulator, peak / 2**20, len(markdown.encode()) / 2**20)


def main(sizes: list[int]) -> None:
    print("messages   compile  (of which the fake Slack)  peak memory  markdown")
    for size in sizes:
        r = asyncio.run(measure(size))
        print(
            f"{r.messages:>8,}  {r.seconds:>7.2f}s  ({r.emulator_seconds:>6.2f}s)"
            f"                {r.peak_mib:>6.1f} MiB  {r.markdown_mib:>4.1f} MiB"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000, 10_000, 50_000])
