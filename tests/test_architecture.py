"""The dependency arrows run one way: firebreak → devtools → app → handlers → bot → storage.

Read from the source with `ast`, so a lazy import inside a function counts as much
as one at the top of a module. `bot/` says what an incident is and does, so it must
not need Slack's SDKs, the web server or the developer tools to be imported;
`storage/` is the bottom layer and imports nothing above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The Slack layer, the web framework and the developer tools (shell, demo, emulator).
ABOVE_THE_DOMAIN = {"handlers", "slack_bolt", "slack_sdk", "aiohttp", "devtools", "emulator"}
FORBIDDEN = {
    # The dev tools start the app, the app wires the listeners: never the other way.
    "devtools": {"firebreak"},
    "app": {"firebreak", "devtools", "emulator"},
    "handlers": {"app", "firebreak", "devtools", "emulator"},
    "bot": ABOVE_THE_DOMAIN | {"app", "firebreak"},
    "storage": ABOVE_THE_DOMAIN | {"app", "firebreak", "bot"},
}
# Exact (module, imported package) pairs allowed, each with its reason: none today.
EXCEPTIONS: set[tuple[str, str]] = set()


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every import in a module (relative imports resolve inside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        for package in sorted(imported_packages(path) & FORBIDDEN[layer]):
            if (module, package) not in EXCEPTIONS:
                found.append(f"{module} imports {package}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert violations(layer) == []


def sqlalchemy_names(path: Path) -> set[str]:
    """What a module takes from SQLAlchemy, as `module.name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sqlalchemy")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_bot_holds_no_sql() -> None:
    """Queries live in storage/; bot/ hands plain functions a Session and nothing more."""
    found = {
        f"{path.relative_to(ROOT).as_posix()}: {name}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for name in sqlalchemy_names(path) - {"sqlalchemy.orm.Session"}
    }
    assert found == set()


# Keys and types only Slack's message and modal JSON uses: a dict literal with one of
# these in bot/ is Block Kit written in the domain. (`action_id` is not one: the audit
# events name a proposal by it.)
BLOCK_KIT_KEYS = {"block_id", "elements", "blocks", "callback_id", "initial_options"}


def block_kit_literals(path: Path) -> list[str]:
    """Where a module writes a dict (or string constant) of Slack's view JSON."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            values = {v.value for v in node.values if isinstance(v, ast.Constant)}
            if keys & BLOCK_KIT_KEYS or values & {
                "section",
                "actions",
                "button",
                "modal",
                "mrkdwn",
            }:
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_bot_holds_no_block_kit() -> None:
    """What a message holds is a `bot.messages.Card`; Block Kit and modals are built in
    handlers/ (blockkit.py, modals.py), so bot/ reads without Slack's JSON."""
    found = [
        hit for path in sorted((ROOT / "bot").rglob("*.py")) for hit in block_kit_literals(path)
    ]
    assert found == []


def test_the_block_kit_check_sees_a_button(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text('B = {"type": "button", "value": "x"}\nS = {"block_id": "s"}\n')
    assert len(block_kit_literals(source)) == 2


def test_exceptions_are_still_needed() -> None:
    """An exception nobody needs any more is removed, so the list stays the truth."""
    for module, package in EXCEPTIONS:
        assert package in imported_packages(ROOT / module), (module, package)


def test_the_check_sees_lazy_and_dotted_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import os.path\nfrom . import sibling\n"
        "def f():\n    from slack_bolt.async_app import AsyncApp\n    import handlers.app\n"
    )
    assert imported_packages(source) == {"os", "slack_bolt", "handlers"}
