"""A simulated Kubernetes cluster for `firebreak shell` and `firebreak demo`.

One `checkout` Deployment in namespace `shop`: revision 7 (image 1.4.2) has a
pod in CrashLoopBackOff after OOMKills; revision 6 (1.4.1) was healthy. It
answers the calls Firebreak's Kubernetes executor makes (pods, logs, events,
deployment, ReplicaSets, scale, metrics) with objects the official client
deserialises, over loopback HTTP, so runbook actions run the real executor end
to end. Mitigations behave: rolling back to 1.4.1 heals the pods, restarting
1.4.2 does not, and `dryRun=All` changes nothing. It also serves checkout's
health and readiness URLs, which fail while a pod is down.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

Obj = dict[str, Any]
NAMESPACE, NAME, CONTEXT = "shop", "checkout", "firebreak-demo"
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


def _time(ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, ago: float, **extra: Any) -> Obj:
    uid = hashlib.sha256(name.encode()).hexdigest()
    uid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:32]}"
    created = _time(ago)
    return {"name": name, "namespace": NAMESPACE, "uid": uid, "creationTimestamp": created, **extra}


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


def _list(kind: str, items: list[Obj], api: str = "v1") -> web.Response:
    return web.json_response({"kind": kind, "apiVersion": api, "metadata": {}, "items": items})


class SimulatedCluster:
    """The cluster's state plus an aiohttp server on an ephemeral 127.0.0.1 port."""

    def __init__(self) -> None:
        self.deployment: Obj = {
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
        self.replicasets = [self._replicaset(GOOD, 6, 86400 * 2), self._replicaset(BAD, 7, 1500)]
        self.replicasets[-1]["spec"]["replicas"] = self.deployment["spec"]["replicas"]
        crashing = self.pods()[-1]["metadata"]["name"]
        self.events = [
            _event(crashing, "BackOff", "Back-off restarting failed container app", 40, 31),
            _event(crashing, "OOMKilled", "Container app exceeded its 256Mi memory limit", 95, 7),
            _event(crashing, "Unhealthy", "Readiness probe failed: statuscode: 503", 30, 52),
        ]
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _replicaset(self, image: str, revision: int, ago: float) -> Obj:
        pod_hash = hashlib.sha256(image.encode()).hexdigest()[:9]
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME, "controller": True}
        owner["uid"] = self.deployment["metadata"]["uid"]
        template = _template(image, pod_hash)
        labels = dict(template["metadata"]["labels"])
        metadata = _meta(f"{NAME}-{pod_hash}", ago, labels=labels, ownerReferences=[owner])
        metadata["annotations"] = {REVISION: str(revision)}
        spec = {"replicas": 0, "selector": {"matchLabels": labels}, "template": template}
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata, "spec": spec}

    def _current(self) -> Obj:
        return next(rs for rs in self.replicasets if _image(rs) == _image(self.deployment))

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

    def status(self) -> Obj:
        """The Deployment as the API server reports it, status included."""
        pods = self.pods()
        ready = sum(_ready(p) for p in pods)
        healthy = ready == len(pods)
        since = {"lastUpdateTime": _time(90), "lastTransitionTime": _time(90)}
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
        return {**self.deployment, "status": {**counts, "conditions": [available, progressing]}}

    def patch(self, body: Any, dry_run: bool) -> Obj:
        """Apply a JSON patch (a list, as rollback sends) or a merge patch (a dict)."""
        dep = copy.deepcopy(self.deployment)
        if isinstance(body, list):
            for op in body:  # only add/replace of whole members, which is what is sent
                *parents, key = op["path"].strip("/").split("/")
                target = dep
                for part in parents:
                    target = target[part]
                target[key] = op["value"]
        else:
            _merge(dep, body)
        if dry_run:
            return dep
        image_changed = _image(dep) != _image(self.deployment)
        rs = next((rs for rs in self.replicasets if _image(rs) == _image(dep)), None)
        if rs is None:
            raise web.HTTPUnprocessableEntity(text="the simulated cluster has no such image")
        if image_changed:  # a template the deployment ran before gets the next revision
            revision = 1 + max(
                int(r["metadata"]["annotations"][REVISION]) for r in self.replicasets
            )
            rs["metadata"]["annotations"][REVISION] = str(revision)
            dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        dep["spec"]["template"]["metadata"]["labels"].pop("pod-template-hash", None)
        if dep["spec"] != self.deployment["spec"]:  # what a confirmation checks it still sees
            dep["metadata"]["generation"] = self.deployment["metadata"].get("generation", 1) + 1
        self.deployment = dep
        for each in self.replicasets:
            each["spec"]["replicas"] = dep["spec"]["replicas"] if each is rs else 0
        return self.status()

    # ---------------------------------------------------------------- http

    async def _pods(self, request: web.Request) -> web.Response:
        return _list("PodList", self.pods())

    async def _log(self, request: web.Request) -> web.Response:
        name = request.match_info["n"]
        pod = next((p for p in self.pods() if p["metadata"]["name"] == name), None)
        if pod is None:
            raise web.HTTPNotFound(text="pod not found")
        crashed = not _ready(pod)
        lines = (LOG_CRASH if crashed else LOG_OK)[-int(request.query.get("tailLines", "100")) :]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _events(self, request: web.Request) -> web.Response:
        return _list("EventList", self.events)

    async def _deployment(self, request: web.Request) -> web.Response:
        dry_run = request.query.get("dryRun") == "All"
        if request.method == "PATCH":
            return web.json_response(self.patch(await request.json(), dry_run))
        return web.json_response(self.status())

    async def _scale(self, request: web.Request) -> web.Response:
        replicas = self.deployment["spec"]["replicas"]
        if request.method == "PATCH":
            wanted = int((await request.json())["spec"]["replicas"])
            dry_run = request.query.get("dryRun") == "All"
            replicas = self.patch({"spec": {"replicas": wanted}}, dry_run)["spec"]["replicas"]
        scale = {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": _meta(NAME, 0)}
        count = {"replicas": replicas}
        return web.json_response({**scale, "spec": count, "status": count})

    async def _replicasets(self, request: web.Request) -> web.Response:
        items = copy.deepcopy(self.replicasets)
        for rs in items:
            replicas = rs["spec"]["replicas"]
            crashing = 1 if _image(rs) == BAD and replicas else 0
            rs["status"] = {"replicas": replicas, "readyReplicas": replicas - crashing}
        return _list("ReplicaSetList", items, "apps/v1")

    async def _metrics(self, request: web.Request) -> web.Response:
        items = []
        for pod in self.pods():
            ready = _ready(pod)
            usage = {"cpu": "40m", "memory": "180Mi"}
            if not ready:
                usage = {"cpu": "310m", "memory": "251Mi"}
            items.append(
                {
                    "metadata": {"name": pod["metadata"]["name"], "namespace": NAMESPACE},
                    "timestamp": _time(10),
                    "window": "15s",
                    "containers": [{"name": "app", "usage": usage}],
                }
            )
        return _list("PodMetricsList", items, "metrics.k8s.io/v1beta1")

    async def _health(self, request: web.Request) -> web.Response:
        down = [p["metadata"]["name"] for p in self.pods() if not _ready(p)]
        body = {"status": "degraded", "unready_pods": down} if down else {"status": "ok"}
        return web.json_response(body, status=503 if down else 200)

    async def start(self) -> None:
        app = web.Application()
        core, apps = f"/api/v1/namespaces/{NAMESPACE}", f"/apis/apps/v1/namespaces/{NAMESPACE}"
        app.router.add_get(f"{core}/pods", self._pods)
        app.router.add_get(f"{core}/pods/{{n}}/log", self._log)
        app.router.add_get(f"{core}/events", self._events)
        app.router.add_route("*", f"{apps}/deployments/{NAME}", self._deployment)
        app.router.add_route("*", f"{apps}/deployments/{NAME}/scale", self._scale)
        app.router.add_get(f"{apps}/replicasets", self._replicasets)
        metrics = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods"
        app.router.add_get(metrics, self._metrics)
        app.router.add_get(f"/{NAME}/health", self._health)
        app.router.add_get(f"/{NAME}/ready", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_demo_files(self, folder: Path) -> Path:
        """`kubeconfig` and `targets.yml` in `folder` pointing checkout here; returns the latter."""
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
            "users": [{"name": CONTEXT, "user": {"token": "firebreak-demo"}}],
            "contexts": [
                {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}},
            ],
        }
        (folder / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        kubernetes = {"namespace": NAMESPACE, "deployment": NAME, "selector": f"app={NAME}"}
        http = {"health": f"{self.url}/{NAME}/health", "readiness": f"{self.url}/{NAME}/ready"}
        service = {
            "kubernetes": {**kubernetes, "max_replicas": 10},
            "postgres": {"url_env": "CHECKOUT_DATABASE_URL"},
            "http": http,
            # The PagerDuty and Statuspage fakes' checkout (emulator/pagerduty.py, statuspage.py).
            "pagerduty": {"service_id": "PCHKOUT", "escalation_policy_id": "PEPCHK1"},
            "statuspage": {"component_id": "cmpchk01"},
        }
        targets = {
            "services": {NAME: service},
            "mitigators": ["U0ALICE", "U0BOB"],
            "require_distinct_confirmer": ["P0"],
        }
        path = folder / "targets.yml"
        path.write_text("# The simulated cluster of `firebreak shell`.\n" + yaml.safe_dump(targets))
        return path


def _ready(pod: Obj) -> bool:
    return bool(pod["status"]["containerStatuses"][0]["ready"])


def _pod(name: str, template: Obj, *, crashing: bool) -> Obj:
    started = _time(1400)
    state: Obj = {"running": {"startedAt": started}}
    last: Obj = {}
    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}
        times = {"startedAt": _time(140), "finishedAt": _time(95)}
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
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": NAMESPACE},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": count,
        "firstTimestamp": _time(1400),
        "lastTimestamp": _time(ago),
        "source": {"component": "kubelet", "host": "node-eu-1b"},
    }


def _merge(target: Obj, patch: Obj) -> None:
    """RFC 7386 merge patch: dicts merge, everything else (lists too) replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value
