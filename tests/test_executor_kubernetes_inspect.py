"""`nodes`, `describe` and `set-memory` through the real `kubernetes` client against
emulator/kubernetes.py (the fixtures are test_executor_kubernetes's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from bot.executors.base import ExecutorError, KubernetesTarget, StateChanged
from bot.executors.kubernetes import KubernetesExecutor
from emulator.cluster import SimulatedCluster
from emulator.kubernetes import FakeKubernetes, event, node, node_metrics, pod
from tests.test_executor_kubernetes import TARGET, kube_fixture  # noqa: F401 (kube)

GI = 2**30


@pytest_asyncio.fixture
async def executor(kube: FakeKubernetes, tmp_path: Path) -> AsyncIterator[KubernetesExecutor]:
    """Warmed up as the app does at start, so loading the client's API classes (about a
    second of CPU) doesn't count against the 2 s timeout."""
    ex = KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kubeconfig")), timeout=2)
    await ex.warm_up()
    yield ex
    ex.close()


@pytest.fixture
def nodes(kube: FakeKubernetes) -> FakeKubernetes:
    """node-1 runs the checkout pods; node-2 is under memory pressure and runs a payments
    pod with big requests; node-3 is NotReady and cordoned."""
    kube.add(
        node("node-1", cpu="4", memory="16Gi"),
        node("node-2", cpu="2", memory="8Gi", pressure=("MemoryPressure",)),
        node("node-3", ready="Unknown", unschedulable=True),
        node_metrics("node-1", "1200m", "6000Mi"),
        node_metrics("node-2", "1900m", "7000Mi"),
    )
    heavy = pod("payments-b", "payments", {"app": "payments"}, containers=("api", "sidecar"))
    heavy["spec"]["nodeName"] = "node-2"
    for container in heavy["spec"]["containers"]:
        container["resources"] = {"requests": {"cpu": "500m", "memory": "2Gi"}}
    heavy["spec"]["initContainers"] = [
        {"name": "migrate", "image": "x", "resources": {"requests": {"memory": "6Gi"}}}
    ]
    done = pod("batch-1", "payments", {"app": "batch"}, phase="Succeeded")
    done["spec"]["nodeName"] = "node-2"
    kube.add(heavy, done)
    return kube


# -- nodes --------------------------------------------------------------------------------


async def test_nodes_show_conditions_requests_and_usage(nodes, executor):
    result = await executor.nodes(TARGET)
    assert result.ok, result.summary
    assert result.summary == (
        "3 nodes: 2 Ready, 1 Unknown; MemoryPressure on node-2; busiest node-2 (90% memory used)"
    )
    lines = result.output.splitlines()
    assert lines[1].startswith("node-1*")  # the service's node first, marked
    node2 = next(line for line in lines if line.startswith("node-2"))
    # The init container's 6Gi outweighs the two 2Gi containers; the Succeeded pod holds none.
    assert "MemoryPressure" in node2 and "1000m (52%)" in node2 and "6144Mi (79%)" in node2
    assert "1900m (98%)" in node2 and "7000Mi (90%)" in node2 and " 1/110" in node2
    node1 = next(line for line in lines if line.startswith("node-1"))
    assert "400m (10%)" in node1 and " 4/110" in node1  # with payments-a, in shop too
    assert "Unknown,SchedulingDisabled" in next(line for line in lines if "node-3" in line)
    assert result.details["nodes"]["node-2"]["pressure"] == ["MemoryPressure"]
    asked = [r.query.get("fieldSelector") for r in nodes.requests if r.path == "/api/v1/pods"]
    assert "spec.nodeName=node-2,status.phase!=Succeeded,status.phase!=Failed" in asked


async def test_a_big_cluster_shows_the_services_and_the_troubled_nodes_first(nodes, executor):
    nodes.add(*(node(f"node-0{i:02d}") for i in range(30)))
    result = await executor.nodes(TARGET)
    shown = [line.split()[0] for line in result.output.splitlines()[1:21]]
    assert shown[:3] == ["node-1*", "node-2", "node-3"]
    assert "(13 more nodes not shown)" in result.output
    assert result.summary.startswith("33 nodes: 32 Ready, 1 Unknown; MemoryPressure on node-2")


