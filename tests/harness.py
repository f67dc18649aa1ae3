"""Firebreak served over real HTTP on loopback, talking to the Slack emulator.

Nothing of ours is mocked: the driver signs requests as Slack does, the Bolt
app answers them, and the real slack_sdk client calls the emulator through
SLACK_API_URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from app.wiring import Firebreak, create_app
from bot.actions import Executors
from bot.clock import Clock
from bot.config import load_settings
from emulator import AppResponse, SlackDriver, SlackEmulator, Workspace
from emulator.models import Channel
from storage.migrate import upgrade_database

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
BOT_TOKEN = "xoxb-test-token"
ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "test-signing-secret"


@dataclass
class Harness:
    emulator: SlackEmulator
    workspace: Workspace
    driver: SlackDriver
    app: Firebreak
    general: str  # channel ID of #general
    announce: str  # channel ID of #incidents

    async def command(
        self, text: str, *, user: str = ALICE, channel: str | None = None, **kw: Any
    ) -> AppResponse:
        response = await self.driver.slash_command(user, channel or self.general, text, **kw)
        await self.settle()
        return response

    async def settle(self) -> None:
        await self.app.background.drain()

    def incident_channels(self) -> list[Channel]:
        return [c for c in self.workspace.channels.values() if c.name.startswith("incident-")]

    def only_incident_channel(self) -> Channel:
        channels = self.incident_channels()
        assert len(channels) == 1, [c.name for c in channels]
        return channels[0]

    def ephemeral_texts(self, user: str = ALICE) -> list[str]:
        return [str(e.get("text", "")) for e in self.workspace.ephemerals(user)]

    def texts(self, channel_id: str) -> list[str]:
        return [str(m.get("text", "")) for m in self.workspace.messages(channel_id)]

    def checklists(self, channel_id: str) -> list[dict[str, Any]]:
        """The checklist messages in a channel (there should be one)."""
        return [
            m
            for m in self.workspace.messages(channel_id)
            if any(b.get("block_id") == "checklist-intro" for b in m.get("blocks", []))
        ]


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "manifest.yml").read_text()))


def manifest_events() -> list[str]:
    """The bot events the app subscribes to, as the manifest lists them."""
    return list(manifest()["settings"]["event_subscriptions"]["bot_events"])


def seeded_workspace() -> Workspace:
    workspace = Workspace()
    workspace.add_user(ALICE, "alice", real_name="Alice Example", email="alice@example.com")
    workspace.add_user(BOB, "bob", real_name="Bob Example", email="bob@example.com")
    workspace.add_user(CAROL, "carol", real_name="Carol Example", email="carol@example.com")
    return workspace


@asynccontextmanager
async def running_firebreak(
    database_url: str,
    *,
    clock: Clock | None = None,
    executors: Executors | None = None,
    role: str = "all",
    events: bool = False,
    app_token: str | None = None,
    **env: str,
) -> AsyncIterator[Harness]:
    """With `events`, the emulator delivers the manifest's bot events to the app."""
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, BOB, CAROL, workspace.bot_user_id])
    announce = workspace.add_channel("incidents", members=[ALICE, BOB])
    async with SlackEmulator(
        bot_token=BOT_TOKEN, workspace=workspace, app_token=app_token
    ) as emulator:
        settings = load_settings(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": emulator.api_url,
                "DATABASE_URL": database_url,
                **env,
            }
        )
        upgrade_database(database_url)
        app = create_app(settings, clock=clock, executors=executors, role=role)
        runner = web.AppRunner(app.web)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, workspace)
        if events:
            emulator.events.subscribe(
                manifest_events(), request_url=driver.app_url, signing_secret=SIGNING_SECRET
            )
        try:
            yield Harness(emulator, workspace, driver, app, general.id, announce.id)
        finally:
            await runner.cleanup()
