"""Declare to triage digest: from `/incident declare` to the scenario's diagnostics in the
channel.

A real `firebreak serve` (its own process, on the real Postgres) gets signed slash
commands from the Slack emulator's driver; its `checkout` runs on the fake
Kubernetes API (a deployment, its ReplicaSets and pods, one crash-looping) and
answers a local health endpoint, all in this process. Each declare names checkout
and a deployment failure ("502s after deploy"), so the triage guesses Deployment
failure and runs `deployment`, `history` and `health` side by side. For each
declare: the time from sending the command to its channel being created, to the
declarer's answer (the response_url), to the guess being posted, to the digest
being posted (`chat.postMessage` of "*Triage of …"), and to its last thread reply
(every diagnostic's details). A declare that has not got that far within `--limit`
seconds is counted as missing what it lacks, so a burst that overwhelms the bot
still gives figures: how many channels and digests it made in time.

Two runs: declares one after another (the next sent once the previous digest's
details are in), and a burst sent at the same moment. With `--hang` the cluster
accepts every request and never answers, so `deployment` and `history` take the
whole digest budget (7 s) and report that they could not run.

    .venv/bin/python bench/triage_digest.py                    # Postgres, 30 + 10
    .venv/bin/python bench/triage_digest.py --db sqlite,postgres --declares 50 --burst 20
    .venv/bin/python bench/triage_digest.py --declares 0 --burst 30 --hang
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from common import (
    driver,
    emulator,
    fresh_database,
    git_revision,
    machine,
    ms,
    parse_list,
    percentile,
    serve_process,
    table,
)

from emulator import SlackDriver, Workspace
from emulator.kubernetes import FakeKubernetes, deployment, pod, replicaset
from emulator.models import RESPONSE_URL

OLD, NEW = "registry.example.com/checkout:1.4.1", "registry.example.com/checkout:1.4.2"
# Thread replies: deployment, history and health each have output; with the cluster
# hanging, only health has.
DETAILS, DETAILS_HANGING = 3, 1


@dataclass(frozen=True)
class Timing:
    """Seconds from sending the command to each step; None if not seen within the limit."""

    channel: float | None  # the channel created
    answer: float | None  # the declarer answered (the saga complete)
    guess: float | None  # the guess posted
    digest: float | None  # the digest posted
    details: float | None  # its last thread reply


class Posts:
    """When the emulator made each incident's channel and took its answer, guess, digest
    and thread replies (in these channels only the digest has a thread). Plain dict
    lookups: the waiters poll it, and the emulator and the fake cluster share this
    process's loop."""

    def __init__(self, workspace: Workspace, details: int) -> None:
        self.workspace = workspace
        self.details = details  # thread replies a digest gets
        self.created: dict[str, float] = {}  # channel name -> time
        self.answer: dict[str, float] = {}  # channel -> time
        self.guess: dict[str, float] = {}  # channel -> time
        self.digest: dict[str, float] = {}  # channel -> time
        self.replies: dict[str, list[float]] = {}  # channel -> times
        original: Callable[..., None] = workspace.record_call

        def record(method: str, args: dict[str, Any], error: str | None = None) -> None:
            original(method, args, error)
            if error is not None:
                return
            now, channel, text = time.monotonic(), str(args.get("channel")), str(args.get("text"))
            if method == "conversations.create":
                self.created.setdefault(str(args.get("name")), now)
            elif method == RESPONSE_URL and (linked := re.search(r"<#(\w+)>", text)):
                self.answer.setdefault(linked.group(1), now)
            elif method != "chat.postMessage":
                return
            elif args.get("thread_ts"):
                self.replies.setdefault(channel, []).append(now)
            elif "Looks like" in text:
                self.guess.setdefault(channel, now)
            elif text.startswith("*Triage of"):
                self.digest.setdefault(channel, now)

        workspace.record_call = record  # type: ignore[method-assign]

    def seen(self, title: str, sent: float) -> Timing:
        """How far the declare of `title` got, in seconds since `sent`."""
        slug = title.lower().replace(" ", "-")
        found = [c for c in list(self.workspace.channels.values()) if c.name.endswith(slug)]
        if not found:
            return Timing(None, None, None, None, None)
        channel = found[0]
        replies = self.replies.get(channel.id, [])

        def since(at: float | None) -> float | None:
            return None if at is None else at - sent

        return Timing(
            since(self.created.get(channel.name)),
            since(self.answer.get(channel.id)),
            since(self.guess.get(channel.id)),
            since(self.digest.get(channel.id)),
            since(max(replies) if len(replies) >= self.details else None),
        )


