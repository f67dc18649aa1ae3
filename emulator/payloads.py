"""Interaction payloads built from workspace state, shaped like the ones Slack sends.

Everything comes from what the workspace actually holds (the message's real
blocks, the view the bot really opened), and asking for an action or input that
is not there raises ``ValueError``: a user cannot click a button that was never
rendered, so a test that tries should fail loudly.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from emulator.blockkit import STATEFUL_ELEMENTS, iter_elements
from emulator.composer import encode

if TYPE_CHECKING:
    from emulator.workspace import Workspace

# element type -> (key in state.values, key holding the element's initial value)
STATE_KEYS: dict[str, tuple[str, str]] = {
    "checkboxes": ("selected_options", "initial_options"),
    "multi_static_select": ("selected_options", "initial_options"),
    "multi_external_select": ("selected_options", "initial_options"),
    "radio_buttons": ("selected_option", "initial_option"),
    "static_select": ("selected_option", "initial_option"),
    "external_select": ("selected_option", "initial_option"),
    "users_select": ("selected_user", "initial_user"),
    "multi_users_select": ("selected_users", "initial_users"),
    "conversations_select": ("selected_conversation", "initial_conversation"),
    "multi_conversations_select": ("selected_conversations", "initial_conversations"),
    "channels_select": ("selected_channel", "initial_channel"),
    "multi_channels_select": ("selected_channels", "initial_channels"),
    "datepicker": ("selected_date", "initial_date"),
    "timepicker": ("selected_time", "initial_time"),
    "datetimepicker": ("selected_date_time", "initial_date_time"),
    "plain_text_input": ("value", "initial_value"),
    "email_text_input": ("value", "initial_value"),
    "url_text_input": ("value", "initial_value"),
    "number_input": ("value", "initial_value"),
    "rich_text_input": ("rich_text_value", "initial_value"),
    "file_input": ("files", "initial_files"),
}
LIST_KEYS = {
    "selected_options",
    "selected_users",
    "selected_conversations",
    "selected_channels",
    "files",
}


def user_ref(ws: Workspace, user_id: str) -> dict[str, str]:
    user = ws.users.get(user_id)
    if user is None:
        raise ValueError(f"unknown user {user_id!r}: add it with Workspace.add_user first")
    return {"id": user_id, "username": user["name"], "name": user["name"], "team_id": ws.team_id}


def slash_command(
    ws: Workspace, user_id: str, channel_id: str, text: str, command: str
) -> dict[str, str]:
    """The form fields of a slash command request, with a fresh trigger_id and response_url.

    `text` is what the person typed; it is sent encoded as Slack encodes it.
    """
    channel = ws.channels.get(channel_id)
    if channel is None:
        raise ValueError(f"unknown channel {channel_id!r}")
    user = user_ref(ws, user_id)
    return {
        "token": ws.verification_token,
        "team_id": ws.team_id,
        "team_domain": ws.team_domain,
        "channel_id": channel_id,
        "channel_name": "privategroup" if channel.is_private else channel.name,
        "user_id": user_id,
        "user_name": user["name"],
        "command": command,
        "text": encode(ws, text),
        "api_app_id": ws.app_id,
        "is_enterprise_install": "false",
        "response_url": ws.mint_response_url(channel_id, user_id),
        "trigger_id": ws.mint_trigger(user_id),
    }


def block_actions(
    ws: Workspace,
    user_id: str,
    channel_id: str,
    message_ts: str,
    element_type: set[str],
    action_id: str,
    *,
    block_id: str | None = None,
    value: str | None = None,
    selected: Any = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for acting on ``action_id`` in the stored message.

    ``value`` picks among buttons sharing an action_id; ``selected`` is the new
    selection (option values) for checkboxes and selects.
    """
    channel = ws.channels.get(channel_id)
    if channel is None:
        raise ValueError(f"unknown channel {channel_id!r}")
    message = channel.messages.get(message_ts)
    is_ephemeral = message is None
    if message is None:
        message = next(
            (
                m
                for m in ws.ephemeral_messages
                if m["ts"] == message_ts and m["user"] == user_id and m["channel"] == channel_id
            ),
            None,
        )
    if message is None:
        raise ValueError(f"no message {message_ts} in {channel_id} visible to {user_id}")
    blocks = message.get("blocks") or []
    block, element = _find_element(blocks, action_id, element_type, block_id, value)
    action: dict[str, Any] = {
        "type": element["type"],
        "action_id": action_id,
        "block_id": block["block_id"],
        "action_ts": ws.next_ts(),
    }
    state = message_state(blocks)
    if element["type"] == "button":
        action.update(
            {k: copy.deepcopy(element[k]) for k in ("text", "value", "style") if k in element}
        )
    else:
        key, new_value = state_value(element, selected)
        action[key] = new_value
        state[block["block_id"]][action_id] = {"type": element["type"], key: new_value}
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": user_ref(ws, user_id),
        "api_app_id": ws.app_id,
        "token": ws.verification_token,
        "container": container,
        "trigger_id": ws.mint_trigger(user_id),
        "team": {"id": ws.team_id, "domain": ws.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {
            "id": channel_id,
            "name": "privategroup" if channel.is_private else channel.name,
        },
        "state": {"values": state},
        "response_url": ws.mint_response_url(
            channel_id, user_id, message_ts=message_ts, is_ephemeral=is_ephemeral
        ),
        "actions": [action],
    }
    if not is_ephemeral:
        payload["message"] = copy.deepcopy(message)
    return payload


