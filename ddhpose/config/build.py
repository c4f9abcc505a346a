"""Building the typed params dataclasses from parsed YAML: strict type checks per field.

:func:`build_section` turns a mapping into a (nested) frozen dataclass, refusing unknown or
missing keys and wrong types with a :class:`~ddhpose.errors.ConfigError` naming the dotted key.
ints are accepted for float fields; lists become tuples. Value rules (ranges, choices) live in
:mod:`ddhpose.config.rules`; the schema in :mod:`ddhpose.config.schema`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from typing import Any

from ddhpose.errors import ConfigError

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, (int, float)):
        return f"a number ({v!r})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "a mapping"
    return type(v).__name__


def reject_unknown(prefix: str, d: Mapping, known: Mapping | tuple) -> None:
    for k in d:
        if k not in known:
            key = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(key, f"unknown key (known: {', '.join(known)})")


def build_section(typ: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, f"expected a mapping, got {type_name(raw)}")
    fields = {f.name: f for f in dataclasses.fields(typ)}
    reject_unknown(prefix, raw, tuple(fields))
    hints = typing.get_type_hints(typ)
    values = {}
    for name in fields:
        key = f"{prefix}.{name}"
        if name not in raw:
            raise ConfigError(key, "missing key")
        values[name] = _coerce(key, raw[name], hints[name])
    return typ(**values)


def _coerce(key: str, v: Any, hint: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return build_section(hint, v, key)
    if hint is bool:
        if not isinstance(v, bool):
            raise ConfigError(key, f"expected true or false, got {type_name(v)}")
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(key, f"expected an integer, got {type_name(v)}")
        return v
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(key, f"expected a number, got {type_name(v)}")
        if not math.isfinite(v):
            raise ConfigError(key, f"must be finite, got {v!r}")
        return float(v)
    if hint is str:
        if not isinstance(v, str):
            raise ConfigError(key, f"expected a string, got {type_name(v)}")
        return v
    if hint == tuple[str, ...]:
        return _str_list(key, v)
    if hint == dict[str, str]:
        return _str_map(key, v)
    if hint == (str | bool):  # train.amp: a mode name, or true/false (kept: public key)
        if not isinstance(v, (str, bool)):
            raise ConfigError(key, f"expected a mode name or true/false, got {type_name(v)}")
        return v
    if hint == (int | str):  # sample.processes: a count or a word (auto)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ConfigError(key, f"expected an integer or a word, got {type_name(v)}")
        return v
    if hint == (str | tuple[str, ...]):  # data.actions
        if v == "*":
            return v
        if isinstance(v, str):
            raise ConfigError(key, f"expected '*' or a list of action-name prefixes, got {v!r}")
        return _str_list(key, v)
    raise AssertionError(f"no coercion for {key} ({hint!r})")  # schema bug, not user input


def _str_list(key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ConfigError(key, f"expected a list of strings, got {type_name(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(key, f"item {i}: expected a non-empty string, got {type_name(item)}")
    if len(set(v)) != len(v):
        raise ConfigError(key, f"duplicate entries in {v}")
    return tuple(v)


def _str_map(key: str, v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise ConfigError(key, f"expected a mapping of file name -> hex digest, got {type_name(v)}")
    out = {}
    for name, digest in v.items():
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
            raise ConfigError(f"{key}.{name}", "file names must be relative paths inside data/raw")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ConfigError(f"{key}.{name}", f"expected 64 hex digits, got {type_name(digest)}")
        out[name] = digest.lower()
    return out


__all__ = ["build_section", "reject_unknown", "type_name"]
