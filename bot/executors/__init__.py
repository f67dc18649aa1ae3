"""Executors: the code that talks to Kubernetes, Docker Engines and Postgres, and the HTTP
check's contract (its aiohttp client is `handlers/http_check.py`, outside the domain).

Each executor method takes a target (from runbooks/targets.yml) plus the action's
parameters and returns an `ExecutionResult`, or raises `ExecutorError` with a message
fit to show the user as-is. Validation, confirmation and audit happen before this.
"""

from bot.executors.base import (
    DockerTarget,
    ExecutionResult,
    ExecutorError,
    HttpChecker,
    HttpTarget,
    KubernetesTarget,
    OutcomeUnknown,
    PostgresTarget,
    StateChanged,
)
from bot.executors.docker import DockerExecutor
from bot.executors.kubernetes import KubernetesExecutor
from bot.executors.postgres import PostgresExecutor

__all__ = [
    "DockerExecutor",
    "DockerTarget",
    "ExecutionResult",
    "ExecutorError",
    "HttpChecker",
    "HttpTarget",
    "KubernetesExecutor",
    "KubernetesTarget",
    "OutcomeUnknown",
    "PostgresExecutor",
    "PostgresTarget",
    "StateChanged",
]
