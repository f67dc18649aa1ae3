"""The Slack client shares one HTTP session: Web API calls reuse kept-alive connections.

The emulator records the client port of every request it serves; a new TCP
connection comes from a new port, so the ports show whether calls share one.
"""

from __future__ import annotations

from bot.mrkdwn import Mrkdwn
from tests.harness import ALICE, Harness


async def test_calls_one_after_another_share_one_connection(slack: Harness) -> None:
    await slack.settle()  # the start-up sweep
    chat = slack.app.services.chat
    first = len(slack.emulator.peers)
    for n in range(10):
        await chat.post(slack.general, Mrkdwn(f"message {n}"))
    await chat.pin(slack.general, (await chat.post(slack.general, Mrkdwn("pin me"))))
    peers = slack.emulator.peers[first:]
    assert len(peers) == 12
    assert len(set(peers)) == 1, f"{len(set(peers))} connections for 12 calls"


async def test_a_declare_reuses_connections(slack: Harness) -> None:
    """A declare's dozen Web API calls and its response_url answer, end to end."""
    await slack.settle()
    first = len(slack.emulator.peers)
    await slack.command("declare P2 checkout errors")
    slack.only_incident_channel()
    assert any("Declared *P2*" in text for text in slack.ephemeral_texts(ALICE))
    peers = slack.emulator.peers[first:]
    assert len(peers) >= 8
    # Bolt's own client checks the token (auth.test) on a connection of its own, and the
    # outbox may post while the saga calls; one connection per call would be len(peers).
    assert len(set(peers)) <= len(peers) // 3, f"{len(set(peers))} connections, {len(peers)} calls"
