"""One person at a Slack client, typing into the emulated Slack.

What a line typed into `firebreak shell` does: a slash command or an
interaction sent to Firebreak the way Slack sends it, a chat message posted
as the current user, or a shell command (`:join`, `:tick`, `:wait`…); then
whatever changed is printed and any modal opened for the user is filled in.
It reads and prints only through `ask` and `say`, and knows nothing of how
the bot was started, so `firebreak shell` (devtools.shell) drives it from the
terminal and `firebreak demo` (devtools.demo) from a script, and both show
the same thing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from app.wiring import Firebreak
from bot.clock import OffsetClock
from bot.durations import format_duration, parse_duration
from devtools import console, prompts
from devtools.prompts import Ask, Say
from devtools.text import Style, user_name
from emulator import SlackDriver, Workspace
from emulator.alerts import example, names
from emulator.api import ApiError
from emulator.composer import encode
from emulator.pagerduty import PagerDutyEmulator

# The people at the emulated Slack: devtools.shell seeds them, `:as` switches between them.
USERS = (
    ("U0ALICE", "alice", "Alice Example"),
    ("U0BOB", "bob", "Bob Example"),
    ("U0CAROL", "carol", "Carol Example"),
)
SHOWN_ON_JOIN = 15
# `:wait` moves time in steps this small, so reminders go out when due, not late.
WAIT_STEP = timedelta(seconds=30)
ALERT_AGE = timedelta(minutes=3)  # how long an example alert has been firing when sent

HELP = """\
Type what you would type in Slack:
  /incident declare P1 api down   a slash command (`/incident help` lists them all)
  anything else                   a chat message in the current channel
  @bob, #general                  mentions, sent the way Slack sends them
