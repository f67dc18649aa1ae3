"""KubernetesExecutor through the real `kubernetes` client against emulator/kubernetes.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bot.actions.catalog import OPERATIONS
from bot.executors import kubernetes as executor_module
from bot.executors.base import ExecutorError, KubernetesTarget, StateChanged
from bot.executors.kubernetes import API_CALLS, OPERATION_CALLS, RESTARTED_AT, KubernetesExecutor
from bot.executors.kubernetes_api import CLUSTER_SCOPED, rbac_attributes
from emulator.kubernetes import (
    FakeKubernetes,
    deployment,
    event,
    node,
    pod,
    pod_metrics,
    replicaset,
    write_kubeconfig,
)

DEPLOY = Path(__file__).parent.parent / "deploy" / "kubernetes"
OLD, NEW = "registry.example.com/checkout:1.4.1", "registry.example.com/checkout:1.4.2"
TARGET = KubernetesTarget(namespace="shop", deployment="checkout", selector="app=checkout")
# Log lines stamped a few minutes ago, inside every `since` window the tests ask for.
STAMP = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")


@pytest_asyncio.fixture(name="kube")
async def kube_fixture() -> AsyncIterator[FakeKubernetes]:
    """checkout at revision 2 (image NEW) with revision 1 (image OLD) in its history,
    two healthy pods, one crash-looping OOMKilled pod, and a pod of another app."""
    async with FakeKubernetes() as server:
        dep = deployment("checkout", replicas=3, image=NEW, revision=2, ready=2)
        server.add(dep, replicaset(dep, 1, OLD, ago=86400), replicaset(dep, 2, NEW, replicas=3))
        server.add(
            pod("checkout-a", image=NEW, ago=900),
            pod("checkout-b", image=NEW, ago=600),
            pod(
                "checkout-c",
                image=NEW,
                ago=300,
                ready=False,
                restarts=12,
                waiting="CrashLoopBackOff",
                last_terminated="OOMKilled",
            ),
            pod("payments-a", labels={"app": "payments"}, image="payments:2", ago=60),
        )
        yield server


@pytest.fixture
def executor(kube: FakeKubernetes, tmp_path: Path) -> Iterator[KubernetesExecutor]:
    ex = KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kubeconfig")), timeout=2)
    yield ex
    ex.close()


def template_of(kube: FakeKubernetes) -> dict:
    return kube.get("Deployment", "shop", "checkout")["spec"]["template"]


# -- diagnostics --------------------------------------------------------------------------


async def test_pods_shows_crashloop_and_oomkilled_for_the_selected_app_only(kube, executor):
    result = await executor.pods(TARGET)
    assert result.ok
    assert result.summary == "3 pods: 2 Running, 1 CrashLoopBackOff (12 restarts, 1 OOMKilled)"
    assert "payments" not in result.output
    crashing = next(line for line in result.output.splitlines() if "checkout-c" in line)
    assert "0/1" in crashing and "CrashLoopBackOff" in crashing and "OOMKilled" in crashing
    assert kube.requests[-1].query["labelSelector"] == "app=checkout"


async def test_pods_with_no_match(executor):
    result = await executor.pods(KubernetesTarget("shop", "checkout", "app=nothing"))
    assert result.ok and result.summary == "no pods match app=nothing in shop"


def texts(output: str) -> list[str]:
    """The log lines of an output without their `HH:MM:SS pod` prefix."""
    return [line.split("  ", 1)[1] for line in output.splitlines() if "  " in line]


async def test_logs_read_every_pod_merged_by_time_tailed_and_redacted(kube, executor):
    kube.set_log("shop", "checkout-a", f"{STAMP}:01Z a boot\n{STAMP}:04Z a ready\n")
    kube.set_log("shop", "checkout-b", f"{STAMP}:02Z b boot\n{STAMP}:05Z b ready\n")
    kube.set_log("shop", "checkout-c", f"{STAMP}:03Z password=hunter2\n{STAMP}:06Z c dies\n")
    result = await executor.logs(TARGET, tail=4)
    assert result.output.splitlines() == [
        f"{STAMP[11:]}:03 checkout-c  password=***",
        f"{STAMP[11:]}:04 checkout-a  a ready",
        f"{STAMP[11:]}:05 checkout-b  b ready",
        f"{STAMP[11:]}:06 checkout-c  c dies",
    ]
    assert result.summary.startswith("last 4 log lines of app=checkout in shop (3 sources")
    queries = [r.query for r in kube.requests if r.path.endswith("/log")]
    assert len(queries) == 3 and all(q["timestamps"] == "true" for q in queries)
    assert {q["tailLines"] for q in queries} == {"4"}
    assert "payments" not in str([r.path for r in kube.requests])


async def test_grep_keeps_the_last_matching_lines_literally_in_any_case(kube, executor):
    lines = [f"{i} ERROR conn reset .*" if i % 3 == 0 else f"{i} ok" for i in range(30)]
    kube.set_log("shop", "checkout-c", "\n".join(lines) + "\n")
    result = await executor.logs(TARGET, tail=2, grep="error CONN reset .*", since=3600)
    assert texts(result.output) == ["24 ERROR conn reset .*", "27 ERROR conn reset .*"]
    query = kube.requests[-1].query
    assert query["sinceSeconds"] == "3600" and "tailLines" not in query  # tail after the filter
    nothing = await executor.logs(TARGET, grep="(")
    assert nothing.summary.startswith("no log lines")


async def test_since_is_the_api_window(kube, executor):
    kube.set_log("shop", "checkout-a", "old\nnew\n", spacing=600)
    result = await executor.logs(TARGET, since=300, pod="checkout-a")
    assert texts(result.output) == ["new"]


async def test_the_byte_budget_cuts_a_window_and_says_so(kube, executor, monkeypatch):
    kube.set_log("shop", "checkout-a", "x" * 300 + "\n" + "y" * 2000 + "\n")
    kube.set_log("shop", "checkout-b", "short\n")
    monkeypatch.setattr(executor_module, "LOG_MIN_BYTES", 1024)
    monkeypatch.setattr(executor_module, "LOG_BUDGET_BYTES", 3000)  # 1000 a pod, at least 1024
    result = await executor.logs(TARGET, tail=10)
    assert {r.query["limitBytes"] for r in kube.requests if r.path.endswith("/log")} == {"1024"}
    assert "(checkout-a: only the first 1 KiB of its window; narrow since)" in result.output
    assert "short" in result.output


async def test_previous_logs_of_a_named_pod(kube, executor):
    kube.set_log("shop", "checkout-a", "current\n")
    kube.set_log("shop", "checkout-a", "fatal: out of memory\n", previous=True)
    result = await executor.logs(TARGET, previous=True, pod="checkout-a")
    assert texts(result.output) == ["fatal: out of memory"]
    assert "(previous containers)" in result.summary


async def test_previous_logs_of_every_pod_skip_pods_without_one(kube, executor):
    kube.set_log("shop", "checkout-c", "OOM\n", previous=True)
    result = await executor.logs(TARGET, previous=True)
    assert texts(result.output)[0] == "OOM"
    assert 'checkout-a: rejected by the API server: previous terminated container "app"' in (
        result.output
    )


async def test_previous_logs_missing_is_a_readable_error(executor):
    with pytest.raises(ExecutorError, match='previous terminated container "app"'):
        await executor.logs(TARGET, previous=True, pod="checkout-b")


async def test_logs_refuse_a_pod_of_another_service(executor):
    with pytest.raises(ExecutorError, match="payments-a is not one of app=checkout in shop"):
        await executor.logs(TARGET, pod="payments-a")


async def test_errors_group_every_pods_problems(kube, executor):
    kube.set_log("shop", "checkout-a", "ERROR db timeout after 30s to 10.0.0.7\ninfo ok\n")
    kube.set_log("shop", "checkout-b", "ERROR db timeout after 31s to 10.0.0.8\n")
    kube.set_log("shop", "checkout-c", "WARN token=abc123 expired\n")
    result = await executor.errors(TARGET, since=3600)
    assert result.summary.startswith("3 error/warning lines of 2 kinds in the last 1h")
    assert result.details["top"] == [
        {"message": "ERROR db timeout after <n>s to <ip>", "count": 2},
        {"message": "WARN token=*** expired", "count": 1},
    ]
    assert "abc123" not in result.output
    assert {r.query["sinceSeconds"] for r in kube.requests if r.path.endswith("/log")} == {"3600"}


async def test_events_are_warnings_newest_first_and_redacted(kube, executor):
    kube.add(
        event("old", "FailedScheduling", "0/3 nodes are available", ago=3000),
        event("new", "BackOff", "Back-off restarting failed container, token=abc123", ago=30),
        event("fine", "Pulled", "Successfully pulled image", type="Normal", ago=10),
    )
    result = await executor.events(TARGET)
    assert result.summary == "2 Warning events in shop; latest: BackOff on pod/checkout-1"
    lines = result.output.splitlines()
    assert "BackOff" in lines[1] and "FailedScheduling" in lines[2]
    assert "Pulled" not in result.output and "abc123" not in result.output
    assert kube.requests[-1].query["fieldSelector"] == "type=Warning"


async def test_deployment_status(kube, executor):
    kube.pause("shop", "checkout")
    result = await executor.deployment(TARGET)
    assert result.summary == "checkout: 2/3 ready, 3 updated, 2 available, rollout paused"
    assert f"app={NEW}" in result.output and "Progressing" in result.output
    assert result.details["paused"] is True and result.details["revision"] == "2"


async def test_history_lists_owned_revisions_and_marks_current(kube, executor):
    stranger = replicaset(deployment("checkout"), 9, "other:1")  # same labels, other owner
    kube.add(stranger)
    result = await executor.history(TARGET)
    assert result.details == {"revisions": [1, 2], "current": 2}
    assert result.summary == "2 revisions of checkout, current 2, previous 1"
    assert "2 *" in result.output and OLD in result.output and "other:1" not in result.output


async def test_top_reports_usage_busiest_first(kube, executor):
    kube.add(
        pod_metrics("checkout-a", {"app": ("250m", "200Mi")}),
        pod_metrics("checkout-b", {"app": ("1500000000n", "524288Ki")}),
        pod_metrics("payments-a", {"app": ("3", "1Gi")}, labels={"app": "payments"}),
    )
    result = await executor.top(TARGET)
    assert (
        result.summary == "2 pods use 1750m CPU and 712Mi memory; busiest checkout-b (1500m, 512Mi)"
    )
    assert result.details["pods"]["checkout-a"] == {"cpu_m": 250, "memory_mi": 200}


async def test_top_without_metrics_server(kube, executor):
    kube.metrics_available = False
    with pytest.raises(ExecutorError, match="^metrics-server is not available in namespace shop$"):
        await executor.top(TARGET)


async def test_diagnostics_never_touch_secrets(kube, executor):
    kube.set_log("shop", "checkout-c", "x\n")
    for diagnostic in (
        executor.pods,
        executor.logs,
        executor.events,
        executor.deployment,
        executor.history,
        executor.top,
        lambda target: executor.errors(target, since=60),
    ):
        await diagnostic(TARGET)
    assert kube.requests and not [r for r in kube.requests if "secret" in r.path]


# -- mitigations --------------------------------------------------------------------------


async def test_restart_dry_run_records_patch_but_changes_nothing(kube, executor):
    before = template_of(kube)
    result = await executor.restart(TARGET, dry_run=True)
    assert result.summary.startswith("dry run: would have restarted checkout in shop")
    (patch,) = kube.patches
    assert patch.dry_run and patch.content_type == "application/strategic-merge-patch+json"
    assert RESTARTED_AT in patch.body["spec"]["template"]["metadata"]["annotations"]
    assert template_of(kube) == before


async def test_restart_stamps_the_pod_template(kube, executor):
    result = await executor.restart(TARGET, dry_run=False)
    stamp = template_of(kube)["metadata"]["annotations"][RESTARTED_AT]
    assert stamp == result.details["restarted_at"] and not kube.patches[0].dry_run
    age = datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert 0 <= age.total_seconds() < 60


async def test_restart_and_rollback_refuse_a_paused_deployment(kube, executor):
    kube.pause("shop", "checkout")
    with pytest.raises(ExecutorError, match="can't restart paused deployment checkout"):
        await executor.restart(TARGET, dry_run=False)
    with pytest.raises(ExecutorError, match="can't roll back paused deployment checkout"):
        await executor.rollback(TARGET, None, dry_run=True)
    assert kube.patches == []


async def test_rollback_dry_run(kube, executor):
    before = template_of(kube)
    result = await executor.rollback(TARGET, None, dry_run=True)
    assert (
        result.summary
        == f"dry run: would have rolled checkout back from revision 2 to 1 (app={OLD})"
    )
    assert kube.patches[0].dry_run and template_of(kube) == before


async def test_rollback_restores_the_old_template_without_hash(kube, executor):
    old_rs = next(
        rs
        for rs in kube.objects["ReplicaSet"].values()
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    )
    result = await executor.rollback(TARGET, None, dry_run=False)
    assert result.details["revision"] == 1 and result.details["from_revision"] == 2
    (patch,) = kube.patches
    assert patch.content_type == "application/json-patch+json" and not patch.dry_run
    expected = old_rs["spec"]["template"]
    expected["metadata"]["labels"].pop("pod-template-hash")
    assert patch.body[0] == {"op": "replace", "path": "/spec/template", "value": expected}
    assert template_of(kube) == expected
    assert result.output == f"revision 2 -> 1\nimages: app={NEW} -> app={OLD}"
    annotations = kube.get("Deployment", "shop", "checkout")["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "2"  # kept, as kubectl does


async def test_rollback_without_revision_goes_to_the_second_newest(kube, executor):
    dep = kube.get("Deployment", "shop", "checkout")
    newest = "registry.example.com/checkout:1.5.0"
    kube.add(replicaset(dep, 3, newest, replicas=3))
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = newest
    dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    result = await executor.rollback(TARGET, None, dry_run=False)
    assert (result.details["from_revision"], result.details["revision"]) == (3, 2)
    assert template_of(kube)["spec"]["containers"][0]["image"] == NEW


async def test_rollback_to_a_given_revision_checks_it(kube, executor):
    with pytest.raises(ExecutorError, match="revision 7 not found for checkout \\(have: 1, 2\\)"):
        await executor.rollback(TARGET, 7, dry_run=True)
    with pytest.raises(ExecutorError, match="revision 2 already matches the current template"):
        await executor.rollback(TARGET, 2, dry_run=True)
    assert kube.patches == []


async def test_dry_run_is_still_validated_by_the_server(kube, executor):
    broken = replicaset(kube.get("Deployment", "shop", "checkout"), 7, OLD)
    broken["spec"]["template"]["metadata"]["labels"] = {"app": "elsewhere"}
    kube.add(broken)
    with pytest.raises(ExecutorError, match="^rejected by the API server: .*`selector` does not"):
        await executor.rollback(TARGET, 7, dry_run=True)
    assert kube.patches[0].dry_run


async def test_rollback_without_history(kube, executor):
    for key in [k for k, rs in kube.objects["ReplicaSet"].items() if OLD in str(rs)]:
        del kube.objects["ReplicaSet"][key]
    with pytest.raises(
        ExecutorError, match="no rollout history: checkout has no previous revision"
    ):
        await executor.rollback(TARGET, None, dry_run=False)


async def test_a_confirmed_rollback_goes_to_the_pinned_revision_not_to_previous(kube, executor):
    dry = await executor.rollback(TARGET, None, dry_run=True)
    assert dry.details["pinned"] == {"generation": 2, "revision": 1, "from_revision": 2}
    # The history changes without the Deployment's spec changing: "previous" would now
    # be revision 2, the current one; the pinned revision still is 1.
    dep = kube.get("Deployment", "shop", "checkout")
    kube.add(replicaset(dep, 3, "checkout:1.5.0"))
    done = await executor.rollback(TARGET, None, dry_run=False, pinned=dry.details["pinned"])
    assert done.summary.startswith("rolled checkout back from revision 2 to 1")
    assert template_of(kube)["spec"]["containers"][0]["image"] == OLD
    with pytest.raises(StateChanged, match="checkout changed since this dry run; propose again"):
        await executor.rollback(TARGET, None, dry_run=False, pinned=dry.details["pinned"])


async def test_scale_dry_run_then_for_real(kube, executor):
    result = await executor.scale(TARGET, 6, dry_run=True)
    assert result.summary == "dry run: would have scaled checkout in shop from 3 to 6 replicas"
    assert kube.get("Deployment", "shop", "checkout")["spec"]["replicas"] == 3
    result = await executor.scale(TARGET, 6, dry_run=False)
    assert result.details == {
        "from": 3,
        "to": 6,
        "dry_run": False,
        "pinned": {"generation": 2, "from": 3, "to": 6},
    }
    assert kube.get("Deployment", "shop", "checkout")["spec"]["replicas"] == 6
    assert [p.path.endswith("/deployments/checkout/scale") for p in kube.patches] == [True, True]
    assert [p.dry_run for p in kube.patches] == [True, False]
    assert kube.patches[1].body == {"spec": {"replicas": 6}}


# -- failures -----------------------------------------------------------------------------


async def test_forbidden_is_reported_with_verb_resource_and_namespace(kube, executor):
    kube.forbid("patch", "deployments/scale")
    with pytest.raises(ExecutorError) as err:
        await executor.scale(TARGET, 4, dry_run=False)
    assert (
        str(err.value) == "forbidden: the service account may not patch deployments/scale in shop"
    )


async def test_bad_token_reads_as_forbidden(kube, tmp_path):
    path = write_kubeconfig(tmp_path / "kc", {"fake": (kube.url, "wrong-token", "shop")})
    ex = KubernetesExecutor(str(path), timeout=2)
    with pytest.raises(ExecutorError, match="^forbidden: the service account may not list pods"):
        await ex.pods(TARGET)
    ex.close()


async def test_missing_deployment_is_not_found(executor):
    with pytest.raises(ExecutorError, match='^not found: deployments.apps "nope" not found$'):
        await executor.deployment(KubernetesTarget("shop", "nope", "app=nope"))


async def test_api_down_fails_fast(kube, executor):
    await kube.stop()
    started = time.monotonic()
    with pytest.raises(ExecutorError, match="^Kubernetes API unreachable"):
        await executor.pods(TARGET)
    assert time.monotonic() - started < 2
    await kube.start()  # back up on the same port: the cached client recovers
    assert (await executor.pods(TARGET)).ok


async def test_slow_api_times_out_within_the_timeout(kube, tmp_path):
    kube.delay = 5
    ex = KubernetesExecutor(str(kube.write_kubeconfig(tmp_path / "kc")), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"^Kubernetes API unreachable \(timeout after 0.5s\)$"):
        await ex.deployment(TARGET)
    assert time.monotonic() - started < 1.5
    ex.close()


async def test_target_context_selects_the_cluster(kube, tmp_path):
    async with FakeKubernetes() as staging:
        staging.add(deployment("checkout", replicas=1, image="checkout:staging"))
        path = write_kubeconfig(
            tmp_path / "kc",
            {
                "prod": (kube.url, kube.token, "shop"),
                "staging": (staging.url, staging.token, "shop"),
            },
        )
        ex = KubernetesExecutor(str(path), timeout=2)
        prod = await ex.deployment(TARGET)
        stage = await ex.deployment(KubernetesTarget("shop", "checkout", "app=checkout", "staging"))
        ex.close()
    assert prod.details["images"] == [f"app={NEW}"]
    assert stage.details["images"] == ["app=checkout:staging"]


async def test_unknown_context_is_a_configuration_error(executor):
    with pytest.raises(ExecutorError, match="^Kubernetes configuration error"):
        await executor.pods(KubernetesTarget("shop", "checkout", "app=checkout", "nowhere"))


# -- deploy manifests ---------------------------------------------------------------------


def granted(role: dict) -> set[tuple[str, str]]:
    """(verb, resource) pairs a Role or ClusterRole grants, metrics resources as
    `pods.metrics.k8s.io` the way API_CALLS names them."""
    return {
        (verb, f"{res}.{group}" if group == "metrics.k8s.io" else res)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }


def test_roles_grant_exactly_what_the_executor_calls_and_nothing_dangerous():
    docs = list(yaml.safe_load_all((DEPLOY / "role.yaml").read_text()))
    roles = [d for d in docs if d["kind"] == "Role"]
    assert {r["metadata"]["namespace"] for r in roles} == {"shop", "payments"}
    assert all(r["rules"] == roles[0]["rules"] for r in roles)
    (cluster,) = [
        d
        for d in yaml.safe_load_all((DEPLOY / "clusterrole.yaml").read_text())
        if d["kind"] == "ClusterRole"
    ]

    def needed(cluster_wide: bool) -> set[tuple[str, str]]:
        return {
            (verb, resource)
            for method, (_, verb, resource) in API_CALLS.items()
            if (method in CLUSTER_SCOPED) == cluster_wide
        }

    assert granted(roles[0]) == needed(cluster_wide=False)
    assert granted(cluster) == needed(cluster_wide=True)
    for role in (roles[0], cluster):
        verbs = {verb for verb, r in granted(role) if r != "networkpolicies"}
        assert verbs <= {"get", "list", "patch"}
        assert not [r for _, r in granted(role) if "secret" in r or "*" in r]
    assert {verb for verb, _ in granted(cluster)} == {"list"}
    # isolate's NetworkPolicy: in each namespace's Role only, never cluster-wide
    assert {v for v, r in granted(roles[0]) if r == "networkpolicies"} == {
        "get",
        "create",
        "delete",
    }


def test_bindings_name_firebreaks_service_account():
    for name in ("role.yaml", "clusterrole.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if doc["kind"].endswith("Binding"):
                assert doc["subjects"] == [
                    {"kind": "ServiceAccount", "name": "firebreak", "namespace": "firebreak"}
                ]
                assert doc["roleRef"]["kind"] == doc["kind"].removesuffix("Binding")


def test_deployment_takes_secrets_by_reference_and_probes_port_3000():
    dep = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["key"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "firebreak"


# -- what each operation needs (`firebreak check --live` asks for exactly this) ------------

ARGS: dict[str, dict[str, object]] = {
    "rollback": {"revision": None, "dry_run": False},
    "scale": {"replicas": 4, "dry_run": False},
    "restart": {"dry_run": False},
    "isolate": {"dry_run": False},
    "unisolate": {"dry_run": False},
    "set_memory": {"limit": 2**31, "dry_run": False},
    "errors": {"since": 3600},
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS["kubernetes"]))
async def test_operation_calls_is_what_each_operation_is_authorised_for(kube, executor, operation):
    if operation == "unisolate":  # there is a policy to remove
        await executor.isolate(TARGET, dry_run=False)
        kube.authorized.clear()
    if operation == "nodes":  # a node to read the usage of
        kube.add(node("node-1"))
    await getattr(executor, operation)(TARGET, **ARGS.get(operation, {}))
    expected = {API_CALLS[call][1:] for call in OPERATION_CALLS[operation]}
    assert set(kube.authorized) == expected


async def test_can_i_asks_a_self_subject_access_review_per_call(kube, executor):
    kube.forbid("patch", "deployments/scale")
    kube.forbid("*", "pods.metrics.k8s.io")
    answers = {call: (await executor.can_i(TARGET, call))[0] for call in API_CALLS}
    assert {call for call, allowed in answers.items() if not allowed} == {
        "patch_namespaced_deployment_scale",
        "list_namespaced_custom_object",
    }
    assert not kube.authorized  # a review reads and changes nothing
    [review] = [r for r in kube.requests if r.path.endswith("selfsubjectaccessreviews")][:1]
    assert review.method == "POST"


def test_rbac_attributes_name_group_resource_and_subresource_as_rbac_does():
    assert rbac_attributes("patch_namespaced_deployment_scale") == ("apps", "deployments", "scale")
    assert rbac_attributes("read_namespaced_pod_log") == ("", "pods", "log")
    assert rbac_attributes("list_namespaced_custom_object") == ("metrics.k8s.io", "pods", None)
    assert rbac_attributes("list_namespaced_replica_set") == ("apps", "replicasets", None)
