"""The Slack app manifest: `manifest.yml` at the top of the repository is its one source,
filled in for a deployment.

The YAML file stays the source (not Python) so that adding a scope or an event is a
one-line edit that merges like any other; `firebreak manifest` only fills in what differs
between deployments: the address Slack sends requests to, or Socket Mode instead of one.
`firebreak check --live` reads the bot scopes from the same file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# The checkout's own file; an installed copy (the production image) names its file in
# FIREBREAK_MANIFEST, since an installed package has no repository root beside it.
REPOSITORY_MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"


def manifest_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the manifest is: FIREBREAK_MANIFEST, or the repository's `manifest.yml`."""
    return Path(environ.get("FIREBREAK_MANIFEST") or REPOSITORY_MANIFEST)


# The address in the source, replaced by the one given to `firebreak manifest --url`.
PLACEHOLDER = "https://firebreak.example.com"
# Keys holding a URL Slack sends requests to; Socket Mode needs none of them.
_REQUEST_URL_KEYS = ("url", "request_url", "message_menu_options_url")


class ManifestError(Exception):
    """A `--url` Slack would refuse; the message says what is wrong."""


def load_manifest(source: Path | None = None) -> dict[str, Any]:
    """The manifest as written, placeholder URLs and all."""
    manifest = yaml.safe_load((source or manifest_path()).read_text(encoding="utf-8"))
    assert isinstance(manifest, dict), f"{source} is not a mapping"
    return manifest


def bot_scopes(manifest: dict[str, Any]) -> list[str]:
    """The bot token scopes the manifest asks for (what every handler's calls need)."""
    return [str(s) for s in manifest.get("oauth_config", {}).get("scopes", {}).get("bot", [])]


def render(url: str | None = None, *, socket_mode: bool = False, source: Path | None = None) -> str:
    """The manifest for one deployment, as YAML: request URLs under `url` (https, as Slack
    requires), or, with `socket_mode`, Socket Mode on and no request URLs at all."""
    base = PLACEHOLDER if url is None else check_url(url)
    manifest = _filled(load_manifest(source), base, socket_mode)
    if socket_mode:
        manifest.setdefault("settings", {})["socket_mode_enabled"] = True
    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)


def check_url(url: str) -> str:
    """`url` without a trailing slash, or ManifestError if Slack would not accept it."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ManifestError(f"--url must be an https:// address Slack can reach, not {url!r}")
    if parts.query or parts.fragment:
        raise ManifestError("--url takes the bot's address only, without ?query or #fragment")
    return url.strip().rstrip("/")


def _filled(node: Any, base: str, socket_mode: bool) -> Any:
    if isinstance(node, dict):
        return {
            key: _filled(value, base, socket_mode)
            for key, value in node.items()
            if not (socket_mode and key in _REQUEST_URL_KEYS and _is_placeholder(value))
        }
    if isinstance(node, list):
        return [_filled(item, base, socket_mode) for item in node]
    if _is_placeholder(node):
        return base + str(node)[len(PLACEHOLDER) :]
    return node


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and (value == PLACEHOLDER or value.startswith(PLACEHOLDER + "/"))