def view_submission(
    ws: Workspace, user_id: str, view_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    """A ``view_submission`` for an open view.

    ``values`` maps action_id (or block_id -> action_id, as in ``state.values``)
    to what the user entered: text for text inputs, an option value for single
    selects/radios, a list of option values for checkboxes and multi-selects,
    user/channel ids for those pickers, or a Slack-shaped state entry (see
    :func:`state_value`).
    """
    view = ws.views.get(view_id)
    if view is None or not view.is_open or view.user_id != user_id:
        raise ValueError(f"view {view_id!r} is not open for {user_id!r}")
    blocks = view.data["blocks"]
    state = message_state(blocks)
    for block, element, raw in _resolve_values(blocks, values):
        key, value = state_value(element, raw)
        state[block["block_id"]][element["action_id"]] = {"type": element["type"], key: value}
    for block in blocks:
        if block.get("type") == "input" and not block.get("optional"):
            entry = state[block["block_id"]][block["element"]["action_id"]]
            if entry.get(STATE_KEYS[entry["type"]][0]) in (None, "", []):
                raise ValueError(
                    f"required input {block['block_id']!r} has no value; "
                    "Slack would not let the user submit"
                )
    return {
        "type": "view_submission",
        "team": {"id": ws.team_id, "domain": ws.team_domain},
        "user": user_ref(ws, user_id),
        "api_app_id": ws.app_id,
        "token": ws.verification_token,
        "trigger_id": ws.mint_trigger(user_id, view_id),
        "view": {**copy.deepcopy(view.data), "state": {"values": state}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def message_state(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``state.values`` as Slack reports it before the user changes anything."""
    state: dict[str, dict[str, Any]] = {}
    for block, element in iter_elements(blocks):
        if element.get("type") in STATEFUL_ELEMENTS:
            key, initial = STATE_KEYS[element["type"]]
            default: list[Any] | None = [] if key in LIST_KEYS else None
            state.setdefault(block["block_id"], {})[element["action_id"]] = {
                "type": element["type"],
                key: copy.deepcopy(element.get(initial, default)),
            }
    return state


def state_value(element: dict[str, Any], raw: Any) -> tuple[str, Any]:
    """Turn a user choice into ``element``'s state entry (option values become option objects).

    ``raw`` is either the bare choice ("P1", ["v0", "v2"], "U123") or an entry
    shaped like Slack's own state, e.g. ``{"type": "static_select",
    "selected_option": {"value": "P1"}}``; options are always re-read from the
    element so the payload carries their real text.
    """
    key = STATE_KEYS[element["type"]][0]
    if isinstance(raw, dict) and "type" in raw:
        if raw["type"] != element["type"]:
            raise ValueError(
                f"{element.get('action_id')!r} is a {element['type']}, not a {raw['type']}"
            )
        raw = raw.get(key)
        if key == "selected_option" and isinstance(raw, dict):
            raw = raw.get("value")
        elif key == "selected_options":
            raw = [o.get("value") if isinstance(o, dict) else o for o in raw or []]
    if key == "selected_option":
        return key, _option(element, raw)
    if key == "selected_options":
        return key, [_option(element, v) for v in (raw or [])]
    return key, raw


def _option(element: dict[str, Any], value: str) -> dict[str, Any]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options", []))
    for option in options:
        if option.get("value") == value:
            return copy.deepcopy(option)
    raise ValueError(
        f"{element.get('action_id')!r} has no option {value!r}; "
        f"options: {[o.get('value') for o in options]}"
    )


def _find_element(
    blocks: list[dict[str, Any]],
    action_id: str,
    types: set[str],
    block_id: str | None,
    value: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    matches = [
        (b, e)
        for b, e in iter_elements(blocks)
        if e.get("action_id") == action_id
        and e.get("type") in types
        and block_id in (None, b.get("block_id"))
        and value in (None, e.get("value"))
    ]
    if not matches:
        present = [
            (e.get("type"), e.get("action_id"), e.get("value")) for _, e in iter_elements(blocks)
        ]
        raise ValueError(
            f"no {sorted(types)} element with action_id={action_id!r} (value={value!r}) "
            f"in the message; it has {present}"
        )
    if len(matches) > 1:
        raise ValueError(
            f"action_id {action_id!r} appears {len(matches)} times; "
            "pass block_id= or value= to pick one"
        )
    return matches[0]


def _resolve_values(
    blocks: list[dict[str, Any]], values: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any], Any]]:
    elements = [(b, e) for b, e in iter_elements(blocks) if e.get("type") in STATEFUL_ELEMENTS]
    resolved = []
    for key, raw in values.items():
        nested = (
            isinstance(raw, dict)
            and "type" not in raw
            and any(b.get("block_id") == key for b, _ in elements)
        )
        pairs = raw.items() if nested else [(key, raw)]
        for action_id, value in pairs:
            found = [
                (b, e)
                for b, e in elements
                if e.get("action_id") == action_id and (not nested or b.get("block_id") == key)
            ]
            if len(found) != 1:
                raise ValueError(
                    f"{action_id!r} matches {len(found)} inputs in the view; "
                    f"inputs: {[e.get('action_id') for _, e in elements]}"
                )
            resolved.append((*found[0], value))
    return resolved
