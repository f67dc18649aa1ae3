"""YAML loading that remembers line numbers, so runbook errors name file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class RunbookError(Exception):
    """A runbook file is invalid. `str()` reads `path:line: message`."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


class Node(dict[str, Any]):
    """A mapping from a YAML file, with the 1-based line it starts on."""

    path: str = ""
    line: int = 0

    def error(self, message: str) -> RunbookError:
        return RunbookError(self.path, self.line, message)

    def require(self, key: str, kind: type | tuple[type, ...] = str) -> Any:
        if key not in self:
            raise self.error(f"missing `{key}`")
        return self.expect(key, kind)

    def expect(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.get(key, default)
        if value is not None and not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(f"`{key}` must be a {names}")
        return value


def load(path: Path) -> Any:
    """Parse one file; mappings come back as `Node` with path and line set."""

    class _Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Node:
        mapping = Node({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
        mapping.path = str(path)
        mapping.line = node.start_mark.line + 1
        return mapping

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise RunbookError(path, mark.line + 1 if mark else None, str(exc.problem)) from exc
    except OSError as exc:
        raise RunbookError(path, None, exc.strerror or str(exc)) from exc


def load_mapping(path: Path) -> Node:
    data = load(path)
    if not isinstance(data, Node):
        raise RunbookError(path, 1, "expected a mapping at the top level")
    return data
