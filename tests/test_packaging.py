"""The wheel ships every package: pyproject lists them by hand, and an editable
install (the dev set-up) would hide a forgotten one until a production image."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("*/**/__init__.py")
        if init.parent.relative_to(ROOT).parts[0] not in ("tests", "bench", ".venv", "build")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