@asynccontextmanager
async def cluster(folder: Path, hang: bool) -> AsyncIterator[Path]:
    """The fake Kubernetes API with checkout deployed; yields its kubeconfig."""
    async with FakeKubernetes() as kube:
        kube.delay = 3600.0 if hang else 0.0
        dep = deployment("checkout", replicas=3, image=NEW, revision=2)
        kube.add(dep, replicaset(dep, 1, OLD, ago=86400), replicaset(dep, 2, NEW, replicas=3))
        kube.add(
            pod("checkout-a", image=NEW, ago=900),
            pod(
                "checkout-b",
                image=NEW,
                ago=300,
                ready=False,
                restarts=7,
                waiting="CrashLoopBackOff",
            ),
        )
        yield kube.write_kubeconfig(folder / "kubeconfig")


@asynccontextmanager
async def health() -> AsyncIterator[str]:
    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application = web.Application()
    application.router.add_get("/health", healthy)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def title(n: int, run: str) -> str:
    return f"checkout 502s after deploy {run} {n:03d}"


async def declare(
    slack: SlackDriver, general: str, posts: Posts, n: int, run: str, limit: float
) -> Timing:
    sent = time.monotonic()
    response = await slack.slash_command("U0ALICE", general, f"declare P2 {title(n, run)}")
    if response.status != 200:
        raise RuntimeError(f"declare refused: HTTP {response.status}")
    while (seen := posts.seen(title(n, run), sent)).details is None:
        if time.monotonic() - sent > limit:
            break
        await asyncio.sleep(0.02)
    return seen


def row(name: str, timings: list[Timing]) -> list[object]:
    def cell(values: list[float | None]) -> str:
        arrived = [v for v in values if v is not None]
        times = f"{ms(percentile(arrived, 50))} / {ms(percentile(arrived, 99))}"
        return times if len(arrived) == len(values) else f"{len(arrived)}: {times}"

    return [
        name,
        len(timings),
        cell([t.channel for t in timings]),
        cell([t.answer for t in timings]),
        cell([t.guess for t in timings]),
        cell([t.digest for t in timings]),
        cell([t.details for t in timings]),
    ]


async def measure(
    db: str, count: int, burst_size: int, limit: float, hang: bool, folder: Path
) -> str:
    with fresh_database(db, folder) as database_url:
        async with (
            emulator() as (slack, general, _),
            cluster(folder, hang) as kubeconfig,
            health() as health_url,
        ):
            targets = folder / "targets.yml"
            targets.write_text(
                "services:\n  checkout:\n    kubernetes: "
                "{namespace: shop, deployment: checkout, selector: app=checkout}\n"
                f'    http: {{health: "{health_url}/health"}}\n'
            )
            posts = Posts(slack.workspace, DETAILS_HANGING if hang else DETAILS)
            serve = serve_process(api_url=slack.api_url, database_url=database_url, folder=folder)
            serve.env.update(KUBECONFIG=str(kubeconfig), FIREBREAK_TARGETS=str(targets))
            await serve.start()
            try:
                signed = driver(serve, slack.workspace)
                one_by_one = [
                    await declare(signed, general, posts, n, "seq", limit) for n in range(count)
                ]
                burst = await asyncio.gather(
                    *(declare(signed, general, posts, n, "burst", limit) for n in range(burst_size))
                )
            finally:
                await serve.stop()
    return table(
        [
            "run",
            "declares",
            "channel",
            "answered",
            "guess",
            "digest",
            "details",
        ],
        [
            *([row(f"{db}: one after another", one_by_one)] if one_by_one else []),
            row(f"{db}: {burst_size} at once" + (", cluster hanging" if hang else ""), list(burst)),
        ],
    )


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; firebreak {git_revision()}")
    print(
        "# declare to triage digest, from sending the command; p50 / p99 in ms, preceded by\n"
        f"# how many got there when not all of them did within {args.limit:.0f} s\n"
    )
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        for db in parse_list(args.db):
            print(
                await measure(db, args.declares, args.burst, args.limit, args.hang, Path(tmp)),
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres", help="sqlite,postgres")
    parser.add_argument("--declares", type=int, default=30, help="one after another")
    parser.add_argument("--burst", type=int, default=10, help="sent at the same moment")
    parser.add_argument("--limit", type=float, default=120, help="seconds a declare is waited")
    parser.add_argument("--hang", action="store_true", help="the cluster never answers")
    asyncio.run(main(parser.parse_args()))
