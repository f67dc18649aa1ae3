"""The resolution modal of `/incident close`: resolve with the summary, then close."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.incidents.service import Request
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork
from handlers.modals import RESOLUTION_CALLBACK, parse_resolution


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    @app.view(RESOLUTION_CALLBACK)
    async def resolution_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        channel, summary, errors = parse_resolution(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user, view_id = payload.text(body, "user", "id"), payload.text(view, "id")
        if not user or not view_id:
            return  # not something Slack sends; nobody to answer
        request = Request(actor=user, channel_id=channel, key=f"view:{view_id}")

        async def tell(text: str) -> None:
            if channel:
                await services.chat.post_ephemeral(channel, user, text)

        background.answer(
            services.postmortems.resolve_and_close(summary, request), tell, name="resolution_form"
        )
