"""The demo cluster of `firebreak shell` and `firebreak demo`, on the fake Kubernetes API.

One `checkout` Deployment in namespace `shop`: revision 7 (image 1.4.2) has a
pod in CrashLoopBackOff after OOMKills; revision 6 (1.4.1) was healthy. The API
is emulator/kubernetes.py, the same fake the tests use, so runbook actions run
the real executor end to end; this module seeds it and plays the deployment
controller after each write: rolling back to 1.4.1 heals the pods, restarting
1.4.2 does not, and `dryRun=All` changes nothing. It also serves checkout's
health and readiness URLs, which fail while a pod is down, and a Prometheus
(emulator/prometheus.py) whose metrics and alert follow the pods' health.

Beside it, a Docker Engine (emulator/docker.py) runs the Compose service `backend`
(project `prod`, as in the seeds' docker-compose.prod.yml): two containers on 2.3.1,
one unhealthy and logging payment timeouts, with 2.3.0 still on the engine for a
rollback. Its address is in DOCKER_HOST_ENV for the targets file to name. And checkout's
cart cache is a Redis (emulator/redis.py, its URL in REDIS_ENV) near its memory limit and
evicting, its slowlog led by the `KEYS cart:*` of 1.4.2's cache warm-up.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from emulator.cluster_metrics import QUERIES, CheckoutMetrics
from emulator.docker import FakeDocker
from emulator.kubernetes import FakeKubernetes, node, node_metrics, pod_metrics, timestamp
from emulator.prometheus import FakePrometheus
from emulator.redis import FakeRedis

Obj = dict[str, Any]
DOCKER_HOST_ENV = "FIREBREAK_DEMO_DOCKER_HOST"
BACKEND = "registry.example.com/backend"
BACKEND_LOG = [
    '{"level":"info","msg":"GET /health 200"}',
    '{"level":"error","msg":"payment provider timeout after 30000ms","order":"ord_5c1e",'
    '"upstream":"10.0.4.12:443"}',
    '{"level":"warn","msg":"db pool exhausted (20/20), waiting"}',
    '{"level":"error","msg":"payment provider timeout after 30001ms","order":"ord_77a0",'
    '"upstream":"10.0.4.13:443"}',
    '{"level":"info","msg":"POST /api/payments 504","duration_ms":30002}',
]
NAMESPACE, NAME, CONTEXT = "shop", "checkout", "firebreak-demo"
PROMETHEUS_ENV = "FIREBREAK_DEMO_PROMETHEUS_URL"  # set by the shell to `prometheus.base_url`
REDIS_ENV = "FIREBREAK_DEMO_REDIS_URL"  # set by the shell to `redis.url`
REGISTRY = "registry.example.com/checkout"
BAD, GOOD = f"{REGISTRY}:1.4.2", f"{REGISTRY}:1.4.1"
REVISION = "deployment.kubernetes.io/revision"
SUFFIXES = ("x7k2p", "q9w4m", "b3n8z", "h5t6r", "c1v0d", "m2l9s", "t4g7k", "w8e3j")
LOG_OK = [
    '{"level":"info","msg":"GET /health 200","duration_ms":2}',
    '{"level":"info","msg":"POST /api/checkout 200","duration_ms":84,"order":"ord_81f2"}',
]
LOG_CRASH = [
    '{"level":"info","msg":"checkout starting","version":"1.4.2"}',
    '{"level":"info","msg":"connected to postgres","host":"checkout-db","pool":20}',
    '{"level":"info","msg":"warming cart cache","entries":1200000}',
    '{"level":"warn","msg":"heap at 243Mi of the 256Mi limit"}',
    "fatal error: runtime: out of memory",
]


def _uid(name: str) -> str:
    """A stable UID per object name, so an event can name its pod's."""
    uid = hashlib.sha256(name.encode()).hexdigest()
    return f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:32]}"


def _meta(name: str, ago: float, **extra: Any) -> Obj:
    created = timestamp(ago)
    return {
        "name": name,
        "namespace": NAMESPACE,
        "uid": _uid(name),
        "creationTimestamp": created,
        **extra,
    }


