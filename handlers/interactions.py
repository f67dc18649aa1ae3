"""Block actions (checklist boxes) and view submissions (the declare modal)."""

from __future__ import annotations

import json
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.commands import PostUpdate, SetStatus
from bot.errors import NOT_AN_INCIDENT_CHANNEL
from bot.incidents.reminders import POST_UPDATE_ACTION
from bot.incidents.service import Request
from bot.incidents.views import CHECKLIST_ACTION_PREFIX
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork
from handlers.modals import (
    DECLARE_CALLBACK,
    UPDATE_CALLBACK,
    parse_declare_form,
    parse_update_form,
    update_form,
)
from storage import incidents as incident_store


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    incidents = services.incidents

    @app.action({"type": "block_actions", "action_id": _starts_with(CHECKLIST_ACTION_PREFIX)})
    async def checklist_toggled(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        await ack()
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        if not user or not channel:
            return  # not something Slack sends; nobody to answer
        ticked, unticked = _checklist_click(body, action)
        request = Request(
            actor=user, channel_id=channel, key=f"action:{action.get('action_ts')}:{user}"
        )

        async def tell(text: str) -> None:
            await services.chat.post_ephemeral(channel, user, text)

        background.answer(
            incidents.toggle_checklist(request, ticked, unticked),
            tell,
            name="checklist",
        )

    @app.action(POST_UPDATE_ACTION)
    async def post_update_clicked(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user, channel = payload.text(body, "user", "id"), payload.text(body, "channel", "id")
        trigger_id = payload.text(body, "trigger_id")
        if not user or not channel or not trigger_id:
            return

        async def open_form() -> str:
            incident = await services.db.run(incident_store.by_channel, channel)
            if incident is None:
                return NOT_AN_INCIDENT_CHANNEL
            view = update_form(incident.id, channel, incident.status)
            await services.chat.open_view(trigger_id, view)
            return ""

        async def tell(text: str) -> None:
            await services.chat.post_ephemeral(channel, user, text)

        background.answer(open_form(), tell, name="update_form")

    @app.view(UPDATE_CALLBACK)
    async def update_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        status, said, errors = parse_update_form(payload.at(view, "state", "values"))
        if said is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user, channel, view_id = (
            payload.text(body, "user", "id"),
            _origin_channel(view),
            payload.text(view, "id"),
        )
        if not user or not channel or not view_id:
            return
        key = f"view:{view_id}"

        async def update(said: PostUpdate) -> str:
            # The same as `/incident status …` then `/incident update …`.
            replies = [
                await incidents.set_status(
                    SetStatus(status), Request(user, channel, key + ":status")
                ),
                await incidents.post_update(said, Request(user, channel, key)),
            ]
            return "\n".join(r for r in replies if r and "already" not in r)

        async def tell(reply: str) -> None:
            await services.chat.post_ephemeral(channel, user, reply)

        background.answer(update(said), tell, name="update_submitted")

    @app.view(DECLARE_CALLBACK)
    async def declare_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = payload.at(view, "state", "values")
        command, errors = parse_declare_form(
            values, services.runbooks.severities, services.triage.services
        )
        if command is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user, view_id = payload.text(body, "user", "id"), payload.text(view, "id")
        if not user or not view_id:
            return  # without them nobody is the declarer and a redelivery is not recognised
        channel = _origin_channel(view)
        request = Request(actor=user, channel_id=channel, key=f"view:{view_id}")

        async def tell(text: str) -> None:
            if channel:
                await services.chat.post_ephemeral(channel, user, text)

        background.answer(incidents.declare(command, request), tell, name="declare_form")


def _checklist_click(body: dict[str, Any], action: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The boxes one click ticked and unticked.

    Slack sends the group's new selection and the message as the clicker saw it;
    the click's change is the selection against the boxes that message showed
    ticked. Without the message (not something Slack omits for a channel
    message), a selected box counts as ticked and nothing as unticked.
    """
    element = next(
        (
            e
            for b in payload.dicts(payload.at(body, "message", "blocks"))
            if b.get("block_id") == action.get("block_id")
            for e in payload.dicts(b.get("elements"))
            if e.get("action_id") == action.get("action_id")
        ),
        {},
    )
    shown = _values(element.get("initial_options"))
    selected = _values(action.get("selected_options"))
    if element:  # a click changes only its own group's boxes
        selected &= _values(element.get("options"))
    return selected - shown, shown - selected


def _values(options: Any) -> set[str]:
    return {o["value"] for o in payload.dicts(options) if isinstance(o.get("value"), str)}


def _starts_with(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix))


def _origin_channel(view: dict[str, Any]) -> str:
    try:
        channel = json.loads(view.get("private_metadata") or "{}").get("channel", "")
    except (ValueError, TypeError, AttributeError):  # a client may send anything here
        return ""
    return channel if isinstance(channel, str) else ""
