"""files.*: the three-step external upload flow that ``files_upload_v2`` uses.

1. ``files.getUploadURLExternal`` reserves a file id and an upload URL;
2. the client POSTs the bytes to that URL (see :func:`store_upload`);
3. ``files.completeUploadExternal`` shares the file into channels as a message.
Completing a file whose bytes never arrived fails with ``file_not_found``.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from emulator.api import ApiError, Args
from emulator.models import StoredFile
from emulator.state import Handler, WorkspaceState


def describe(ws: WorkspaceState, stored: StoredFile) -> dict[str, Any]:
    """The file object Slack returns (files.info, an upload and its message)."""
    extension = stored.name.rsplit(".", 1)[-1].lower() if "." in stored.name else "text"
    url = f"{ws.public_url}/_emulator/files/{stored.id}/{stored.name}"
    public = {
        c: ts
        for c, ts in stored.shares.items()
        if c in ws.channels and not ws.channels[c].is_private
    }
    private = {c: ts for c, ts in stored.shares.items() if c not in public}
    return {
        "id": stored.id,
        "created": stored.created,
        "timestamp": stored.created,
        "name": stored.name,
        "title": stored.title or stored.name,
        "mimetype": mimetypes.guess_type(stored.name)[0] or "text/plain",
        "filetype": extension,
        "pretty_type": extension.upper(),
        "user": stored.user,
        "user_team": ws.team_id,
        "size": len(stored.data or b""),
        "mode": "hosted",
        "is_external": False,
        "is_public": bool(public),
        "alt_txt": stored.alt_txt,
        "url_private": url,
        "url_private_download": url,
        "permalink": f"https://{ws.team_domain}.slack.com/files/{stored.user}/{stored.id}/{stored.name}",
        "channels": sorted(public),
        "groups": sorted(private),
        "ims": [],
        "shares": {
            kind: {
                c: [
                    {
                        "ts": ts,
                        "channel_name": ws.channels[c].name,
                        "team_id": ws.team_id,
                        "share_user_id": stored.user,
                    }
                    for ts in stamps
                ]
                for c, stamps in group.items()
            }
            for kind, group in (("public", public), ("private", private))
            if group
        },
    }


def get_upload_url(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    filename = a.required("filename")
    try:
        length = int(a.required("length"))
    except ValueError:
        raise ApiError("invalid_arguments") from None
    if length <= 0:
        raise ApiError("missing_argument")
    alt_txt = a.text("alt_txt")
    if alt_txt and len(alt_txt) > 1000:
        raise ApiError("alt_txt_too_large")
    stored = StoredFile(
        ws.mint_id("F"), filename, length, ws.bot_user_id, int(ws.now()), alt_txt=alt_txt
    )
    ws.files[stored.id] = stored
    return {
        "ok": True,
        "upload_url": f"{ws.public_url}/_emulator/upload/{stored.id}",
        "file_id": stored.id,
    }


def store_upload(ws: WorkspaceState, file_id: str, data: bytes) -> bool:
    """Step 2: keep the bytes for a reserved, not yet completed file id."""
    stored = ws.files.get(file_id)
    if stored is None or stored.completed:
        return False
    stored.data = data
    return True


def complete_upload(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    items = a.json("files")
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(i, dict) and i.get("id") for i in items)
    ):
        raise ApiError("invalid_arguments")
    channel_id = a.text("channel_id")
    targets = [channel_id] if channel_id else a.ids("channels")
    if len(targets) > 100:
        raise ApiError("channels_limit_exceeded")
    thread_ts = a.text("thread_ts")
    if thread_ts and len(targets) != 1:
        raise ApiError("invalid_arguments")
    channels = [ws.visible_channel(c) for c in targets]
    for channel in channels:
        ws.require_member(channel)
    uploads = []
    for item in items:
        stored = ws.files.get(str(item["id"]))
        if stored is None or stored.completed or stored.data is None:
            raise ApiError("file_not_found")
        uploads.append((stored, item.get("title")))
    for stored, title in uploads:
        stored.completed = True
        stored.title = title or stored.name
    for channel in channels:
        fields = {
            **ws.bot_message_fields(),
            "text": a.text("initial_comment") or "",
            "upload": True,
            "files": [describe(ws, f) for f, _ in uploads],
        }
        message = ws.append_message(channel, fields, thread_ts=thread_ts)
        for stored, _ in uploads:
            stored.shares.setdefault(channel.id, []).append(message["ts"])
    return {"ok": True, "files": [describe(ws, stored) for stored, _ in uploads]}


def info(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    stored = ws.files.get(a.required("file", "file_not_found"))
    if stored is None or not stored.completed:
        raise ApiError("file_not_found")
    return {
        "ok": True,
        "file": describe(ws, stored),
        "comments": [],
        "response_metadata": {"next_cursor": ""},
    }


METHODS: dict[str, Handler] = {
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
    "files.info": info,
}
