"""`/incident evidence <service> [since=24h]` end to end: the slash command over signed
HTTP, the real kubernetes client against the fake API server, a real tar.gz on disk;
only its name and SHA-256 reach Slack and the event log."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from bot import commands as c
from bot.executors import KubernetesTarget
from bot.executors.evidence import collect
from bot.executors.kubernetes_api import KubernetesApi
from bot.runbooks import Runbooks
from emulator.kubernetes import FakeKubernetes, deployment, event, pod
from tests.action_rig import Rig, engine_fixture, health_fixture, kube_fixture, rig_fixture  # noqa: F401
from tests.harness import ALICE, Harness

SECRET = "AKIAIOSFODNN7EXAMPLE"  # an AWS key ID in a log line: kept as is in the archive


def folder(rig: Rig) -> Path:
    path = rig.slack.app.services.evidence._folder  # the rig's FIREBREAK_EVIDENCE_DIR
    assert path is not None
    return path


def archives(rig: Rig) -> list[Path]:
    return sorted(folder(rig).glob("*.tar.gz"))


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


async def evidence(rig: Rig, text: str) -> str:
    await rig.slack.command(f"evidence {text}", channel=rig.channel.id)
    return rig.last_ephemeral(ALICE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("evidence checkout", c.CollectEvidence("checkout")),
        ("evidence checkout since=6h", c.CollectEvidence("checkout", timedelta(hours=6))),
        ("diag evidence checkout 90m", c.CollectEvidence("checkout", timedelta(minutes=90))),
    ],
)
def test_the_grammar(runbooks: Runbooks, text: str, expected: c.Command) -> None:
    assert c.parse(text, runbooks.severities) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("evidence", "Name one service"),
        (
            "evidence checkout since=8d",
            "`since` must be a duration from 1m to 168h, like 30m or 2h; got `8d`.",
        ),
        ("evidence checkout 30s", "from 1m to 168h, like 30m or 2h; got `30s`."),
        ("evidence checkout since=soon", "from 1m to 168h, like 30m or 2h; got `soon`."),
        ("evidence checkout since=99999999999d", "got `99999999999d`."),
        ("evidence checkout since=<!here>", "got `&lt;!here&gt;`."),
        ("evidence checkout 1h extra", "Name one service"),
    ],
)
def test_bad_input_is_answered(runbooks: Runbooks, text: str, error: str) -> None:
    with pytest.raises(c.CommandError, match=error):
        c.parse(text, runbooks.severities)


async def test_an_archive_on_disk_and_its_hash_in_slack(rig: Rig) -> None:
    rig.kube.set_log("shop", "checkout-a", f"GET /admin 200 key={SECRET}\n")
    rig.kube.set_log("shop", "checkout-b", "OOM\n", previous=True)
    rig.kube.add(
        event("checkout-b.1", "BackOff", "Back-off restarting", object_name="checkout-b"),
        event("cart-1.1", "BackOff", "another service", object_name="cart-1"),
    )
    before = len(rig.slack.ephemeral_texts(ALICE))
    await rig.slack.command("evidence checkout since=6h", channel=rig.channel.id)
    assert len(rig.slack.ephemeral_texts(ALICE)) == before  # nothing to complain of
    [archive] = archives(rig)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()

    [(_, actor, recorded)] = await rig.events("evidence_collected")
    assert actor == ALICE and recorded["sha256"] == sha256 and recorded["file"] == archive.name
    assert recorded["bytes"] == archive.stat().st_size and recorded["pods"] == 2
    said = rig.messages()[-1]["text"]
    assert sha256 in said and archive.name in said and "not in Slack" in said

    files = members(archive)
    assert SECRET.encode() in files["logs/checkout-a/app.log"]  # unredacted, on disk only
    # Stamped by the API server (timestamps=true): the evidence keeps when each line was.
    assert re.fullmatch(
        rb"\d{4}-\d\d-\d\dT[\d:.]+Z OOM\n", files["logs/checkout-b/app.previous.log"]
    )
    assert [e["involvedObject"]["name"] for e in json.loads(files["kubernetes/events.json"])] == [
        "checkout-b"
    ]
    assert len(json.loads(files["kubernetes/replicasets.json"])) == 2
    assert json.loads(files["kubernetes/deployment.json"])["metadata"]["name"] == "checkout"
    log_types = [e["type"] for e in json.loads(files["incident/events.json"])]
    assert "declared" in log_types and log_types[-1] == "evidence_requested"
    manifest = json.loads(files["manifest.json"])
    assert {f["path"]: f["sha256"] for f in manifest["files"]}["logs/checkout-a/app.log"] == (
        hashlib.sha256(files["logs/checkout-a/app.log"]).hexdigest()
    )
    assert manifest["since_seconds"] == 6 * 3600 and manifest["collected_by"] == ALICE
    # checkout-a never restarted: no previous log was asked for; the since window was.
    reads = [r.query for r in rig.kube.requests if r.path.endswith("/log")]
    assert all(q["sinceSeconds"] == "21600" and q["timestamps"] == "true" for q in reads)
    assert len(reads) == 3

    # Nothing of it went to Slack: no upload, and the key is in no message.
    assert rig.slack.workspace.count("files.completeUploadExternal", ok=None) == 0
    everything = json.dumps(rig.slack.workspace.dump())
    assert SECRET not in everything


async def test_the_diagnostics_list_points_to_evidence(rig: Rig) -> None:
    await rig.slack.command("diag", channel=rig.channel.id)
    assert "`evidence <service> [since=24h]` archives" in rig.last_ephemeral(ALICE)


async def test_bad_services_and_a_down_cluster_write_nothing(rig: Rig) -> None:
    assert "Unknown service `cart`. Configured: checkout, billing, backend." in await evidence(
        rig, "cart"
    )
    assert "`billing` has no kubernetes section" in await evidence(rig, "billing")
    await rig.kube.stop()
    reply = await evidence(rig, "checkout")
    assert reply.startswith(":x: Collecting evidence of `checkout` failed: Kubernetes API")
    assert archives(rig) == []
    [(_, _, failed)] = await rig.events("evidence_failed")
    assert "unreachable" in failed["error"]


async def test_a_missing_folder_is_named(rig: Rig) -> None:
    folder(rig).rmdir()
    assert "is not a folder; nothing was collected" in await evidence(rig, "checkout")
    assert await rig.events("evidence_") == []


async def test_collection_is_off_without_a_folder(slack: Harness) -> None:
    await slack.command("declare P1 --private leaked key")
    channel = slack.only_incident_channel()
    await slack.command("evidence checkout", channel=channel.id)
    assert (
        "Evidence collection is off: set FIREBREAK_EVIDENCE_DIR"
        in (slack.ephemeral_texts(ALICE)[-1])
    )


async def test_the_archive_is_bounded(kube: FakeKubernetes, tmp_path: Path) -> None:
    """Past its byte budget, files are left out and the gaps listed, not dropped silently."""
    kube.add(pod("checkout-c", ago=60))
    for name in ("checkout-a", "checkout-b", "checkout-c"):
        kube.set_log("shop", name, "x" * 4000)
    api = KubernetesApi(str(kube.write_kubeconfig(tmp_path / "kube")), timeout=2)
    target = KubernetesTarget("shop", "checkout", "app=checkout")
    try:
        found = await collect(
            api, target, deployment("checkout"), [], since_seconds=60, total_bytes=12_000
        )
    finally:
        api.close()
    logs = [p for p in found.files if p.startswith("logs/")]
    assert found.size <= 12_000 and len(logs) < 3
    assert any("left out, the archive reached its 12000 byte limit" in g for g in found.gaps)
