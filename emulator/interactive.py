"""Interactivity: trigger_ids, modals (views.*) and response_url posts.

Slack's rules enforced here: a trigger_id lives 3 seconds and can be exchanged
once; a user's modal stack holds at most 3 views; a response_url works 5 times
within 30 minutes and only ``replace_original``/``delete_original`` touch the
message the user clicked.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from emulator.api import ApiError, Args
from emulator.blockkit import check_message, check_view, with_ids
from emulator.chat import delete_message, edit, message_content
from emulator.models import (
    COMMAND_RESPONSE,
    RESPONSE_URL,
    VIEW_RESPONSE,
    ResponseHook,
    Trigger,
    View,
)
from emulator.state import Handler, WorkspaceState

TRIGGER_TTL = 3.0
RESPONSE_URL_TTL = 30 * 60.0
RESPONSE_URL_USES = 5
MAX_VIEW_STACK = 3


def mint_trigger(ws: WorkspaceState, user_id: str, view_id: str | None = None) -> str:
    trigger_id = f"{int(ws.now())}.{int(ws.mint_id(''), 16)}.{secrets.token_hex(10)}"
    ws.triggers[trigger_id] = Trigger(trigger_id, user_id, ws.now(), view_id)
    return trigger_id


def _exchange(ws: WorkspaceState, a: Args) -> Trigger:
    trigger = ws.triggers.get(a.text("trigger_id") or a.text("interactivity_pointer") or "")
    if trigger is None:
        raise ApiError("invalid_trigger_id")
    if trigger.used:
        raise ApiError("exchanged_trigger_id")
    if ws.now() - trigger.created > TRIGGER_TTL:
        raise ApiError("expired_trigger_id")
    trigger.used = True
    return trigger


def stack(ws: WorkspaceState, user_id: str) -> list[View]:
    return [v for v in ws.views.values() if v.user_id == user_id and v.is_open]


def _valid_view(ws: WorkspaceState, a: Args, own_id: str | None = None) -> dict[str, Any]:
    view = a.json("view")
    check_view(view)
    external_id = view.get("external_id")
    if external_id and any(
        v.data.get("external_id") == external_id and v.id != own_id for v in ws.views.values()
    ):
        raise ApiError("duplicate_external_id")
    return view


def render_view(
    ws: WorkspaceState, view_id: str, view: dict[str, Any], root_id: str, previous_id: str | None
) -> dict[str, Any]:
    """The stored view object, shaped like views.open's response."""
    return {
        "id": view_id,
        "team_id": ws.team_id,
        "type": view["type"],
        "title": copy.deepcopy(view.get("title")),
        "submit": copy.deepcopy(view.get("submit")),
        "close": copy.deepcopy(view.get("close")),
        "blocks": with_ids(view["blocks"]),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": f"{int(ws.now())}.{secrets.token_hex(4)}",
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "root_view_id": root_id,
        "previous_view_id": previous_id,
        "app_id": ws.app_id,
        "app_installed_team_id": ws.team_id,
        "bot_id": ws.bot_id,
    }


