"""The `/incident` slash command: parse, ack within 3 seconds, then do the work."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import commands as c
from bot.incidents.rules import ROLES, STATUSES
from bot.incidents.service import Request
from bot.mrkdwn import from_slack
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork
from handlers.inbox import RESPONSE_URL_TTL, received_at
from handlers.modals import declare_form, resolution_form

INCOMPLETE = "This request lacks the user, channel or response URL Slack sends; nothing was done."


def help_text(services: Services) -> str:
    return services.runbooks.templates.render(
        "help.j2",
        severity_names=services.runbooks.severities.names(),
        statuses=STATUSES,
        roles=ROLES,
    )


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    incidents = services.incidents

    @app.command("/incident")
    async def incident_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        # Slack sends `&`, `<`, `>` as entities: decoded here, once; escaped when rendered.
        typed = from_slack(payload.text(command, "text"))
        try:
            parsed = c.parse(typed, services.runbooks.severities)
        except c.CommandError as exc:
            text = f"{exc}\n\n{help_text(services)}" if exc.show_help else str(exc)
            await ack(text=text)
            return
        if isinstance(parsed, c.Help):
            await ack(text=help_text(services))
            return
        if not all(command.get(k) for k in ("user_id", "channel_id", "response_url")):
            await ack(text=INCOMPLETE)  # Slack always sends them: a broken client or a test
            return

        request = Request(
            actor=command["user_id"],
            channel_id=command["channel_id"],
            key=f"command:{command.get('trigger_id') or command.get('response_url')}",
        )

        name = c.command_word(typed)

        async def reply(text: str) -> None:
            await respond(text=text, response_type="ephemeral")

        if isinstance(parsed, c.OpenDeclareForm):
            await ack()
            # trigger_id expires 3 s after the click: open the modal before anything slow.
            view = declare_form(
                services.runbooks.severities,
                parsed.severity,
                request.channel_id,
                services.triage.services,
                parsed.private,
            )
            background.answer(
                _nothing_after(services.chat.open_view(command.get("trigger_id", ""), view)),
                reply,
                name=name,
            )
            return
        if isinstance(parsed, c.Close):
            await ack()
            background.answer(
                _close(services, request, command.get("trigger_id", "")), reply, name=name
            )
            return
        if isinstance(parsed, c.Declare):
            await ack(text=f"Declaring *{parsed.severity}* incident… :hourglass_flowing_sand:")
            # The saga answers the declarer when it completes, maybe in another process.
            request = replace(
                request,
                reply_url=command["response_url"],
                reply_until=received_at(services.clock) + RESPONSE_URL_TTL,
            )
            background.answer(incidents.declare(parsed, request), reply, name=name)
            return
        await ack()
        if isinstance(parsed, c.ListIncidents):
            background.answer(incidents.list_open(), reply, name=name)
        else:
            background.answer(_dispatch(services, parsed, request), reply, name=name)


async def _dispatch(services: Services, command: c.Command, request: Request) -> str:
    incidents = services.incidents
    match command:
        case c.SetSeverity():
            return await incidents.set_severity(command, request)
        case c.SetStatus():
            return await incidents.set_status(command, request)
        case c.PostUpdate():
            return await incidents.post_update(command, request)
        case c.AssignRole():
            return await incidents.assign_role(command, request)
        case c.AddNote():
            return await incidents.add_note(command, request)
        case c.Resolve():
            return await incidents.resolve(command, request)
        case c.AddActionItem():
            return await incidents.add_action_item(command, request)
        case c.ShowReminders():
            return await services.reminders.show(request.channel_id)
        case c.ShowSummary():
            return await services.room.summary(request)
        case c.RunDiagnostic():
            return await services.actions.diagnose(command, request)
        case c.RequestMitigation():
            return await services.actions.propose(command, request)
        case c.CollectEvidence():
            return await services.evidence.collect(command, request)
        case c.PreviewPostmortem():
            return await services.postmortems.preview(request)
        case c.Page():
            return await services.paging.page(command, request)
        case c.ShowOnCall():
            return await services.paging.oncall(command, request)
        case c.DraftStatusPage():
            return await services.statuspage.draft(command, request)
        case c.SwitchScenario():
            return await services.triage.switch(command, request)
        case c.Snooze():
            return await services.reminders.snooze(
                request.channel_id, request.actor, command.duration, request.key
            )
    raise AssertionError(f"unhandled command {command!r}")


async def _close(services: Services, request: Request, trigger_id: str) -> str:
    """Close and export; an unresolved incident first asks for a resolution summary."""
    outcome = await services.postmortems.close(request)
    if outcome.needs_resolution:
        view = resolution_form(request.channel_id, resolved=outcome.resolved)
        await services.chat.open_view(trigger_id, view)
    return outcome.text


async def _nothing_after(work: Awaitable[None]) -> str:
    await work
    return ""
