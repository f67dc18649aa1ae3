"""Reading Slack payloads without trusting their shape.

A signed payload still comes from a client: a field may be missing, null or of
another type. Listeners read fields through `at` and `text`, so a damaged
payload is ignored instead of crashing, and `envelope_problem` refuses, before
Bolt sees it, an envelope Bolt itself would crash on while matching listeners.
"""

from __future__ import annotations

from typing import Any

# Fields Bolt and our middleware read as objects whenever they are present.
OBJECT_FIELDS = (
    "user",
    "channel",
    "team",
    "view",
    "container",
    "message",
    "enterprise",
    "event",
    "workflow_step",
)


def at(data: Any, *keys: str) -> Any:
    """data[k1][k2]…, or None where a level is missing or not a mapping."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def text(data: Any, *keys: str) -> str:
    """The string at data[k1][k2]…, or "" for anything else."""
    value = at(data, *keys)
    return value if isinstance(value, str) else ""


def dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings in a list; nothing for anything else."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def drop_null_objects(body: dict[str, Any]) -> None:
    """Remove object fields sent as null, which Slack would have left out.

    Bolt treats a present field as an object: `"view": null` on a payload no
    listener matches made its unhandled-request logger raise, answered 500.
    """
    for name in OBJECT_FIELDS:
        if name in body and body[name] is None:
            del body[name]


def envelope_problem(body: dict[str, Any]) -> str | None:
    """Why Bolt could not route this payload, or None when its envelope is sound.

    Bolt indexes these fields while matching listeners and answers 500 when one
    is missing or of another type; Slack always sends them, so such a payload
    is malformed and gets a 400 from us instead.
    """
    for name in OBJECT_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], dict):
            return f"`{name}` is not an object"
    kind = body.get("type")
    if kind == "block_actions" or (kind == "interactive_message" and "callback_id" in body):
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "`actions` is not a list of actions"
        if any(not isinstance(a, dict) for a in actions):
            return "an action is not an object"
    if kind == "block_actions" and any(not text(a, "action_id") for a in body["actions"]):
        return "an action has no `action_id`"
    if kind == "workflow_step_edit" and "callback_id" in body and "workflow_step" not in body:
        return "`workflow_step` is missing"
    if kind == "event_callback" and not text(body, "event", "type"):
        return "`event` lacks its `type`"
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not text(view, "type") or not text(view, "callback_id"):
            return "`view` lacks its `type` or `callback_id`"
        if kind == "view_submission" and not isinstance(at(view, "state", "values"), dict):
            return "`view.state.values` is not an object"
        if view["type"] == "workflow_step" and "workflow_step" not in body:
            return "`workflow_step` is missing"
    return None
