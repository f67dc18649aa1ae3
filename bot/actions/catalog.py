"""The runbook action catalog: which actions exist, where they run, who may confirm.

Actions are data (`runbooks/actions/*.yml`), targets are config (`targets.yml` or
`FIREBREAK_TARGETS`). Both are validated once, at start-up and by `firebreak check`,
against `OPERATIONS`: the allow-list of executor methods, their parameters and their
kind. Only what passes exists; a mistake stops start-up with `file:line: message`
instead of surfacing as a failed command in the middle of an incident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.durations import compact_duration, parse_duration
from bot.executors import (
    DockerTarget,
    HttpTarget,
    KubernetesTarget,
    PostgresTarget,
    PrometheusTarget,
    RedisTarget,
)
from bot.executors.prometheus import DEFAULT_QUERIES, SELECTOR
from bot.paging.settings import (
    PagerDutyTarget,
    StatuspageTarget,
    pagerduty_target,
    statuspage_target,
)
from bot.quantities import format_memory, parse_memory
from bot.yamlfile import Node, RunbookError, load_mapping

KINDS = ("diagnostic", "mitigation")
PARAM_TYPES = ("int", "flag", "name", "choice", "duration", "text", "quantity")
BOUNDED = ("int", "duration", "quantity")  # the types that take min and max
EXECUTORS = ("kubernetes", "docker", "postgres", "http", "prometheus", "redis")
INTEGRATIONS = ("pagerduty", "statuspage")  # where a service is paged and shown publicly

# RFC 1123 label (Kubernetes namespaces, our service names) and subdomain (object names).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
MAX_TEXT = 200  # a text parameter is a short literal (a grep string), never a script
_ACTION_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# Compose project and service names: lowercase letters, digits, `-` and `_`.
_COMPOSE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,20}$")
_LEVEL = re.compile(r"^P[0-9]$")
_LABEL_KEY = r"(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_SELECTOR_TERM = re.compile(rf"^{_LABEL_KEY}(?:!=|==|=){_LABEL_VALUE}$")
# A Prometheus matcher from a selector term: neither part can hold a quote or backslash.
_PROM_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_./-]{0,127})(!=|==|=)([A-Za-z0-9_.-]{0,63})$")
_PROM_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_QUERY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_PROMQL, MAX_QUERIES = 1000, 8


@dataclass(frozen=True)
class Operation:
    """One executor method: its kind, and the parameters it takes by name and type.

    A type ending in `?` accepts None (the method has a sensible absent value); any
    other parameter needs `required: true` or a default in the action file.
    """

    kind: str
    params: dict[str, str] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Only the incident commander may confirm it: a property of the operation, which
    # no action file or mitigators list can widen.
    commander_only: bool = False


# `logs` reads a Kubernetes service's pods or a Compose service's containers alike, so
# one action can name both executors; `errors` is their error distribution.
_LOGS = Operation(
    "diagnostic",
    {"tail": "int", "previous": "flag", "pod": "name?", "since": "duration?", "grep": "text?"},
)
_ERRORS = Operation("diagnostic", {"since": "duration"})
_ROLLBACK = Operation("mitigation", {"revision": "int?"})

# The allow-list. An action file can only name these; the service calls exactly
# `executors.<executor>.<operation>(target_section, **params[, dry_run=])`, with the
# first of the action's executors that the service has a section for.
OPERATIONS: dict[str, dict[str, Operation]] = {
    "kubernetes": {
        "pods": Operation("diagnostic"),
        "logs": _LOGS,
        "errors": _ERRORS,
        "events": Operation("diagnostic"),
        "deployment": Operation("diagnostic"),
        "history": Operation("diagnostic"),
        "top": Operation("diagnostic"),
        "nodes": Operation("diagnostic"),
        "describe": Operation("diagnostic", {"pod": "name?"}),
        "restart": Operation("mitigation"),
        "rollback": _ROLLBACK,
        "scale": Operation("mitigation", {"replicas": "int"}),
        "isolate": Operation("mitigation", commander_only=True),
        "unisolate": Operation("mitigation", commander_only=True),
        "set_memory": Operation("mitigation", {"limit": "quantity"}),
    },
    "docker": {
        "containers": Operation("diagnostic"),
        "logs": _LOGS,
        "errors": _ERRORS,
        "stats": Operation("diagnostic"),
        "health": Operation("diagnostic"),
        "restart": Operation("mitigation"),
        "rollback": _ROLLBACK,
    },
    "postgres": {
        "activity": Operation("diagnostic", {"min_seconds": "int"}),
        "locks": Operation("diagnostic"),
        "size": Operation("diagnostic"),
        "terminate": Operation("mitigation", {"pid": "int"}),
        "slow": Operation("diagnostic"),
        "terminate_idle": Operation("mitigation", {"older_than": "duration"}),
    },
    "http": {
        "check": Operation("diagnostic", {"which": "choice"}, {"which": ("health", "readiness")}),
    },
    "prometheus": {
        "metrics": Operation("diagnostic", {"since": "duration"}),
        "alerts": Operation("diagnostic"),
    },
    "redis": {
        "report": Operation("diagnostic"),
        "flush": Operation("mitigation", {"db": "int?"}),
    },
}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    help: str = ""
    required: bool = False
    default: int | str | bool | None = None
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionSpec:
    """An action as its file declares it. `executors` are in order of preference: a
    service runs it on the first one it has a section for."""

    name: str
    kind: str
    executors: tuple[str, ...]
    operation: str
    help: str
    scenario: str
    params: tuple[ParamSpec, ...] = ()

    def executor_for(self, target: Target) -> str | None:
        return next((e for e in self.executors if target.section(e) is not None), None)


Section = (
    KubernetesTarget | DockerTarget | PostgresTarget | HttpTarget | PrometheusTarget | RedisTarget
)


@dataclass(frozen=True)
class Target:
    """A named service and where each executor finds it."""

    name: str
    kubernetes: KubernetesTarget | None = None
    docker: DockerTarget | None = None
    postgres: PostgresTarget | None = None
    http: HttpTarget | None = None
    prometheus: PrometheusTarget | None = None
    redis: RedisTarget | None = None
    max_replicas: int | None = None
    max_memory: int | None = None  # bytes; `set-memory` never goes above it
    pagerduty: PagerDutyTarget | None = None
    statuspage: StatuspageTarget | None = None

    def section(self, executor: str) -> Section | None:
        sections: dict[str, Section | None] = {
            "kubernetes": self.kubernetes,
            "docker": self.docker,
            "postgres": self.postgres,
            "http": self.http,
            "prometheus": self.prometheus,
            "redis": self.redis,
        }
        return sections[executor]

    def executors(self) -> tuple[str, ...]:
        return tuple(e for e in EXECUTORS if self.section(e) is not None)


@dataclass(frozen=True)
class ActionCatalog:
    actions: dict[str, ActionSpec]
    targets: dict[str, Target]
    mitigators: tuple[str, ...] = ()  # Slack user (U…/W…) and user-group (S…) IDs
    require_distinct_confirmer: frozenset[str] = frozenset()  # severity levels
    # Invited to every private (security) incident: Slack user and user-group IDs.
    security_responders: tuple[str, ...] = ()

    def commander_only(self, action: str) -> bool:
        """Whether only the incident commander may confirm `action` (see `Operation`)."""
        spec = self.actions.get(action)
        return spec is not None and any(
            OPERATIONS[executor][spec.operation].commander_only for executor in spec.executors
        )

    def of_kind(self, kind: str) -> list[ActionSpec]:
        return [a for a in self.actions.values() if a.kind == kind]

    @property
    def mitigator_users(self) -> frozenset[str]:
        return frozenset(m for m in self.mitigators if not m.startswith("S"))

    @property
    def mitigator_groups(self) -> tuple[str, ...]:
        return tuple(m for m in self.mitigators if m.startswith("S"))


def load_catalog(actions_dir: Path, targets_file: Path) -> ActionCatalog:
    """Load and validate; raises `RunbookError` naming the file and line."""
    files = sorted(actions_dir.glob("*.yml"))
    if not files:
        raise RunbookError(actions_dir, None, "no action files (*.yml)")
    actions: dict[str, ActionSpec] = {}
    where: dict[str, str] = {}
    for path in files:
        doc = load_mapping(path)
        _only(doc, {"scenario", "description", "actions"})
        scenario = doc.require("scenario")
        doc.expect("description", str)
        for entry in doc.require("actions", list):
            if not isinstance(entry, Node):
                raise doc.error("each action must be a mapping")
            action = _action(entry, scenario)
            if action.name in actions:
                raise entry.error(
                    f"duplicate action `{action.name}` (also at {where[action.name]})"
                )
            actions[action.name] = action
            where[action.name] = f"{path}:{entry.line}"
    return _targets(targets_file, actions)


def _only(node: Node, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in node if k not in allowed)
    if unknown:
        raise node.error(f"unknown key `{unknown[0]}` (expected {', '.join(sorted(allowed))})")


def _action(entry: Node, scenario: str) -> ActionSpec:
    _only(entry, {"name", "kind", "executor", "operation", "help", "params"})
    name = entry.require("name")
    if not _ACTION_NAME.match(name):
        raise entry.error(f"action name `{name}` must be lowercase letters, digits and -")
    kind = entry.require("kind")
    if kind not in KINDS:
        raise entry.error(f"`{name}`: kind must be diagnostic or mitigation, not `{kind}`")
    executors = _executors(entry, name)
    operation = entry.require("operation")
    specs: list[Operation] = []
    for executor in executors:
        spec = OPERATIONS[executor].get(operation)
        if spec is None:
            known = ", ".join(OPERATIONS[executor])
            raise entry.error(f"`{name}`: {executor} has no operation `{operation}` ({known})")
        if spec.kind != kind:
            raise entry.error(f"`{name}`: {executor} {operation} is a {spec.kind}, not a {kind}")
        if specs and spec != specs[0]:
            raise entry.error(
                f"`{name}`: {executors[0]} {operation} and {executor} {operation} take "
                "different parameters, so one action can't run on both"
            )
        specs.append(spec)
    spec = specs[0]
    help_text = entry.require("help")
    if len(help_text) > 150:
        raise entry.error(f"`{name}`: help is longer than 150 characters")
    params: list[ParamSpec] = []
    for raw in entry.expect("params", list, []):
        if not isinstance(raw, Node):
            raise entry.error(f"`{name}`: each param must be a mapping with `name` and `type`")
        param = _param(raw, name, spec)
        if any(p.name == param.name for p in params):
            raise raw.error(f"`{name}`: parameter `{param.name}` declared twice")
        params.append(param)
    for pname, ptype in spec.params.items():
        declared = next((p for p in params if p.name == pname), None)
        nullable = ptype.endswith("?") or ptype == "flag"
        if not nullable and (
            declared is None or (not declared.required and declared.default is None)
        ):
            raise entry.error(
                f"`{name}`: parameter `{pname}` must be declared required or given a default"
            )
    return ActionSpec(name, kind, executors, operation, help_text, scenario, tuple(params))


def _executors(entry: Node, name: str) -> tuple[str, ...]:
    """`executor: kubernetes`, or a list in order of preference: `[kubernetes, docker]`."""
    raw = entry.require("executor", (str, list))
    names = [raw] if isinstance(raw, str) else raw
    if not names:
        raise entry.error(f"`{name}`: executor must name at least one of {', '.join(EXECUTORS)}")
    for executor in names:
        if not isinstance(executor, str) or executor not in OPERATIONS:
            raise entry.error(
                f"`{name}`: unknown executor `{executor}` (use {', '.join(EXECUTORS)})"
            )
    if len(set(names)) != len(names):
        raise entry.error(f"`{name}`: an executor is listed twice")
    return tuple(str(e) for e in names)


def _param(raw: Node, action: str, operation: Operation) -> ParamSpec:
    _only(raw, {"name", "type", "help", "required", "default", "min", "max", "choices"})
    name, kind = raw.require("name"), raw.require("type")
    if kind not in PARAM_TYPES:
        raise raw.error(
            f"`{action}`: parameter type `{kind}` must be one of {', '.join(PARAM_TYPES)}"
        )
    wanted = operation.params.get(name)
    if wanted is None:
        takes = ", ".join(operation.params) or "no parameters"
        raise raw.error(f"`{action}`: the operation takes no parameter `{name}` (it takes {takes})")
    if wanted.rstrip("?") != kind:
        raise raw.error(f"`{action}`: parameter `{name}` must have type {wanted.rstrip('?')}")
    required = bool(raw.expect("required", bool, False))
    default: Any = raw.get("default")
    if kind == "duration":
        lo, hi, default = (_seconds(raw, action, name, key) for key in ("min", "max", "default"))
    elif kind == "quantity":
        lo, hi, default = (_bytes(raw, action, name, key) for key in ("min", "max", "default"))
    elif kind == "text":
        lo, hi = None, raw.expect("max", int)
        if raw.get("min") is not None:
            raise raw.error(f"`{action}`: text parameter `{name}` takes a max length, no min")
    else:
        lo, hi = raw.expect("min", int), raw.expect("max", int)
    choices = tuple(str(c) for c in raw.expect("choices", list, []))
    if kind not in (*BOUNDED, "text") and (lo is not None or hi is not None):
        raise raw.error(f"`{action}`: only int, duration and quantity parameters take min/max")
    if kind != "choice" and choices:
        raise raw.error(f"`{action}`: only choice parameters take choices")
    if required and default is not None:
        raise raw.error(f"`{action}`: parameter `{name}` is required, so it can't have a default")
    if kind == "flag" and (required or default is not None):
        raise raw.error(f"`{action}`: flag `{name}` is off unless given; no required/default")
    if kind == "text" and (hi is None or isinstance(hi, bool) or not 1 <= hi <= MAX_TEXT):
        raise raw.error(
            f"`{action}`: text parameter `{name}` needs a max length from 1 to {MAX_TEXT}"
        )
    if kind == "text" and default is not None:
        raise raw.error(f"`{action}`: text parameter `{name}` can't have a default")
    if kind in BOUNDED:
        if lo is None or hi is None or isinstance(lo, bool) or isinstance(hi, bool) or lo > hi:
            raise raw.error(f"`{action}`: {kind} parameter `{name}` needs integer min <= max")
        if default is not None and (type(default) is not int or not lo <= default <= hi):
            low, high = (as_typed(kind, b) for b in (lo, hi))
            raise raw.error(f"`{action}`: default of `{name}` must be from {low} to {high}")
        if kind != "int" and default is not None:
            default = as_typed(kind, default)  # kept as typed; executors get seconds or bytes
    if (
        kind == "name"
        and default is not None
        and not (isinstance(default, str) and DNS_SUBDOMAIN.match(default))
    ):
        raise raw.error(f"`{action}`: default of `{name}` must be an RFC 1123 name")
    if kind == "choice":
        allowed = operation.choices.get(name, ())
        if not choices or any(c not in allowed for c in choices):
            raise raw.error(f"`{action}`: choices of `{name}` must be some of {', '.join(allowed)}")
        if default is not None and default not in choices:
            raise raw.error(f"`{action}`: default of `{name}` must be one of its choices")
    return ParamSpec(
        name=name,
        type=kind,
        help=str(raw.expect("help", str, "")),
        required=required,
        default=default,
        min=lo,
        max=hi,
        choices=choices,
    )


def _seconds(raw: Node, action: str, name: str, key: str) -> int | None:
    """A duration bound or default written as `15m`, read as whole seconds."""
    text = raw.get(key)
    if text is None:
        return None
    try:
        return int(parse_duration(str(text)).total_seconds())
    except ValueError as exc:
        raise raw.error(f"`{action}`: {key} of `{name}`: {exc}") from None


def _bytes(raw: Node, action: str, name: str, key: str) -> int | None:
    """A quantity bound or default written as `512Mi`, read as bytes."""
    text = raw.get(key)
    if text is None:
        return None
    try:
        return parse_memory(str(text))
    except ValueError as exc:
        raise raw.error(f"`{action}`: {key} of `{name}`: {exc}") from None


def as_typed(kind: str, value: int) -> str | int:
    """A duration (seconds) or quantity (bytes) bound back in the form people type."""
    if kind == "duration":
        return compact_duration(value)
    return format_memory(value) if kind == "quantity" else value


def _targets(path: Path, actions: dict[str, ActionSpec]) -> ActionCatalog:
    if not path.is_file():
        raise RunbookError(path, None, "targets file not found (set FIREBREAK_TARGETS)")
    doc = load_mapping(path)
    _only(doc, {"services", "mitigators", "require_distinct_confirmer", "security_responders"})
    services = doc.require("services", dict)
    targets: dict[str, Target] = {}
    for name, spec in services.items():
        if not isinstance(spec, Node):
            raise RunbookError(
                path, _line_of(path, f"{name}:"), f"service `{name}` must be a mapping"
            )
        if not DNS_LABEL.match(str(name)):
            raise spec.error(
                f"service name `{name}` must be an RFC 1123 label (lowercase, digits, -)"
            )
        targets[name] = _target(str(name), spec)
    if not targets:
        raise doc.error("no services defined")
    mitigators = _people(path, doc, "mitigators")
    responders = _people(path, doc, "security_responders")
    levels = frozenset(str(v) for v in doc.expect("require_distinct_confirmer", list, []))
    for level in sorted(levels):
        if not _LEVEL.match(level):
            raise RunbookError(
                path, _line_of(path, level), f"`{level}` is not a severity level like P0"
            )
    return ActionCatalog(actions, targets, mitigators, levels, responders)


def _people(path: Path, doc: Node, key: str) -> tuple[str, ...]:
    """A list of Slack user (U…/W…) and user-group (S…) IDs."""
    people = tuple(str(m) for m in doc.expect(key, list, []))
    for who in people:
        if not (_USER_ID.match(who) or _GROUP_ID.match(who)):
            raise RunbookError(
                path,
                _line_of(path, who),
                f"{key.replace('_', ' ').rstrip('s')} `{who}` is not a Slack user (U…) or "
                "user-group (S…) ID",
            )
    return people


def _target(name: str, spec: Node) -> Target:
    unknown = sorted(str(k) for k in spec if k not in (*EXECUTORS, *INTEGRATIONS))
    if unknown:
        raise spec.error(
            f"service `{name}`: unknown executor section `{unknown[0]}` "
            f"(use {', '.join(EXECUTORS)}; or {', '.join(INTEGRATIONS)})"
        )
    kube, pg, http = spec.get("kubernetes"), spec.get("postgres"), spec.get("http")
    docker, prom, cache = spec.get("docker"), spec.get("prometheus"), spec.get("redis")
    pd, sp = spec.get("pagerduty"), spec.get("statuspage")
    sections = (
        ("kubernetes", kube),
        ("docker", docker),
        ("postgres", pg),
        ("http", http),
        ("prometheus", prom),
        ("redis", cache),
    )
    for key, section in (*sections, ("pagerduty", pd), ("statuspage", sp)):
        if section is not None and not isinstance(section, Node):
            raise spec.error(f"`{name}.{key}` must be a mapping")
    if all(section is None for _, section in sections) and pd is None and sp is None:
        raise spec.error(f"service `{name}` configures no executor ({', '.join(EXECUTORS)})")
    kubernetes, max_replicas, max_memory = (
        _kubernetes(name, kube) if kube is not None else (None, None, None)
    )
    return Target(
        name=name,
        kubernetes=kubernetes,
        docker=_docker(name, docker) if docker is not None else None,
        postgres=_postgres(name, pg) if pg is not None else None,
        http=_http(name, http) if http is not None else None,
        prometheus=_prometheus(name, prom, kubernetes) if prom is not None else None,
        redis=_redis(name, cache) if cache is not None else None,
        max_replicas=max_replicas,
        max_memory=max_memory,
        pagerduty=pagerduty_target(name, pd) if pd is not None else None,
        statuspage=statuspage_target(name, sp) if sp is not None else None,
    )


def _kubernetes(name: str, node: Node) -> tuple[KubernetesTarget, int | None, int | None]:
    _only(node, {"namespace", "deployment", "selector", "context", "max_replicas", "max_memory"})
    namespace, deployment = node.require("namespace"), node.require("deployment")
    selector, context = node.require("selector"), node.expect("context", str)
    if not DNS_LABEL.match(namespace):
        raise node.error(f"`{name}`: namespace `{namespace}` is not an RFC 1123 label")
    if not DNS_SUBDOMAIN.match(deployment):
        raise node.error(f"`{name}`: deployment `{deployment}` is not an RFC 1123 name")
    if not all(_SELECTOR_TERM.match(term.strip()) for term in selector.split(",")):
        raise node.error(f"`{name}`: selector `{selector}` must be key=value[,key=value…]")
    if context is not None and (not context or any(c.isspace() for c in context)):
        raise node.error(f"`{name}`: context must be a kubeconfig context name")
    max_replicas = node.expect("max_replicas", int)
    if max_replicas is not None and (isinstance(max_replicas, bool) or max_replicas < 0):
        raise node.error(f"`{name}`: max_replicas must be a whole number, 0 or more")
    max_memory = node.get("max_memory")
    if max_memory is not None:
        try:
            max_memory = parse_memory(str(max_memory))
        except ValueError as exc:
            raise node.error(f"`{name}`: max_memory: {exc}") from None
    return KubernetesTarget(namespace, deployment, selector, context), max_replicas, max_memory


def _docker(name: str, node: Node) -> DockerTarget:
    _only(node, {"host_env", "compose_project", "service"})
    host_env = _env_name(node, name, "host_env", _service_env(name, "DOCKER_HOST"))
    project, service = node.require("compose_project"), node.require("service")
    for key, value in (("compose_project", project), ("service", service)):
        if not _COMPOSE_NAME.match(value):
            raise node.error(
                f"`{name}`: {key} `{value}` must be a Compose name (lowercase letters, "
                "digits, - and _)"
            )
    return DockerTarget(host_env, project, service)


def _postgres(name: str, node: Node) -> PostgresTarget:
    return PostgresTarget(_url_env(name, node, _service_env(name, "DATABASE_URL")))


def _redis(name: str, node: Node) -> RedisTarget:
    return RedisTarget(_url_env(name, node, _service_env(name, "REDIS_URL")))


def _url_env(name: str, node: Node, example: str, also: frozenset[str] = frozenset()) -> str:
    """The section's `url_env`: the NAME of the variable with the URL, never the URL."""
    _only(node, {"url_env", *also})
    return _env_name(node, name, "url_env", example)


