"""From the words after `/incident diag|mitigate` to a checked invocation, and running it.

Nothing a user types reaches an executor unchecked: the action and the service must
exist in the catalog, ints are plain digits inside the action's bounds (a `scale`
also inside the service's `kubernetes.max_replicas`), names are RFC 1123, choices
are one of the listed words. Every failure is a `UserError` that says what was
wrong and shows the usage line, so the responder can fix the command at once.
`Executors.run` then calls exactly the method the catalog allow-listed, under a
timeout, and turns every failure into a result the channel can read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.actions.catalog import (
    DNS_SUBDOMAIN,
    ActionCatalog,
    ActionSpec,
    ParamSpec,
    Target,
    as_typed,
)
from bot.durations import bounded_seconds, compact_duration, parse_duration
from bot.errors import UserError
from bot.executors import (
    DockerExecutor,
    ExecutionResult,
    ExecutorError,
    HttpChecker,
    KubernetesExecutor,
    OutcomeUnknown,
    PostgresExecutor,
    PrometheusExecutor,
    RedisExecutor,
    StateChanged,
)
from bot.mrkdwn import escape
from bot.quantities import format_memory, parse_memory
from bot.redact import redact

log = logging.getLogger(__name__)

Value = int | str | bool | None
VERBS = {"diagnostic": "diag", "mitigation": "mitigate"}
_INT = re.compile(r"^[+-]?[0-9]{1,12}$")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Invocation:
    """A validated request: run `action` on `target` with `args` (every declared param),
    through `executor`, the first of the action's executors that the target has."""

    action: ActionSpec
    target: Target
    args: Mapping[str, Value]
    executor: str

    def command(self) -> str:
        """The invocation as one line, e.g. `logs checkout tail=50 previous`."""
        return " ".join([self.action.name, self.target.name, *as_words(self.args)])


@dataclass(frozen=True)
class Executors:
    """The executors; built from settings by the app factory (or by tests)."""

    kubernetes: KubernetesExecutor
    postgres: PostgresExecutor
    http: HttpChecker
    docker: DockerExecutor = field(default_factory=DockerExecutor)
    # Defaults, so rigs that exercise other executors need not build these: Redis
    # reads its URL from the environment; Prometheus needs the app's HTTP client.
    redis: RedisExecutor = field(default_factory=RedisExecutor)
    prometheus: PrometheusExecutor | None = None

    async def run(
        self,
        invocation: Invocation,
        *,
        dry_run: bool,
        timeout: float,
        pinned: Mapping[str, object] | None = None,
    ) -> tuple[ExecutionResult, bool]:
        """The result, and whether it failed to run at all (unreachable, forbidden,
        timed out, changed since its dry run); a failure is a readable, redacted result,
        never an exception. `pinned` is what the confirmed dry run resolved."""
        try:
            async with asyncio.timeout(timeout):
                return await self._call(invocation, dry_run, pinned), False
        except OutcomeUnknown as exc:
            return ExecutionResult(False, redact(str(exc)), "", unknown=True), True
        except StateChanged as exc:
            return ExecutionResult(False, redact(str(exc)), "", {"changed": True}), True
        except ExecutorError as exc:
            return ExecutionResult(False, redact(str(exc)), ""), True
        except TimeoutError:
            why = f"no answer within {timeout:g}s; gave up waiting"
            if invocation.action.kind == "mitigation" and not dry_run:
                why += ", but it may still complete: check with a diagnostic"
                return ExecutionResult(False, why, "", unknown=True), True
            return ExecutionResult(False, why, ""), True
        except Exception as exc:
            trace = "".join(traceback.format_exception(exc))
            log.error("runbook action %s failed: %s", invocation.command(), redact(trace))
            why = "failed unexpectedly; the details are in Firebreak's log"
            return ExecutionResult(False, why, ""), True

    async def _call(
        self, invocation: Invocation, dry_run: bool, pinned: Mapping[str, object] | None
    ) -> ExecutionResult:
        """`<executor>.<operation>(section, **args)`: names the catalog allow-listed."""
        action, executor = invocation.action, invocation.executor
        section = invocation.target.section(executor)
        if section is None:
            raise ExecutorError(f"{invocation.target.name} has no {executor} section")
        client = getattr(self, executor)
        if client is None:
            raise ExecutorError(f"Firebreak runs without a {executor} client")
        method = getattr(client, action.operation)
        kwargs: dict[str, Any] = dict(invocation.args)
        for param in action.params:  # kept as typed (`1h30m`, `2Gi`): seconds, bytes here
            value = kwargs.get(param.name)
            if param.type == "duration" and isinstance(value, str):
                kwargs[param.name] = int(parse_duration(value).total_seconds())
            if param.type == "quantity" and isinstance(value, str):
                kwargs[param.name] = parse_memory(value)
        if action.kind == "mitigation":
            kwargs["dry_run"] = dry_run
            if pinned is not None:
                kwargs["pinned"] = dict(pinned)
        result: ExecutionResult = await method(section, **kwargs)
        return result

    async def warm_up(self) -> None:
        await self.kubernetes.warm_up()

    def close(self) -> None:
        self.kubernetes.close()
        self.docker.close()


