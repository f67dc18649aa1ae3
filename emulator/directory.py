"""auth.test, users.*, usergroups.* and team.info: who is who in the workspace."""

from __future__ import annotations

from typing import Any

from emulator.api import ApiError, Args, paginate
from emulator.state import Handler, WorkspaceState


def auth_test(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """Bolt calls this once to learn the bot's user id (``bot_id`` marks a bot token)."""
    return {
        "ok": True,
        "url": f"https://{ws.team_domain}.slack.com/",
        "team": ws.team_name,
        "user": ws.bot_name,
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def users_info(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """As Slack answers: bots (`is_bot`) and deactivated users (`deleted`) too; only an
    ID the workspace never had is `user_not_found`."""
    user = ws.users.get(a.required("user", "user_not_found"))
    if user is None:
        raise ApiError("user_not_found")
    return {"ok": True, "user": user}


def users_lookup_by_email(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """Needs the `users:read.email` scope in Slack; the emulator grants it."""
    email = a.required("email", "users_not_found").strip().lower()
    for user in ws.users.values():
        if str(user.get("profile", {}).get("email", "")).lower() == email and not user.get(
            "deleted"
        ):
            return {"ok": True, "user": user}
    raise ApiError("users_not_found")


def users_list(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    page, cursor = paginate(
        list(ws.users.values()), a, lambda u: u["id"], prefix="users", default=1000, maximum=1000
    )
    return {
        "ok": True,
        "members": page,
        "cache_ts": int(ws.now()),
        "response_metadata": {"next_cursor": cursor},
    }


def usergroups_users_list(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    group = ws.usergroups.get(a.required("usergroup", "no_such_subteam"))
    if group is None:
        raise ApiError("no_such_subteam")
    return {"ok": True, "users": list(group["users"])}


def usergroups_list(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    include_users = a.flag("include_users")
    groups = []
    for group in ws.usergroups.values():
        entry = {**group, "is_usergroup": True, "user_count": len(group["users"])}
        if not include_users:
            entry.pop("users")
        groups.append(entry)
    return {"ok": True, "usergroups": groups}


def team_info(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    team = {
        "id": ws.team_id,
        "name": ws.team_name,
        "domain": ws.team_domain,
        "email_domain": "",
        "url": f"https://{ws.team_domain}.slack.com/",
        "icon": {"image_default": True},
    }
    return {"ok": True, "team": team}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "users.list": users_list,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.users.list": usergroups_users_list,
    "usergroups.list": usergroups_list,
    "team.info": team_info,
}