def _image(obj: Obj) -> str:
    """The image of an object's pod template (or a pod's spec)."""
    spec = obj["spec"].get("template", obj)["spec"]
    return str(spec["containers"][0]["image"])


def _template(image: str, pod_hash: str | None = None) -> Obj:
    labels = {"app": NAME} | ({"pod-template-hash": pod_hash} if pod_hash else {})
    container = {
        "name": "app",
        "image": image,
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
    }
    return {"metadata": {"labels": labels}, "spec": {"containers": [container]}}


class SimulatedCluster:
    """The fake API server seeded with checkout, and checkout's own health endpoints."""

    def __init__(self) -> None:
        self.api = FakeKubernetes(token="firebreak-demo")
        self.metrics = CheckoutMetrics(bad_for=1500)  # since the 1.4.2 deploy below
        self.prometheus = FakePrometheus(self.metrics.series(), self.metrics.alerts)
        deployment: Obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(
                NAME, 86400 * 30, generation=1, labels={"app": NAME}, annotations={REVISION: "7"}
            ),
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": NAME}},
                "template": _template(BAD),
                "strategy": {"type": "RollingUpdate"},
            },
        }
        self.api.add(deployment)
        for image, revision, ago in ((GOOD, 6, 86400 * 2), (BAD, 7, 1500)):
            self.api.add(self._replicaset(deployment, image, revision, ago))
        self._image = BAD
        self._reconcile()
        crashing = self.pods()[-1]["metadata"]["name"]
        self.api.add(
            _event(crashing, "BackOff", "Back-off restarting failed container app", 40, 31),
            _event(crashing, "OOMKilled", "Container app exceeded its 256Mi memory limit", 95, 7),
            _event(crashing, "Unhealthy", "Readiness probe failed: statuscode: 503", 30, 52),
        )
        # Three nodes; checkout's runs hot, as an OOMKilling pod's node does.
        self.api.add(
            node("node-eu-1a", memory="8Gi"),
            node("node-eu-1b", memory="8Gi", pressure=("MemoryPressure",)),
            node("node-eu-1c", memory="8Gi"),
            node_metrics("node-eu-1a", "850m", "3900Mi"),
            node_metrics("node-eu-1b", "1720m", "7150Mi"),
            node_metrics("node-eu-1c", "430m", "2100Mi"),
        )
        self.api.controller = self._reconcile
        self._runner: web.AppRunner | None = None
        self.service_url = ""
        self.docker = FakeDocker()
        _seed_compose(self.docker)
        self.redis = FakeRedis(maxmemory=256 * 2**20, policy="allkeys-lru", uptime=86400 * 12)
        _seed_cache(self.redis)

    @property
    def url(self) -> str:
        """The API server's address."""
        return self.api.url

    @property
    def deployment(self) -> Obj:
        return self.api.get("Deployment", NAMESPACE, NAME)

    def _replicasets(self) -> list[Obj]:
        return list(self.api.objects.get("ReplicaSet", {}).values())

    @staticmethod
    def _replicaset(owner: Obj, image: str, revision: int, ago: float) -> Obj:
        pod_hash = hashlib.sha256(image.encode()).hexdigest()[:9]
        reference: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
        reference |= {"controller": True, "uid": owner["metadata"]["uid"]}
        template = _template(image, pod_hash)
        labels = dict(template["metadata"]["labels"])
        metadata = _meta(f"{NAME}-{pod_hash}", ago, labels=labels, ownerReferences=[reference])
        metadata["annotations"] = {REVISION: str(revision)}
        spec = {"replicas": 0, "selector": {"matchLabels": labels}, "template": template}
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata, "spec": spec}

    def _current(self) -> Obj:
        return next(rs for rs in self._replicasets() if _image(rs) == _image(self.deployment))

    def pods(self) -> list[Obj]:
        """The current ReplicaSet's pods; on the bad image the last one crash-loops."""
        rs = self._current()
        replicas = int(self.deployment["spec"]["replicas"])
        return [
            _pod(
                f"{rs['metadata']['name']}-{SUFFIXES[i % len(SUFFIXES)]}",
                rs["spec"]["template"],
                crashing=_image(rs) == BAD and i == replicas - 1,
            )
            for i in range(replicas)
        ]

    def _reconcile(self) -> None:
        """What the deployment controller and kubelet would do after a write: the
        Deployment's image picks its ReplicaSet (a template it ran before gets the next
        revision), that ReplicaSet gets the replicas, and the pods, their logs and
        metrics follow."""
        dep = self.deployment
        dep["spec"]["template"]["metadata"]["labels"].pop("pod-template-hash", None)
        image = _image(dep)
        current = next((rs for rs in self._replicasets() if _image(rs) == image), None)
        if current is None:
            revisions = [int(rs["metadata"]["annotations"][REVISION]) for rs in self._replicasets()]
            current = self._replicaset(dep, image, max(revisions), 0)
            self.api.add(current)
            self._image = ""
        if image != self._image:
            revision = 1 + max(
                int(rs["metadata"]["annotations"][REVISION]) for rs in self._replicasets()
            )
            current["metadata"]["annotations"][REVISION] = str(revision)
            dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            self._image = image
        for rs in self._replicasets():
            replicas = dep["spec"]["replicas"] if rs is current else 0
            crashing = 1 if _image(rs) == BAD and replicas else 0
            rs["spec"]["replicas"] = replicas
            rs["status"] = {"replicas": replicas, "readyReplicas": replicas - crashing}
        pods = self.pods()
        self.api.objects["Pod"], self.api.objects["PodMetrics"] = {}, {}
        self.api.logs.clear()
        for pod in pods:
            name, ready = pod["metadata"]["name"], _ready(pod)
            usage = ("40m", "180Mi") if ready else ("310m", "251Mi")
            labels = pod["metadata"]["labels"]
            self.api.add(pod, pod_metrics(name, {"app": usage}, NAMESPACE, labels))
            log = "\n".join(LOG_OK if ready else LOG_CRASH) + "\n"
            self.api.set_log(NAMESPACE, name, log)
            if not ready:
                self.api.set_log(NAMESPACE, name, log, previous=True)
        dep["status"] = self._status(pods)
        self.metrics.healthy(all(_ready(p) for p in pods))

    def _status(self, pods: list[Obj]) -> Obj:
        """The Deployment's status as the API server reports it."""
        ready = sum(_ready(p) for p in pods)
        healthy = ready == len(pods)
        since = {"lastUpdateTime": timestamp(90), "lastTransitionTime": timestamp(90)}
        rs_name = self._current()["metadata"]["name"]
        available = {
            "type": "Available",
            "status": str(healthy),
            "reason": "MinimumReplicasAvailable" if healthy else "MinimumReplicasUnavailable",
            "message": f"{ready}/{len(pods)} replicas ready",
            **since,
        }
        progressing = {
            "type": "Progressing",
            "status": "True",
            "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
            **since,
        }
        counts = {"replicas": len(pods), "updatedReplicas": len(pods)}
        counts |= {"readyReplicas": ready, "availableReplicas": ready}
        return {**counts, "conditions": [available, progressing]}

    async def _health(self, request: web.Request) -> web.Response:
        down = [p["metadata"]["name"] for p in self.pods() if not _ready(p)]
        body = {"status": "degraded", "unready_pods": down} if down else {"status": "ok"}
        return web.json_response(body, status=503 if down else 200)

    async def start(self) -> None:
        await self.api.start()
        await self.prometheus.start()
        await self.docker.start()
        await self.redis.start()
        app = web.Application()
        app.router.add_get(f"/{NAME}/health", self._health)
        app.router.add_get(f"/{NAME}/ready", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.service_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.prometheus.stop()
        await self.api.close()
        await self.docker.close()
        await self.redis.close()

    async def __aenter__(self) -> SimulatedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_demo_files(self, folder: Path) -> Path:
        """`kubeconfig` and `targets.yml` in `folder` pointing checkout here; returns the latter."""
        self.api.write_kubeconfig(folder / "kubeconfig", {CONTEXT: NAMESPACE})
        kubernetes = {"namespace": NAMESPACE, "deployment": NAME, "selector": f"app={NAME}"}
        base = f"{self.service_url}/{NAME}"
        http = {"health": f"{base}/health", "readiness": f"{base}/ready"}
        service = {
            "kubernetes": {**kubernetes, "max_replicas": 10, "max_memory": "1Gi"},
            "postgres": {"url_env": "CHECKOUT_DATABASE_URL"},
            "http": http,
            "prometheus": {"url_env": PROMETHEUS_ENV, "queries": QUERIES},
            "redis": {"url_env": REDIS_ENV},
            # The PagerDuty and Statuspage fakes' checkout (emulator/pagerduty.py, statuspage.py).
            "pagerduty": {"service_id": "PCHKOUT", "escalation_policy_id": "PEPCHK1"},
            "statuspage": {"component_id": "cmpchk01"},
        }
        backend = {
            "docker": {"host_env": DOCKER_HOST_ENV, "compose_project": "prod", "service": "backend"}
        }
        targets = {
            "services": {NAME: service, "backend": backend},
            "mitigators": ["U0ALICE", "U0BOB"],
            "require_distinct_confirmer": ["P0"],
        }
        path = folder / "targets.yml"
        text = yaml.safe_dump(targets, sort_keys=False)  # queries in the order written
        path.write_text("# The simulated cluster of `firebreak shell`.\n" + text)
        return path


def _ready(pod: Obj) -> bool:
    return bool(pod["status"]["containerStatuses"][0]["ready"])


def _pod(name: str, template: Obj, *, crashing: bool) -> Obj:
    started = timestamp(1400)
    state: Obj = {"running": {"startedAt": started}}
    last: Obj = {}
    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}
        times = {"startedAt": timestamp(140), "finishedAt": timestamp(95)}
        last = {"terminated": {"exitCode": 137, "reason": "OOMKilled", **times}}
    image = _image({"spec": {"template": template}})
    status = {
        "name": "app",
        "image": image,
        "imageID": f"{image}@sha256:{'ab' * 32}",
        "ready": not crashing,
        "started": not crashing,
        "restartCount": 7 if crashing else 0,
        "state": state,
        "lastState": last,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, 1500, labels=dict(template["metadata"]["labels"])),
        "spec": {**copy.deepcopy(template["spec"]), "nodeName": "node-eu-1b"},
        "status": {
            "phase": "Running",
            "startTime": started,
            "containerStatuses": [status],
            "conditions": [{"type": "Ready", "status": str(not crashing)}],
        },
    }


