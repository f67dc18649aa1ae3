"""deploy/ matches the README: replicas behave as one, the image holds only what `serve`
runs, and a contributor authors migrations with the alembic command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DEV_ONLY = {"emulator", "devtools", "tests", "bench"}


def manifest(name: str) -> Any:
    return yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())


def test_two_replicas_roll_one_at_a_time_and_a_disruption_leaves_one() -> None:
    dep, pdb = manifest("deployment.yaml"), manifest("poddisruptionbudget.yaml")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pdb["kind"] == "PodDisruptionBudget" and pdb["metadata"]["namespace"] == "firebreak"
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert 1 <= pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]


def test_the_image_copies_only_what_serve_runs() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = {m[1] for m in re.finditer(r"^COPY (?!--from)(\S+) \./\1$", dockerfile, re.M)}
    assert copied == {"firebreak", "app", "handlers", "bot", "storage", "runbooks"}
    assert not DEV_ONLY & set(re.findall(r"\w+", dockerfile.split("FROM", 2)[1]))


def test_serve_runs_without_the_dev_tools_installed() -> None:
    """As in the image: importing the emulator, the dev tools or the tests fails."""
    script = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {sorted(DEV_ONLY)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
import app.wiring, firebreak.cli
sys.exit(firebreak.cli.main(["demo"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "demo is a developer tool, not installed here" in done.stderr


def test_alembic_sees_one_head() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "heads"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split("(head)")) == 2, done.stdout