async def test_nodes_without_metrics_server_still_show_the_table(nodes, executor):
    nodes.metrics_available = False
    result = await executor.nodes(TARGET)
    assert result.ok and "busiest" not in result.summary
    assert "(no usage figures: metrics-server is not installed)" in result.output


async def test_nodes_forbidden_says_which_grant_is_missing(nodes, executor):
    nodes.forbid("list", "nodes")
    with pytest.raises(ExecutorError, match="may not list nodes in the cluster"):
        await executor.nodes(TARGET)


# -- describe -----------------------------------------------------------------------------


async def test_describe_picks_the_troubled_pod_with_its_own_events(kube, executor):
    crashing = kube.get("Pod", "shop", "checkout-c")
    mine = event("e1", "BackOff", "Back-off restarting failed container app", count=40)
    mine["involvedObject"].update(name="checkout-c", uid=crashing["metadata"]["uid"])
    namesake = event("e2", "Killing", "an older checkout-c, same name", object_name="checkout-c")
    other = event("e3", "Pulled", "image pulled", type="Normal", object_name="checkout-a")
    kube.add(mine, namesake, other)
    result = await executor.describe(TARGET)
    assert result.summary == (
        "checkout-c: CrashLoopBackOff, 0/1 ready, 12 restarts, last terminated OOMKilled; "
        "1 events (1 Warning)"
    )
    assert "Waiting: CrashLoopBackOff (back-off restarting app)" in result.output
    assert "Terminated: OOMKilled (exit 137" in result.output
    assert "limits.memory=256Mi" in result.output and "Back-off restarting" in result.output
    assert "same name" not in result.output and "image pulled" not in result.output
    selector = kube.requests[-1].query["fieldSelector"]
    assert f"involvedObject.uid={crashing['metadata']['uid']}" in selector


async def test_describe_a_named_pod_and_refuse_another_services(kube, executor):
    result = await executor.describe(TARGET, pod="checkout-a")
    assert result.summary.startswith("checkout-a: Running, 1/1 ready")
    assert "no events about this pod" in result.output
    with pytest.raises(ExecutorError, match="payments-a is not one of app=checkout in shop"):
        await executor.describe(TARGET, pod="payments-a")


async def test_describe_never_shows_env_values(kube, executor):
    secret = "sk_live_51HxSecretValue"
    crashing = kube.get("Pod", "shop", "checkout-c")
    crashing["spec"]["containers"][0]["env"] = [{"name": "STRIPE_KEY", "value": secret}]
    leak = event("e9", "Failed", "connect postgres://app:s3cr3t-pw@db:5432/shop refused")
    leak["involvedObject"].update(name="checkout-c", uid=crashing["metadata"]["uid"])
    kube.add(leak)
    result = await executor.describe(TARGET, pod="checkout-c")
    assert secret not in result.output and "STRIPE_KEY" not in result.output
    assert "s3cr3t-pw" not in result.output and "connect postgres://" in result.output


# -- set-memory ---------------------------------------------------------------------------


def limit_of(kube: FakeKubernetes) -> str:
    dep = kube.get("Deployment", "shop", "checkout")
    return dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]


async def test_set_memory_dry_run_then_the_pinned_write(kube, executor):
    dry = await executor.set_memory(TARGET, GI, dry_run=True)
    assert dry.summary == (
        "dry run: would have raised the memory limit of checkout/app in shop from 256Mi to 1Gi"
    )
    assert limit_of(kube) == "256Mi" and kube.patches[-1].dry_run
    assert kube.patches[-1].content_type == "application/json-patch+json"
    pinned = dry.details["pinned"]
    done = await executor.set_memory(TARGET, GI, dry_run=False, pinned=pinned)
    assert done.ok and limit_of(kube) == "1Gi"
    assert not kube.patches[-1].dry_run


