"""`firebreak manifest`: manifest.yml filled in for one deployment, nothing else changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.manifest import ManifestError, manifest_path, render
from tests.test_cli import firebreak


def source() -> dict[str, Any]:
    return yaml.safe_load(manifest_path().read_text())


def request_urls(node: Any) -> list[str]:
    """Every URL Slack would send requests to, wherever the manifest has one."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("url", "request_url") and isinstance(v, str)]
        return found + [u for v in node.values() for u in request_urls(v)]
    if isinstance(node, list):
        return [u for item in node for u in request_urls(item)]
    return []


def manifest(tmp_path: Path, *args: str) -> dict[str, Any]:
    result = firebreak("manifest", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_the_source_url_gives_back_the_source(tmp_path: Path) -> None:
    urls = request_urls(source())
    assert len(urls) >= 2  # the slash command and interactivity, at least
    origin = "https://" + urlsplit(urls[0]).netloc
    assert manifest(tmp_path, "--url", origin) == source()


def rendered(url: str | None = None, *, socket_mode: bool = False) -> dict[str, Any]:
    """What the command prints, in this process (the command itself is tested above)."""
    loaded = yaml.safe_load(render(url, socket_mode=socket_mode))
    assert isinstance(loaded, dict)
    return loaded


def test_url_fills_every_request_url_and_changes_nothing_else() -> None:
    filled = rendered("https://bot.example.org/")
    urls = request_urls(filled)
    assert urls and all(u == "https://bot.example.org/slack/events" for u in urls)
    assert yaml.safe_dump(filled).replace("bot.example.org", "firebreak.example.com") == (
        yaml.safe_dump(source())
    )


def test_socket_mode_has_no_request_urls() -> None:
    socket = rendered(socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert request_urls(socket) == []
    assert socket["features"]["slash_commands"][0]["command"] == "/incident"
    assert socket["oauth_config"] == source()["oauth_config"]
    assert socket["settings"]["interactivity"]["is_enabled"] is True


def test_a_url_slack_would_refuse_is_one_line(tmp_path: Path) -> None:
    for bad in ("http://bot.example.org", "bot.example.org", "https://bot.example.org/?a=1"):
        with pytest.raises(ManifestError, match="^--url "):
            render(bad)
    result = firebreak("manifest", "--url", "http://bot.example.org", cwd=tmp_path)
    assert result.returncode == 2 and not result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("firebreak: --url must be an https:// address")
    both = firebreak("manifest", "--url", "https://a.example", "--socket-mode", cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with" in both.stderr