def open_view(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    view = _valid_view(ws, a)
    if view.get("type") != "modal":
        raise ApiError(
            "invalid_arguments",
            response_metadata={
                "messages": ["[ERROR] views.open only opens modals [json-pointer:/view/type]"]
            },
        )
    trigger = _exchange(ws, a)
    for old in stack(ws, trigger.user_id):
        old.is_open = False
    view_id = ws.mint_id("V")
    data = render_view(ws, view_id, view, view_id, None)
    ws.views[view_id] = View(view_id, trigger.user_id, data, trigger.id)
    return {"ok": True, "view": data}


def push_view(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    view = _valid_view(ws, a)
    trigger = _exchange(ws, a)
    views = stack(ws, trigger.user_id)
    if trigger.view_id is None or not views:
        raise ApiError("not_found")
    if len(views) >= MAX_VIEW_STACK:
        raise ApiError("push_limit_reached")
    return {"ok": True, "view": add_to_stack(ws, trigger.user_id, view, views, trigger.id)}


def add_to_stack(
    ws: WorkspaceState,
    user_id: str,
    view: dict[str, Any],
    views: list[View],
    trigger_id: str | None = None,
) -> dict[str, Any]:
    view_id = ws.mint_id("V")
    data = render_view(ws, view_id, view, views[0].id, views[-1].id)
    ws.views[view_id] = View(view_id, user_id, data, trigger_id)
    return data


def update_view(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """views.update by view_id or external_id; a stale ``hash`` is a hash_conflict."""
    view_id, external_id = a.text("view_id"), a.text("external_id")
    if not view_id and not external_id:
        raise ApiError("invalid_arguments")
    target = next(
        (
            v
            for v in ws.views.values()
            if v.id == view_id or (external_id and v.data.get("external_id") == external_id)
        ),
        None,
    )
    if target is None or not target.is_open:
        raise ApiError("not_found")
    view = _valid_view(ws, a, target.id)
    if a.text("hash") and a.text("hash") != target.data["hash"]:
        raise ApiError("hash_conflict")
    target.data = render_view(
        ws, target.id, view, target.data["root_view_id"], target.data["previous_view_id"]
    )
    return {"ok": True, "view": target.data}


def mint_response_url(
    ws: WorkspaceState, channel_id: str, user_id: str, message_ts: str | None, is_ephemeral: bool
) -> str:
    hook = ResponseHook(
        secrets.token_hex(8), channel_id, user_id, ws.now(), message_ts, is_ephemeral
    )
    ws.response_hooks[hook.id] = hook
    return f"{ws.public_url}/_emulator/respond/{hook.id}"


def respond(ws: WorkspaceState, hook_id: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """What Slack does with a POST to a response_url (what Bolt's ``respond()`` sends)."""
    hook = ws.response_hooks.get(hook_id)
    if hook is None:
        return 404, {"ok": False, "error": "invalid_url"}
    if ws.now() - hook.created > RESPONSE_URL_TTL:
        return 404, {"ok": False, "error": "expired_url"}
    if hook.uses >= RESPONSE_URL_USES:
        return 404, {"ok": False, "error": "used_url"}
    if not isinstance(payload, dict):
        ws.record_call(RESPONSE_URL, {"payload": payload}, "invalid_payload")
        return 400, {"ok": False, "error": "invalid_payload"}
    try:
        _deliver(ws, hook, payload, "response_url")
    except ApiError as exc:
        ws.record_call(RESPONSE_URL, payload, exc.error)
        return 400, exc.response()
    ws.record_call(RESPONSE_URL, payload)
    hook.uses += 1
    return 200, {"ok": True}


def deliver_command_ack(ws: WorkspaceState, channel_id: str, user_id: str, body: Any) -> None:
    """Slack shows a slash command's HTTP answer to the user (ephemeral unless in_channel)."""
    payload = body if isinstance(body, dict) else {"text": str(body)}
    ws.record_call(COMMAND_RESPONSE, payload)
    try:
        _deliver(ws, ResponseHook("ack", channel_id, user_id, ws.now()), payload, "ack")
    except ApiError as exc:
        raise ValueError(
            f"Slack would reject this slash command response body: {exc.response()}"
        ) from None


def _deliver(ws: WorkspaceState, hook: ResponseHook, payload: dict[str, Any], via: str) -> None:
    """Only ``replace_original``/``delete_original`` touch the clicked message; else post anew."""
    text, blocks, attachments = (
        payload.get("text"),
        payload.get("blocks"),
        payload.get("attachments"),
    )
    if payload.get("delete_original"):
        _delete_source(ws, hook)
        if not text and not blocks and not attachments:
            return
    check_message(text, blocks, attachments)
    content = message_content(text, blocks, attachments)
    if payload.get("replace_original") and _replace_source(ws, hook, content):
        return
    if payload.get("response_type") == "in_channel":
        ws.append_message(
            ws.channels[hook.channel_id],
            {**ws.bot_message_fields(), **content},
            thread_ts=payload.get("thread_ts"),
        )
    else:
        ws.add_ephemeral(
            hook.channel_id,
            hook.user_id,
            {**content, "thread_ts": payload.get("thread_ts")},
            via=via,
        )


def _source_ephemeral(ws: WorkspaceState, hook: ResponseHook) -> dict[str, Any] | None:
    return next(
        (
            m
            for m in ws.ephemeral_messages
            if m["ts"] == hook.message_ts and m["user"] == hook.user_id
        ),
        None,
    )


def _replace_source(ws: WorkspaceState, hook: ResponseHook, content: dict[str, Any]) -> bool:
    if hook.message_ts is None:
        return False
    if hook.is_ephemeral:
        target = _source_ephemeral(ws, hook)
        if target is not None:
            target.update(
                {
                    "text": content["text"],
                    "blocks": content.get("blocks", []),
                    "via": "response_url",
                }
            )
        return target is not None
    channel = ws.channels[hook.channel_id]
    message = channel.messages.get(hook.message_ts)
    if message is None:
        return False
    edit(ws, channel, message, content, ws.bot_user_id, mark_edited=False)
    return True


def _delete_source(ws: WorkspaceState, hook: ResponseHook) -> None:
    if hook.message_ts is None:
        return
    if hook.is_ephemeral:
        target = _source_ephemeral(ws, hook)
        if target is not None:
            ws.ephemeral_messages.remove(target)
        return
    channel = ws.channels[hook.channel_id]
    message = channel.messages.get(hook.message_ts)
    if message is not None:
        delete_message(ws, channel, message)


def apply_submission_response(ws: WorkspaceState, view: View, body: Any) -> None:
    """What Slack does with the app's answer to a view_submission.

    Raises ValueError for answers Slack would refuse (the user would see
    "We had some trouble connecting"), so a broken ``ack(response_action=...)``
    fails the test instead of passing silently.
    """
    if isinstance(body, dict):
        ws.record_call(VIEW_RESPONSE, body)
    action = body.get("response_action") if isinstance(body, dict) else None
    views = stack(ws, view.user_id)
    if action == "errors":
        errors = body.get("errors")
        input_ids = {b.get("block_id") for b in view.data["blocks"] if b.get("type") == "input"}
        if not isinstance(errors, dict) or not errors or not set(errors) <= input_ids:
            raise ValueError(
                f"response_action=errors must map input block_ids {sorted(input_ids)} "
                f"to messages, got {errors!r}"
            )
    elif action in {"update", "push"}:
        try:
            check_view(body.get("view"))
        except ApiError as exc:
            raise ValueError(
                f"response_action={action} with an invalid view: {exc.extra}"
            ) from None
        if action == "update":
            view.data = render_view(
                ws, view.id, body["view"], view.data["root_view_id"], view.data["previous_view_id"]
            )
        elif len(views) >= MAX_VIEW_STACK:
            raise ValueError("response_action=push beyond the 3-view stack limit")
        else:
            add_to_stack(ws, view.user_id, body["view"], views)
    elif action == "clear":
        for open_view_ in views:
            open_view_.is_open = False
    elif action is None:
        view.is_open = False
    else:
        raise ValueError(f"unknown response_action {action!r}")


METHODS: dict[str, Handler] = {
    "views.open": open_view,
    "views.push": push_view,
    "views.update": update_view,
}