Shell commands:
  :tick N [N…]    tick or untick checklist box N      :click N      press button (N)
  :reply [M] text reply in the thread of message [M] (default: the latest)
  :react [M] name add a reaction, e.g. :react pushpin
  :as NAME        act as another user (alice, bob, carol)
  :join #channel  switch channel (a prefix works: :join #incident)
  :channels       list channels      :history [N]  show the channel (last N messages)
  :wait 15m       let time pass (update reminders fall due)
  :alert NAME [resolved]  fire (or resolve) a bundled example alert, as Alertmanager would
  :ack            the paged on-call acknowledges in PagerDuty (:pd-resolve resolves there)
  :help           this help          :quit         leave (also Ctrl-D)"""


@dataclass
class Local:
    """The running pieces of one local session, as devtools.shell starts them.

    Defined here, with the Session that uses them, so that the session does not
    depend on how they were started.
    """

    workspace: Workspace
    driver: SlackDriver
    app: Firebreak
    clock: OffsetClock
    kubernetes: str  # where Kubernetes actions go, for the banner
    alerts_url: str = ""  # Firebreak's /alerts endpoints, for `:alert`
    alert_token: str = ""
    pagerduty: PagerDutyEmulator | None = None  # the fake, for `:ack` and `:pd-resolve`


class Session:
    """One person at a Slack client: who they are, which channel is open, what they saw."""

    def __init__(self, local: Local, say: Say, ask: Ask, style: Style) -> None:
        self.local = local
        self.ws = local.workspace
        self.say = say
        self.ask = ask
        self.style = style
        self.user = USERS[0][0]
        general = self.ws.channel_by_name("general")
        assert general is not None
        self.channel = general.id
        self.seen = console.snapshot(self.ws, self.user, self.channel, style)
        self.prompted: set[str] = set()  # view id + hash already asked for
        self.alert_starts: dict[str, datetime] = {}  # example alert -> when it started
        self.alert_resolved: set[str] = set()
        self.warnings = 0  # lines refused or failed so far (the demo fails on any)

    @property
    def prompt(self) -> str:
        name = user_name(self.ws, self.user)
        return f"{name}@#{self.ws.channels[self.channel].name}> "

    async def handle(self, line: str) -> bool:
        """Run one typed line and print what changed; False once the user quits."""
        line = line.strip()
        keep_going = True
        try:
            if line.startswith(":"):
                name, _, rest = line[1:].partition(" ")
                keep_going = await self._shell_command(name, rest)
            elif line.startswith("/"):
                await self._slash(line)
            elif line:
                self._chat(line)
        except ValueError as exc:
            self.warn(str(exc))
        except ApiError as exc:  # what Slack itself refuses, e.g. a reaction given twice
            self.warn(f"Slack says: {exc.args[0]}")
        await self.settle()
        return keep_going

    def warn(self, text: str) -> None:
        self.warnings += 1
        self.say(self.style.warn(text))

    async def settle(self) -> None:
        """Wait for Firebreak's background work, show what is new, answer open modals."""
        await self.local.app.background.drain()
        self.show_changes()
        await self._modals()

    def show_changes(self) -> None:
        for line in console.changes(self.ws, self.seen, self.style):
            self.say(line)
        self.look()

    def look(self) -> None:
        """Remember everything currently visible as seen."""
        self.seen = console.snapshot(self.ws, self.user, self.channel, self.style)

    async def _slash(self, line: str) -> None:
        command, _, text = line.partition(" ")
        if command != "/incident":
            raise ValueError(f"{command} is not installed here; Firebreak provides /incident.")
        response = await self.local.driver.slash_command(
            self.user, self.channel, text.strip(), command
        )
        if response.status != 200:
            self.warn(f"{command} failed: Firebreak answered HTTP {response.status}")

    def _chat(self, text: str) -> None:
        self._must_be_member()
        self.ws.post_as_user(self.channel, self.user, encode(self.ws, text))

    def _must_be_member(self) -> None:
        if self.user not in self.ws.channels[self.channel].members:
            name = self.ws.channels[self.channel].name
            raise ValueError(f"You are not in #{name}; :join #{name} first.")

    async def _shell_command(self, name: str, rest: str) -> bool:
        rest = rest.strip()
        if name in ("quit", "q", "exit"):
            return False
        actions: dict[str, Callable[[str], Awaitable[None]]] = {
            "help": self._help,
            "as": self._as,
            "join": self._join,
            "channels": self._channels,
            "history": self._history,
            "tick": self._tick,
            "click": self._click,
            "reply": self._reply,
            "react": self._react,
            "wait": self._wait,
            "alert": self._alert,
            "ack": self._pagerduty("acknowledge"),
            "pd-resolve": self._pagerduty("resolve"),
        }
        if name not in actions:
            raise ValueError(f"Unknown shell command :{name}. Type :help.")
        await actions[name](rest)
        return True

    async def _help(self, _: str) -> None:
        self.say(HELP)

    async def _as(self, name: str) -> None:
        names = ", ".join(n for _, n, _ in USERS)
        user = next((u for u, n, _ in USERS if n == name.lstrip("@").lower()), None)
        if user is None:
            raise ValueError(f"Act as one of: {names}.")
        self.user = user
        channel = self.ws.channels[self.channel]
        note = "" if user in channel.members else f" (not a member of #{channel.name})"
        self.say(self.style.bold(f"You are now {name.lstrip('@').lower()}{note}."))
        self.look()

    async def _join(self, name: str) -> None:
        wanted = name.strip().lstrip("#").lower()
        matches = [c for c in self.ws.channels.values() if c.name.startswith(wanted) and wanted]
        channel = self.ws.channel_by_name(wanted) or (matches[-1] if matches else None)
        if channel is None or (channel.is_private and self.user not in channel.members):
            raise ValueError(f"No channel #{wanted}. :channels lists them.")
        if self.user not in channel.members:
            channel.members.append(self.user)
            self.ws.system_message(
                channel, "channel_join", self.user, f"<@{self.user}> has joined the channel"
            )
        self.channel = channel.id
        for line in console.render_history(
            self.ws, channel.id, self.user, self.style, last=SHOWN_ON_JOIN
        ):
            self.say(line)
        self.look()

    async def _channels(self, _: str) -> None:
        for line in console.render_channels(self.ws, self.user, self.channel, self.style):
            self.say(line)

    async def _history(self, count: str) -> None:
        last = int(count) if count.isdigit() else None
        for line in console.render_history(self.ws, self.channel, self.user, self.style, last=last):
            self.say(line)
        self.look()

    def _control(self, kind: str, number: str) -> console.Control:
        found = [c for c in console.controls(self.ws, self.channel, self.user) if c.kind == kind]
        chosen = next((c for c in found if str(c.number) == number.strip()), None)
        if chosen is None:
            what = f"1-{len(found)}" if found else "none here"
            raise ValueError(f"No {kind} {number.strip() or '?'} in this channel ({what}).")
        return chosen

    async def _tick(self, numbers: str) -> None:
        for number in numbers.split() or [""]:
            box = self._control("checkbox", number)
            group = [
                c
                for c in console.controls(self.ws, self.channel, self.user)
                if (c.message_ts, c.action_id) == (box.message_ts, box.action_id)
            ]
            selected = [c.value for c in group if c.checked != (c.number == box.number)]
            response = await self.local.driver.toggle_checkbox(
                self.user,
                self.channel,
                box.message_ts,
                box.action_id,
                selected,
                block_id=box.block_id,
            )
            self._check_handled(response.status, f"checkbox {number}")
            await self.local.app.background.drain()  # the next tick sees the updated message

    async def _click(self, number: str) -> None:
        button = self._control("button", number)
        response = await self.local.driver.click_button(
            self.user,
            self.channel,
            button.message_ts,
            button.action_id,
            button.value,
            block_id=button.block_id,
        )
        self._check_handled(response.status, f"button ({number.strip()})")

    def _check_handled(self, status: int, what: str) -> None:
        if status == 404:
            self.warn(f"Nothing in Firebreak handles {what} yet.")
        elif status != 200:
            self.warn(f"{what} failed: Firebreak answered HTTP {status}")

    def _message(self, rest: str) -> tuple[str, str]:
        """`[M] text`: message M (default the latest top-level one) and the rest."""
        messages = console.top_level(self.ws, self.channel)
        first, _, tail = rest.partition(" ")
        if first.isdigit():
            if not 1 <= int(first) <= len(messages):
                raise ValueError(f"No message [{first}] in this channel.")
            return messages[int(first) - 1]["ts"], tail.strip()
        if not messages:
            raise ValueError("There is no message here yet.")
        return messages[-1]["ts"], rest

    async def _reply(self, rest: str) -> None:
        self._must_be_member()
        ts, text = self._message(rest)
        if not text:
            raise ValueError("Usage: :reply [M] text")
        self.ws.post_as_user(self.channel, self.user, encode(self.ws, text), thread_ts=ts)

    async def _react(self, rest: str) -> None:
        self._must_be_member()
        ts, name = self._message(rest)
        if not name:
            raise ValueError("Usage: :react [M] emoji, e.g. :react pushpin")
        self.ws.add_reaction(self.channel, ts, name.strip(": "), self.user)

    def _pagerduty(self, what: str) -> Callable[[str], Awaitable[None]]:
        """Act in the PagerDuty fake as the on-call of its latest open incident would."""

        async def act(_: str) -> None:
            fake = self.local.pagerduty
            if fake is None:
                raise ValueError("PagerDuty is the real one here ($PAGERDUTY_API_TOKEN is set).")
            open_ = [i for i in fake.state.incidents.values() if i["status"] != "resolved"]
            if not open_:
                raise ValueError("No open PagerDuty incident: page someone first.")
            incident = open_[-1]
            on_call = incident["assignments"][0]["assignee"]["id"]
            await getattr(fake, what)(incident["id"], on_call)
            await self.local.app.background.drain()

        return act

    async def _wait(self, text: str) -> None:
        """Move both clocks on in small steps, sending reminders as they fall due,
        as the scheduler would have had the time really passed."""
        delta = parse_duration(text or "?")
        services = self.local.app.services
        # Feature-detected, so the shell runs on builds without update reminders.
        send_due = getattr(getattr(services, "reminders", None), "send_due", None)
        end = self.local.clock.now() + delta
        self.say(self.style.dim(f"⏩ {format_duration(delta)} later: {end:%H:%M} UTC"))
        while (left := end - self.local.clock.now()) > timedelta():
            step = min(left, WAIT_STEP) if send_due else left
            self.local.clock.advance(step)
            self.ws.advance_clock(step.total_seconds())
            if send_due is not None:
                await send_due()
        await services.incidents.resume_unfinished()

    async def _alert(self, rest: str) -> None:
        """POST a bundled example alert to Firebreak the way Alertmanager does."""
        name, _, status = rest.partition(" ")
        status = status.strip() or "firing"
        if status not in ("firing", "resolved"):
            raise ValueError("Usage: :alert NAME [resolved]")
        if not name:
            raise ValueError(f"Usage: :alert NAME [resolved]; NAME is one of {', '.join(names())}.")
        # Started a few minutes ago the first time; a resolve keeps that start.
        start = self.alert_starts.setdefault(name, self.local.clock.now() - ALERT_AGE)
        if status == "firing" and name in self.alert_resolved:
            start = self.alert_starts[name] = self.local.clock.now()  # firing again
        self.alert_resolved.discard(name)
        if status == "resolved":
            self.alert_resolved.add(name)
        body = example(name, start, status)
        headers = {"Authorization": f"Bearer {self.local.alert_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.local.alerts_url}/alertmanager", json=body, headers=headers) as r,
        ):
            answer = await r.json(content_type=None)
        if r.status != 202:
            self.warn(f"Firebreak answered HTTP {r.status}: {answer.get('error')}")
        else:
            self.say(self.style.dim(f"⚡ Alertmanager sent {name} ({status})"))

    async def _modals(self) -> None:
        """Ask for each input of a modal opened for the user, then press its submit button."""
        while views := self.ws.open_views(self.user):
            view = views[-1]
            key = f"{view['id']}:{view['hash']}"
            if key in self.prompted:
                return
            self.prompted.add(key)
            values = await prompts.fill(self.ws, view, self.say, self.ask, self.style)
            if values is None:
                self.ws.views[view["id"]].is_open = False  # the user pressed Cancel
                self.say(self.style.dim("└ closed"))
                return
            response = await self.local.driver.submit_view(self.user, view["id"], values)
            body = response.body if isinstance(response.body, dict) else {}
            if body.get("response_action") == "errors":
                for block_id, error in body.get("errors", {}).items():
                    self.warn(f"│ {block_id}: {error}")
                self.prompted.discard(key)
            else:
                self.say(self.style.dim("└ submitted"))
            await self.local.app.background.drain()
            self.show_changes()
