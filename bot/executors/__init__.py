"""Executors: the code that talks to Kubernetes, Docker Engines, Postgres, Prometheus and
Redis, and the HTTP clients' contracts (their aiohttp clients are in `handlers/`, outside
the domain).

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
    PrometheusApi,
    PrometheusTarget,
    RedisTarget,
    ResultFile,
    StateChanged,
)
from bot.executors.docker import DockerExecutor
from bot.executors.kubernetes import KubernetesExecutor
from bot.executors.postgres import PostgresExecutor
from bot.executors.prometheus import PrometheusExecutor
from bot.executors.redis import RedisExecutor

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
    "PrometheusApi",
    "PrometheusExecutor",
    "PrometheusTarget",
    "RedisExecutor",
    "RedisTarget",
    "ResultFile",
    "StateChanged",
]
