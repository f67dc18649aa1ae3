"""Confirm and Cancel on a proposed mitigation: ack at once, decide in the background.

The decision may call Slack (user-group members), the cluster or the database,
so the listener only acks and parses; `ActionService.decide` does the rest and
its answer reaches the clicker as an ephemeral message through the click's
`response_url`, which works for anyone who can see the button, where
`chat.postEphemeral` refuses someone outside the channel (`user_not_in_channel`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import commands as c
from bot.actions.views import CANCEL_ACTION, CONFIRM_ACTION
from bot.gateway import ChatError
from bot.incidents.service import Request
from bot.services import Services
from bot.triage.views import OFFER_ACTION_PREFIX, parse_offer
from handlers import payload
from handlers.background import BackgroundWork

STALE_BUTTON = "That button is no longer valid; ask again with `/incident mitigate`."


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    def teller(respond: AsyncRespond) -> Callable[[str], Coroutine[Any, Any, None]]:
        """An answer to the clicker alone, through the click's response_url."""

        async def tell(text: str) -> None:
            try:
                await respond(text=text, response_type="ephemeral", replace_original=False)
            except Exception as exc:  # a forged response_url: aiohttp's URL and client errors
                raise ChatError("response_url", "connection_error") from exc

        return tell

    def decide(
        body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond, confirm: bool
    ) -> None:
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        if not user or not channel or not body.get("response_url"):
            return  # not something Slack sends; nobody to answer
        tell = teller(respond)
        value = str(action.get("value", ""))
        if not value.isdigit():
            background.spawn(tell(STALE_BUTTON))
            return
        request = Request(
            actor=user, channel_id=channel, key=f"action:{action.get('action_ts')}:{user}"
        )
        name = "mitigation_confirm" if confirm else "mitigation_cancel"
        background.answer(services.actions.decide(int(value), confirm, request), tell, name=name)

    @app.action(CONFIRM_ACTION)
    async def mitigation_confirmed(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        decide(body, action, respond, confirm=True)

    @app.action(CANCEL_ACTION)
    async def mitigation_cancelled(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        decide(body, action, respond, confirm=False)

    @app.action(re.compile("^" + re.escape(OFFER_ACTION_PREFIX)))
    async def mitigation_offered(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """A triage digest's candidate mitigation: the same as `/incident mitigate <action>
        <service>`, so a dry run and a confirmation come before anything runs."""
        await ack()
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        if not user or not channel or not body.get("response_url"):
            return
        tell = teller(respond)
        offer = parse_offer(str(action.get("value", "")))
        if offer is None:
            background.spawn(tell(STALE_BUTTON))
            return
        request = Request(
            actor=user, channel_id=channel, key=f"action:{action.get('action_ts')}:{user}"
        )
        command = c.RequestMitigation(offer[0], offer[1])
        background.answer(services.actions.propose(command, request), tell, name="triage_offer")