def as_words(args: Mapping[str, Value]) -> list[str]:
    """Args back as the words `parse_args` reads, e.g. `["replicas=8", "since=1h", "previous"]`."""
    return [
        name
        if value is True
        else f"{name}={quote_text(value) if isinstance(value, str) else value}"
        for name, value in args.items()
        if value is not None and value is not False
    ]


def quote_text(text: str) -> str:
    """Text as one shell-like word: quoted when it holds spaces (`"connection reset"`)."""
    return f'"{text}"' if any(c.isspace() for c in text) or not text else text


def shown(word: str) -> str:
    """User input echoed inside backticks, unable to break out or ping anyone."""
    return escape(word.replace("`", "'")[:40])


def resolve(
    catalog: ActionCatalog, kind: str, action: str, service: str, words: Sequence[str]
) -> Invocation:
    spec = catalog.actions.get(action)
    if spec is None or spec.kind != kind:
        if spec is not None:
            verb = VERBS[spec.kind]
            raise UserError(
                f"`{spec.name}` is a {spec.kind}: use `/incident {verb} {spec.name} <service>`."
            )
        names = ", ".join(a.name for a in catalog.of_kind(kind)) or "none"
        raise UserError(
            f"Unknown {kind} `{shown(action)}`. Available: {names}. "
            f"See `/incident {VERBS[kind]}` for what each does."
        )
    target = catalog.targets.get(service)
    if target is None:
        raise UserError(
            f"Unknown service `{shown(service)}`. Configured: {', '.join(catalog.targets)}."
        )
    executor = spec.executor_for(target)
    if executor is None:
        able = [t.name for t in catalog.targets.values() if spec.executor_for(t)]
        where = " or ".join(spec.executors)
        raise UserError(
            f"`{spec.name}` runs on {where}, and `{target.name}` has no {where} "
            f"section in the targets file. Services it works on: {', '.join(able) or 'none'}."
        )
    return Invocation(spec, target, parse_args(spec, target, words), executor)


def parse_args(action: ActionSpec, target: Target, words: Sequence[str]) -> dict[str, Value]:
    """Positional words fill the non-flag params in order; `name=value` names one; a
    flag is on when its name appears."""
    values: dict[str, Value] = {}
    by_name = {p.name: p for p in action.params}
    for word in words:
        key, sep, raw = word.partition("=")
        key = key.lower().lstrip("-")
        if sep:
            param = by_name.get(key)
            if param is None:
                raise _error(action, target, f"`{action.name}` has no parameter `{shown(key)}`.")
        elif key in by_name and by_name[key].type == "flag":
            param, raw = by_name[key], "true"
        else:
            free = [p for p in action.params if p.type != "flag" and p.name not in values]
            if not free:
                raise _error(action, target, f"Unexpected argument `{shown(word)}`.")
            param, raw = free[0], word
        if param.name in values:
            raise _error(action, target, f"`{param.name}` is given twice.")
        values[param.name] = _convert(action, target, param, raw)
    for param in action.params:
        if param.name in values:
            continue
        if param.required:
            raise _error(action, target, f"`{param.name}` is missing.")
        values[param.name] = False if param.type == "flag" else param.default
    return values


def bounds(action: ActionSpec, param: ParamSpec, target: Target | None) -> tuple[int, int]:
    """A bounded param's range; replicas also stop at the service's max_replicas, and a
    memory limit at its max_memory."""
    assert param.min is not None and param.max is not None  # the catalog guarantees both
    high, cap = param.max, _service_cap(action, param, target)
    if cap is not None:
        high = min(high, cap[0])
    return param.min, high


def _service_cap(
    action: ActionSpec, param: ParamSpec, target: Target | None
) -> tuple[int, str] | None:
    """The service's own ceiling on this param, and the targets.yml key that sets it."""
    if target is None or action.executor_for(target) != "kubernetes":
        return None
    if (action.operation, param.name) == ("scale", "replicas") and target.max_replicas is not None:
        return target.max_replicas, "kubernetes.max_replicas"
    if (action.operation, param.name) == ("set_memory", "limit") and target.max_memory is not None:
        return target.max_memory, "kubernetes.max_memory"
    return None


def usage(action: ActionSpec, target: Target | None = None) -> str:
    """The usage line and one line per parameter."""
    words = [f"/incident {VERBS[action.kind]} {action.name} <service>"]
    positional = True  # up to the first optional value; later ones need name=value
    for param in action.params:
        if param.type == "flag":
            word = param.name
        else:
            word = f"<{param.name}>" if positional else f"{param.name}=<{param.name}>"
            positional = positional and param.required
        words.append(word if param.required else f"[{word}]")
    lines = [f"Usage: `{' '.join(words)}`"]
    lines += [f"• `{p.name}`: {describe(action, p, target)}" for p in action.params]
    return "\n".join(lines)


