"""`firebreak serve` in Socket Mode (SLACK_APP_TOKEN set, no signing secret): commands arrive
over the emulator's WebSocket instead of signed HTTP, and are acked and carried out the same
way."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from emulator import SlackEmulator, payloads
from runbooks import BUNDLED
from tests.harness import ALICE, BOT_TOKEN, seeded_workspace
from tests.processes import ServeProcess

APP_TOKEN = "xapp-1-A0TEST-1-test"


async def test_commands_over_socket_mode(tmp_path: Path) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE])
    async with SlackEmulator(
        bot_token=BOT_TOKEN, workspace=workspace, app_token=APP_TOKEN
    ) as slack:
        serve = ServeProcess(
            api_url=slack.api_url,
            database_url=f"sqlite:///{tmp_path / 'firebreak.db'}",
            runbooks=BUNDLED,
            log=tmp_path / "serve.log",
            # Socket Mode requests are not signed: no signing secret is needed.
            env={"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": ""},
        )
        await serve.start()
        try:

            async def command(text: str) -> str:
                form = payloads.slash_command(workspace, ALICE, general.id, text, "/incident")
                ack = await slack.socket_mode.send("slash_commands", form)
                return str((ack.get("payload") or {}).get("text", ""))

            assert "Unknown subcommand" in await command("frobnicate")
            assert "Declaring *P1* incident" in await command("declare P1 socket checkout down")
            for _ in range(200):
                channels = [
                    c for c in workspace.channels.values() if c.name.startswith("incident-")
                ]
                if channels and channels[0].pins:
                    break
                await asyncio.sleep(0.05)
            [channel] = channels
            assert channel.name.endswith("socket-checkout-down") and channel.pins
            # With no secret nothing posted to /slack/events can be verified: all refused.
            form = payloads.slash_command(workspace, ALICE, general.id, "help", "/incident")
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{serve.url}/slack/events",
                    data=form,
                    headers={"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=0"},
                ) as response,
            ):
                assert response.status == 401
        finally:
            await serve.kill(signal.SIGTERM)
    assert workspace.count("apps.connections.open") >= 1
    log = (tmp_path / "serve.log").read_text()
    [hint] = [line for line in log.splitlines() if "First start" in line]
    assert "connected over Socket Mode" in hint and "/incident help" in hint
