"""YAML files of the pipeline configuration: strict reading, merging, scalar rendering.

:func:`read_yaml` refuses duplicate keys, reads ``1e-4`` as a float (YAML 1.2, as DVC's
``--set-param`` writes it; PyYAML alone would return a string) and turns an unreadable or
malformed file, or one that is not UTF-8 text (a Latin-1 ``é`` in a comment), into a one-line
:class:`ParamsFileError` naming the file (and the line and byte where it can).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ddhpose.errors import ConfigError, DDHPoseError


class ParamsFileError(ConfigError):
    """A params/config file that cannot be read or parsed; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.key = str(path)
        self.problem = problem
        DDHPoseError.__init__(self, f"{path}: {problem}")


def plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.2, as DVC writes it) and refuses
    duplicate keys (a silent last-one-wins would hide an edit)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: str | Path) -> Any:
    """Parse a UTF-8 YAML file; a missing, malformed or non-UTF-8 file raises ParamsFileError
    naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParamsFileError(path, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsFileError(path, not_utf8(data, exc)) from exc
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsFileError(path, f"malformed YAML{where}: {problem}") from exc


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where and which byte is not UTF-8: ``not UTF-8 text: byte 0xe9 at line 2, column 4 (byte
    offset 57); save the file as UTF-8``."""
    start = exc.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return (f"not UTF-8 text: byte 0x{data[start]:02x} at line {line}, column {column} (byte "
            f"offset {start}); save the file as UTF-8")


def deep_merge(base: Mapping, override: Mapping) -> dict[str, Any]:
    """``base`` with ``override`` merged in; nested mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def dump_scalar(v: Any) -> str:
    """``v`` as a YAML flow scalar/list/mapping on one line (strings quoted only when needed)."""
    text = yaml.safe_dump([v], default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[1:-1]  # strip the wrapping list brackets