async def test_set_memory_refuses_when_the_deployment_changed_since_the_dry_run(kube, executor):
    dry = await executor.set_memory(TARGET, GI, dry_run=True)
    kube.rollout("shop", "checkout", "registry.example.com/checkout:1.4.3")
    with pytest.raises(StateChanged, match="changed since this dry run"):
        await executor.set_memory(TARGET, GI, dry_run=False, pinned=dry.details["pinned"])
    assert limit_of(kube) == "256Mi"


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (128 * 2**20, "128Mi would lower the 256Mi memory limit of checkout/app; set-memory"),
        (256 * 2**20, "the 256Mi memory limit of checkout/app is already 256Mi"),
    ],
)
async def test_set_memory_only_raises(kube, executor, limit, message):
    with pytest.raises(ExecutorError, match=message):
        await executor.set_memory(TARGET, limit, dry_run=True)
    assert not kube.patches


async def test_set_memory_without_a_limit_is_refused(kube, executor):
    spec = kube.get("Deployment", "shop", "checkout")["spec"]["template"]["spec"]
    spec["containers"][0]["resources"] = {}
    with pytest.raises(ExecutorError, match="has no memory limit, so there is none to raise"):
        await executor.set_memory(TARGET, GI, dry_run=True)


async def test_hanging_api_answers_within_the_timeout(nodes, executor):
    nodes.delay = 30
    for call in (executor.nodes(TARGET), executor.describe(TARGET)):
        started = time.monotonic()
        with pytest.raises(ExecutorError, match="timeout after 2s"):
            await asyncio.wait_for(call, 10)
        assert time.monotonic() - started < 5


async def test_api_down_is_a_readable_error(nodes, executor: KubernetesExecutor):
    await nodes.stop()
    with pytest.raises(ExecutorError, match="connection refused"):
        await executor.set_memory(TARGET, GI, dry_run=True)


async def test_the_shells_simulated_cluster_answers_nodes_and_describe(tmp_path: Path) -> None:
    async with SimulatedCluster() as cluster:
        cluster.write_demo_files(tmp_path)
        executor = KubernetesExecutor(str(tmp_path / "kubeconfig"))
        target = KubernetesTarget("shop", "checkout", "app=checkout")
        try:
            nodes = await executor.nodes(target)
            assert nodes.summary == (
                "3 nodes: 3 Ready; MemoryPressure on node-eu-1b; "
                "busiest node-eu-1b (92% memory used)"
            )
            described = await executor.describe(target)
            assert "OOMKilled" in described.summary and "3 events (3 Warning)" in described.summary
            raised = await executor.set_memory(target, 2**30, dry_run=True)
            assert raised.summary.endswith("from 256Mi to 1Gi")
        finally:
            executor.close()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("limits/memory", "2Gb", "resources.limits[memory]: Invalid value: '2Gb'"),
        ("limits/memory", "50Mi", "Invalid value: '100Mi': must be less than or equal to memory"),
    ],
)
async def test_the_fake_api_server_validates_resources_as_the_real_one(
    kube: FakeKubernetes, tmp_path: Path, path: str, value: str, message: str
) -> None:
    """So a limit `set-memory` writes is one a real API server would take."""
    spec = kube.get("Deployment", "shop", "checkout")["spec"]["template"]["spec"]
    spec["containers"][0]["resources"]["requests"]["memory"] = "100Mi"
    config = kube.write_kubeconfig(tmp_path / "kubeconfig")
    patch = [
        {
            "op": "replace",
            "path": f"/spec/template/spec/containers/0/resources/{path}",
            "value": value,
        }
    ]

    def send() -> None:
        api = client.AppsV1Api(kube_config.new_client_from_config(str(config)))
        api.patch_namespaced_deployment("checkout", "shop", patch, dry_run="All")

    with pytest.raises(ApiException) as caught:
        await asyncio.to_thread(send)
    assert caught.value.status == 422 and message in (caught.value.body or "")