def _event(pod: str, reason: str, message: str, ago: float, count: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(f"{pod}.{reason.lower()}", ago),
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": NAMESPACE, "uid": _uid(pod)},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": count,
        "firstTimestamp": timestamp(1400),
        "lastTimestamp": timestamp(ago),
        "source": {"component": "kubelet", "host": "node-eu-1b"},
    }


def _seed_compose(engine: FakeDocker) -> None:
    """prod/backend on 2.3.1 (one container unhealthy, logging timeouts), 2.3.0 kept."""
    engine.image(f"{BACKEND}:2.3.0", ago=86400 * 3)
    engine.image(f"{BACKEND}:2.3.1", ago=1800)
    for number, health in ((1, "healthy"), (2, "unhealthy")):
        name = f"prod-backend-{number}"
        engine.container(
            name,
            f"{BACKEND}:2.3.1",
            project="prod",
            service="backend",
            number=number,
            health=health,
            restarts=3 if health == "unhealthy" else 0,
            env=["DATABASE_URL=postgres://backend:demo-secret@db/backend"],
        )
        engine.set_log(name, "\n".join(BACKEND_LOG * 6), spacing=20)
    engine.set_stats("prod-backend-2", cpu_percent=91.0, memory=470 * 2**20, limit=512 * 2**20)


def _seed_cache(server: FakeRedis) -> None:
    """checkout's cart cache at 90% of its 256 MiB, evicting; 1.4.2's warm-up in the slowlog."""
    server.fill("cart:", 12_000, size=20_000)
    server.hits, server.misses, server.evicted, server.expired = 182_340, 61_907, 4_210, 1_388
    server.slow("AUTH", "checkout", "demo-secret", took_us=10_400, ago=1500, name="checkout")
    server.slow("KEYS", "cart:*", took_us=48_200, ago=1480, name="checkout")
    server.slow("HGETALL", "cart:ord_5c1e", took_us=11_800, ago=900, name="checkout")
