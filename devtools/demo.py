"""`firebreak demo`: a scripted incident, from an alert to its post-mortem, in a few seconds.

The script is typed into the same session `firebreak shell` runs (devtools.session),
line by line as a person would, so the demo shows what this build of Firebreak
really does. A step that Firebreak answers with its failure reply, or that the
session refuses, is marked and makes the demo exit 1, as does a close that
writes no post-mortem: `make demo` is a check, not only a show.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from devtools.session import Local, Session
from devtools.shell import guarded, log_to, running, say, terminal_style
from handlers.replies import failure_text

# (caption, line typed); a caption starts a new step on screen.
DEMO: tuple[tuple[str, str], ...] = (
    ("Alertmanager fires: checkout's 502 rate is critical", ":alert checkout-5xx"),
    (
        "Alice opens the incident channel: Firebreak guessed the scenario and ran its "
        "diagnostics unasked",
        ":join #incident-",
    ),
    ("Two checklist boxes ticked", ":tick 1 2"),
    ("Bob, paged for checkout, acknowledges in PagerDuty and takes command", ":ack"),
    ("Carol handles communication", "/incident comms @carol"),
    ("Bob reports; Carol answers in a thread", ":as bob"),
    ("", "502s started right after the checkout 1.4.2 deploy"),
    ("", ":as carol"),
    ("", ":reply The new pods are crash-looping: OOMKilled"),
    ("Alice marks Bob's finding for the timeline", ":as alice"),
    ("", ":react pushpin"),
    ("Escalated to P0, cause identified", "/incident severity P0"),
    ("", "/incident status identified"),
    ("Carol tells customers: a preview, then Publish", ":as carol"),
    ("", "/incident statuspage identified"),
    ("", ":click 3"),
    ("", ":as alice"),
    ("Diagnostics from the simulated cluster", "/incident diag pods checkout"),
    ("", "/incident diag metrics checkout since=2h"),
    ("Checkout's cart cache, in Redis", "/incident diag redis checkout"),
    (
        "The backend checkout calls runs on a Docker Compose host",
        "/incident diag containers backend",
    ),
    ("Alice proposes the rollback the triage offered; Bob confirms its dry run", ":click 2"),
    ("", ":as bob"),
    ("", ":click 3"),
    ("", ":as alice"),
    ("A status update", "/incident update Rolled back checkout to 1.4.1; error rate falling"),
    ("16 minutes pass without another update", ":wait 16m"),
    ("Monitoring, then resolved", "/incident status monitoring"),
    ("", "/incident resolve Rolled back the bad 1.4.2 deploy; 502s stopped"),
    ("The post-mortem", "/incident close"),
)


Script = Sequence[tuple[str, str]]


async def _demo(out: Path, script: Script = DEMO) -> int:
    style = terminal_style()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="firebreak-demo-") as workdir:
        work = Path(workdir)
        env = {"FIREBREAK_POSTMORTEM_DIR": str(out)}
        async with running(work / "demo.db", work, **env) as local:
            say(
                style.bold("Firebreak demo")
                + f" — a scripted incident; kubernetes: {local.kubernetes}"
            )
            session = Session(local, say, _no_answers, style)
            failed = []
            for caption, line in script:
                if caption:
                    say("\n" + style.bold(f"━━ {caption}"))
                say(style.dim(session.prompt) + line)
                replies = len(local.workspace.ephemerals(session.user))
                warnings = session.warnings
                await session.handle(line)
                if session.warnings > warnings or _failed(local, session.user, replies):
                    say(style.warn(f"✗ step failed: {line}"))
                    failed.append(line)
            path = _postmortem(local, out, started)
    say("")
    if path is not None:
        say(style.bold(f"Post-mortem: {path}"))
    else:
        say(style.warn("✗ no post-mortem was written"))
    if failed:
        say(style.warn(f"✗ {len(failed)} of {len(script)} steps failed: {'; '.join(failed)}"))
    return 1 if failed or path is None else 0


async def _no_answers(prompt: str) -> str | None:
    """The demo never opens a modal; if one opens anyway, it is cancelled."""
    return None


def _failed(local: Local, user: str, before: int) -> bool:
    """Whether Firebreak's generic failure reply came among the user's new ephemerals."""
    fresh = local.workspace.ephemerals(user)[before:]
    return any(e["text"] == failure_text(Exception()) for e in fresh)


def _postmortem(local: Local, out: Path, since: float) -> Path | None:
    """The post-mortem `/incident close` wrote or uploaded during this run, if any."""
    written = [
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix != ".log" and p.stat().st_mtime >= since
    ]
    if written:  # the Markdown one when there are several (e.g. .md and .json)
        return max(written, key=lambda p: (p.suffix == ".md", p.stat().st_mtime))
    uploads = [f for f in local.workspace.files.values() if f.data and "post" in f.name.lower()]
    if uploads:
        path = out / uploads[-1].name
        path.write_bytes(uploads[-1].data or b"")
        return path
    return None


def run_demo(argv: Sequence[str]) -> int:
    """`firebreak demo`: a scripted incident, from an alert to its post-mortem, in a few seconds."""
    parser = argparse.ArgumentParser(
        prog="firebreak demo",
        description="Play a scripted incident from declaration to post-mortem in a few seconds.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("postmortems"), help="where the post-mortem goes"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log_to(args.out / "firebreak-demo.log")
    return guarded(_demo(args.out))


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1:]))
