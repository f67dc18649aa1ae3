"""`SlackEmulator.latency`: every Web API and response_url answer arrives that much later."""

from __future__ import annotations

import time

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from emulator import SlackEmulator, Workspace
from emulator.payloads import slash_command

TOKEN = "xoxb-test"


async def test_latency_delays_every_api_answer_and_changes_nothing_else() -> None:
    workspace = Workspace()
    workspace.add_user("U1", "alice")
    general = workspace.add_channel("general", members=["U1", workspace.bot_user_id])
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        client = AsyncWebClient(token=TOKEN, base_url=emulator.api_url)
        started = time.monotonic()
        await client.auth_test()
        assert time.monotonic() - started < 0.15  # off by default

        emulator.latency = 0.2
        started = time.monotonic()
        posted = await client.chat_postMessage(channel=general.id, text="slow")
        assert time.monotonic() - started >= 0.2
        assert posted["ok"] and workspace.messages(general.id)[-1]["text"] == "slow"

        started = time.monotonic()
        with pytest.raises(SlackApiError) as error:  # errors are late too
            await client.api_call("no.such_method")
        assert time.monotonic() - started >= 0.2
        assert error.value.response["error"] == "unknown_method"


async def test_latency_delays_response_url_answers() -> None:
    workspace = Workspace()
    workspace.add_user("U1", "alice")
    general = workspace.add_channel("general", members=["U1", workspace.bot_user_id])
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        emulator.latency = 0.2
        form = slash_command(workspace, "U1", general.id, "list", "/incident")
        started = time.monotonic()
        answer = await AsyncWebhookClient(form["response_url"]).send(text="late reply")
        assert time.monotonic() - started >= 0.2
        assert answer.status_code == 200
        assert [e["text"] for e in workspace.ephemerals("U1")] == ["late reply"]
