"""A stateful Slack emulator: Web API server, workspace rules, and a platform-side driver."""

from __future__ import annotations

from emulator.driver import AppResponse, SlackDriver
from emulator.server import SlackEmulator
from emulator.workspace import Workspace

__all__ = ["AppResponse", "SlackDriver", "SlackEmulator", "Workspace"]