def describe(action: ActionSpec, param: ParamSpec, target: Target | None = None) -> str:
    if param.type == "int":
        low, high = bounds(action, param, target)
        text = f"a whole number from {low} to {high}"
    elif param.type == "flag":
        text = f"add the word `{param.name}` to turn it on"
    elif param.type == "name":
        text = "a pod or container name (lowercase letters, digits, `-` and `.`)"
    elif param.type == "duration":
        assert param.min is not None and param.max is not None
        text = (
            f"a duration from {compact_duration(param.min)} to {compact_duration(param.max)}, "
            "like 30m or 2h"
        )
    elif param.type == "text":
        text = f'literal text up to {param.max} characters; quote it if it has spaces ("a b")'
    elif param.type == "quantity":
        smallest, largest = (format_memory(b) for b in bounds(action, param, target))
        text = f"a memory size from {smallest} to {largest}, like 512Mi or 2Gi"
    else:
        text = f"one of {', '.join(param.choices)}"
    if param.default is not None:
        text += f" (default {param.default})"
    return f"{text}; {param.help}" if param.help else text


def _convert(action: ActionSpec, target: Target, param: ParamSpec, raw: str) -> Value:
    if param.type == "int":
        low, high = bounds(action, param, target)
        if not _INT.match(raw):
            raise _error(
                action, target, f"`{param.name}` must be a whole number; got `{shown(raw)}`."
            )
        number = int(raw)
        if not low <= number <= high:
            raise _out_of_bounds(action, target, param, raw)
        return number
    if param.type == "flag":
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise _error(action, target, f"`{param.name}` is on or off; got `{shown(raw)}`.")
    if param.type == "name":
        if not DNS_SUBDOMAIN.match(raw):
            raise _error(
                action,
                target,
                f"`{param.name}` must be an RFC 1123 name: lowercase letters, digits, `-` and "
                f"`.`, starting and ending with a letter or digit; got `{shown(raw)}`.",
            )
        return raw
    if param.type == "duration":
        return _duration(action, target, param, raw)
    if param.type == "text":
        return _text(action, target, param, raw)
    if param.type == "quantity":
        return _quantity(action, target, param, raw)
    choice = next((c for c in param.choices if c == raw.lower()), None)
    if choice is None:
        raise _error(
            action,
            target,
            f"`{param.name}` must be one of {', '.join(param.choices)}; got `{shown(raw)}`.",
        )
    return choice


def _duration(action: ActionSpec, target: Target, param: ParamSpec, raw: str) -> str:
    """The duration in its one-word form (`90m` becomes `1h30m`); executors get seconds."""
    assert param.min is not None and param.max is not None  # the catalog guarantees both
    try:
        seconds = bounded_seconds(param.name, raw, param.min, param.max)
    except ValueError as exc:
        raise _error(action, target, f"{exc}; got `{shown(raw)}`.") from None
    return compact_duration(seconds)


def _quantity(action: ActionSpec, target: Target, param: ParamSpec, raw: str) -> str:
    """The memory size in its shortest exact form (`1024Mi` becomes `1Gi`); executors
    get bytes."""
    low, high = bounds(action, param, target)
    try:
        amount = parse_memory(raw)
    except ValueError:
        raise _error(
            action,
            target,
            f"`{param.name}` must be a memory size like 512Mi or 2Gi, from "
            f"{format_memory(low)} to {format_memory(high)}; got `{shown(raw)}`.",
        ) from None
    if not low <= amount <= high:
        raise _out_of_bounds(action, target, param, raw)
    return format_memory(amount)


def _out_of_bounds(action: ActionSpec, target: Target, param: ParamSpec, raw: str) -> UserError:
    """`<param>` must be from low to high, naming the service's own cap when it is lower."""
    low, high = bounds(action, param, target)
    cap = _service_cap(action, param, target)
    why = ""
    if cap is not None and param.max is not None and cap[0] < param.max:
        why = f" ({as_typed(param.type, high)} is {target.name}'s {cap[1]})"
    low_shown, high_shown = as_typed(param.type, low), as_typed(param.type, high)
    return _error(
        action,
        target,
        f"`{param.name}` must be from {low_shown} to {high_shown}{why}; got `{shown(raw)}`.",
    )


# Slack escapes these three in command text; a literal search means what was typed.
_SLACK_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def _text(action: ActionSpec, target: Target, param: ParamSpec, raw: str) -> str:
    assert param.max is not None  # the catalog guarantees a max length
    text = raw
    for entity, char in _SLACK_ENTITIES:
        text = text.replace(entity, char)
    if not text.strip():
        raise _error(action, target, f"`{param.name}` is empty.")
    if len(text) > param.max:
        raise _error(
            action,
            target,
            f"`{param.name}` must be at most {param.max} characters; got {len(text)}.",
        )
    return text


def _error(action: ActionSpec, target: Target, problem: str) -> UserError:
    return UserError(f"{problem}\n{usage(action, target)}")
