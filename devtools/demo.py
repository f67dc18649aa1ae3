"""`firebreak demo`: a scripted incident, declared to post-mortem, in a few seconds.

The script is typed into the same session `firebreak shell` runs (devtools.session),
line by line as a person would, so the demo shows what this build of Firebreak
really does. Steps it does not handle yet are marked as such instead of failing
the demo, and when no post-mortem is compiled the incident's event timeline is
written in its place, so the demo always ends with a file to read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from devtools.session import Local, Session
from devtools.shell import guarded, log_to, running, say, terminal_style
from handlers.replies import failure_text
from storage.models import Event, Incident

# (caption, line typed); a caption starts a new step on screen.
DEMO: tuple[tuple[str, str], ...] = (
    ("Alice declares a P1 from #general", "/incident declare P1 Checkout API returning 502s"),
    ("She opens the incident channel Firebreak created", ":join #incident-"),
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
    ("", ":click 1"),
    ("", ":as alice"),
    ("Diagnostics from the simulated cluster", "/incident diag pods checkout"),
    ("A status update", "/incident update Rolled back checkout to 1.4.1; error rate falling"),
    ("16 minutes pass without another update", ":wait 16m"),
    ("Monitoring, then resolved", "/incident status monitoring"),
    ("", "/incident resolve Rolled back the bad 1.4.2 deploy; 502s stopped"),
    ("The post-mortem", "/incident close"),
)


async def _demo(out: Path) -> int:
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
            for caption, line in DEMO:
                if caption:
                    say("\n" + style.bold(f"━━ {caption}"))
                say(style.dim(session.prompt) + line)
                replies = len(local.workspace.ephemerals(session.user))
                await session.handle(line)
                if _failed(local, session.user, replies):
                    say(style.dim("   (not available in this build of Firebreak)"))
            path, compiled = await _postmortem(local, out, started)
    say("")
    if compiled:
        say(style.bold(f"Post-mortem: {path}"))
    else:
        say(style.dim("/incident close is not wired yet, so no post-mortem was compiled."))
        say(style.bold(f"Timeline: {path}"))
    return 0


async def _no_answers(prompt: str) -> str | None:
    """The demo never opens a modal; if one opens anyway, it is cancelled."""
    return None


def _failed(local: Local, user: str, before: int) -> bool:
    """Whether Firebreak's generic failure reply came among the user's new ephemerals."""
    fresh = local.workspace.ephemerals(user)[before:]
    return any(e["text"] == failure_text(Exception()) for e in fresh)


async def _postmortem(local: Local, out: Path, since: float) -> tuple[Path, bool]:
    """The post-mortem `/incident close` wrote or uploaded, else the event timeline."""
    written = [
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix != ".log" and p.stat().st_mtime >= since
    ]
    if written:  # the Markdown one when there are several (e.g. .md and .json)
        return max(written, key=lambda p: (p.suffix == ".md", p.stat().st_mtime)), True
    uploads = [f for f in local.workspace.files.values() if f.data and "post" in f.name.lower()]
    if uploads:
        path = out / uploads[-1].name
        path.write_bytes(uploads[-1].data or b"")
        return path, True
    return await _write_timeline(local, out), False


async def _write_timeline(local: Local, out: Path) -> Path:
    """The incident's event log, read from the database: the post-mortem's raw material."""

    def read(session):  # type: ignore[no-untyped-def]
        incident = session.scalars(select(Incident).order_by(Incident.id.desc())).first()
        events = session.scalars(
            select(Event).where(Event.incident_id == incident.id).order_by(Event.id)
        )
        return incident.id, incident.title, [(e.at, e.type, e.actor, e.payload) for e in events]

    incident_id, title, events = await local.app.services.db.run(read)
    names = {u["id"]: u["name"] for u in local.workspace.users.values()}
    lines = [f"# Incident #{incident_id} timeline: {title}", ""]
    for at, kind, actor, payload in events:
        details = ", ".join(f"{k}={names.get(str(v), v)}" for k, v in payload.items() if v)
        lines.append(f"- {at:%H:%M:%S} **{kind}** by {names.get(actor, actor)}: {details}")
    path = out / f"incident-{incident_id}-timeline.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_demo(argv: Sequence[str]) -> int:
    """`firebreak demo`: a scripted incident, declare to post-mortem, in a few seconds."""
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
