"""deploy/ matches the README: replicas behave as one, the image holds only what `serve`
runs, and a contributor authors migrations with the alembic command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def locked(name: str) -> dict[str, str]:
    """Package → pinned version in one of the lock files (`make lock` writes them)."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", (ROOT / name).read_text(), re.M)
    return {canonicalize_name(package): version for package, version in pins}


def test_the_locks_cover_pyproject_and_agree() -> None:
    """A dependency added to pyproject.toml without `make lock` is caught here too (the
    install from the lock already refuses it, see the Makefile)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    for lock, wanted in (
        (runtime, project["dependencies"]),
        (dev, project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        for requirement in map(Requirement, wanted):
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{requirement} is not locked: run `make lock`"
            assert requirement.specifier.contains(lock[name]), f"{requirement} vs {lock[name]}"
    assert {name: dev[name] for name in runtime} == runtime


def test_ci_and_the_image_install_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(DEV_LOCK)" in makefile
    assert "--no-index --no-build-isolation -e '.[dev]'" in makefile
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps . && pip check" in dockerfile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