def _service_env(name: str, suffix: str) -> str:
    """A variable named for the service, the example a mistake is shown: `payments-api`'s
    Redis is PAYMENTS_API_REDIS_URL. A service name may start with a digit; a variable may not."""
    word = name.upper().replace("-", "_")
    return f"{'_' if word[0].isdigit() else ''}{word}_{suffix}"


def _env_name(node: Node, name: str, key: str, example: str) -> str:
    """A key naming the environment variable that holds a URL, never the URL itself."""
    value = node.require(key)
    if not _ENV_NAME.match(value):
        hint = " (never the URL itself)" if "://" in value or "@" in value else ""
        raise node.error(
            f"`{name}`: {key} must be the NAME of an environment variable, like {example}{hint}"
        )
    return str(value)


def _prometheus(name: str, node: Node, kube: KubernetesTarget | None) -> PrometheusTarget:
    """`{url_env, selector?, queries?}`. The selector defaults to the Kubernetes one
    (label names as Prometheus's service discovery rewrites them: `app.kubernetes.io/name`
    becomes `app_kubernetes_io_name`), else `service=<name>`; the queries default to
    the bundled ones. Each query must scope itself with `$selector`."""
    # One Prometheus usually serves every service, hence no service in the example.
    url_env = _url_env(name, node, "PROMETHEUS_URL", frozenset({"selector", "queries"}))
    selector = node.expect("selector", str) or (kube.selector if kube else f"service={name}")
    labels = []
    for term in selector.split(","):
        match = _PROM_TERM.match(term.strip())
        if match is None:
            raise node.error(
                f"`{name}`: prometheus selector `{selector}` must be label=value[,label!=value…]"
            )
        key, op, value = match.groups()
        labels.append((_PROM_UNSAFE.sub("_", key), "!=" if op == "!=" else "=", value))
    raw = node.expect("queries", dict)
    if raw is None:
        queries = tuple((q, promql) for q, (promql, _unit) in DEFAULT_QUERIES.items())
    else:
        queries = tuple((str(q), promql) for q, promql in raw.items())
        if not queries:
            raise node.error(f"`{name}`: prometheus queries is empty (leave it out for defaults)")
    for query, promql in queries:
        if not _QUERY_NAME.match(query):
            raise node.error(f"`{name}`: query name `{query}` must be lowercase letters, digits, _")
        if not isinstance(promql, str) or not 0 < len(promql) <= MAX_PROMQL:
            raise node.error(f"`{name}`: query `{query}` must be PromQL up to {MAX_PROMQL} chars")
        if SELECTOR not in promql:
            raise node.error(
                f"`{name}`: query `{query}` must scope itself to the service with {SELECTOR}"
            )
    if len(queries) > MAX_QUERIES:
        raise node.error(f"`{name}`: at most {MAX_QUERIES} prometheus queries")
    return PrometheusTarget(url_env, tuple(labels), queries)


def _http(name: str, node: Node) -> HttpTarget:
    _only(node, {"health", "readiness"})
    urls = {key: node.expect(key, str) for key in ("health", "readiness")}
    for key, url in urls.items():
        if url is None:
            continue
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(c.isspace() for c in url)
        ):
            raise node.error(f"`{name}`: {key} must be an http(s) URL")
        if parts.username or parts.password:
            raise node.error(f"`{name}`: {key} must not carry credentials")
    if not any(urls.values()):
        raise node.error(f"`{name}`: http needs a health or readiness URL")
    return HttpTarget(health=urls["health"], readiness=urls["readiness"])


def _line_of(path: Path, text: str) -> int | None:
    """The first line mentioning `text`: scalars in a YAML list carry no line of their own."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line.split("#", 1)[0]:
            return number
    return None
