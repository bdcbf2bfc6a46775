"""A small deterministic YAML writer for compose files (pure; no YAML library at run time).

Mappings keep their insertion order; every string value is written double-quoted (a
JSON string is a valid YAML double-quoted scalar), so no value can turn into a boolean,
a number or null on the way. Lists of scalars are written in flow style. Two YAML
features compose files use are supported: an anchor on a mapping (:class:`Anchored`,
``key: &name``) and a merge of one (:class:`Merge`, ``<<: *name``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Anchored", "Merge", "Node", "dump"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ANCHOR = re.compile(r"[A-Za-z0-9_-]+")
_INDENT = "  "


@dataclass(frozen=True)
class Anchored:
    """A mapping that carries the anchor ``&name``."""

    name: str
    value: Mapping[str, Node]


@dataclass(frozen=True)
class Merge:
    """``<<: *name``: the anchored mapping merged into this one (keys here win)."""

    name: str


Scalar = str | int | bool
Node = Scalar | Sequence[Scalar] | Mapping[str, "Node"] | Anchored | Merge


def dump(document: Mapping[str, Node]) -> str:
    """The YAML text of ``document`` (a block mapping), ending in a newline."""
    return "".join(f"{line}\n" for line in _mapping(document, 0))


def _scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _anchor(name: str) -> str:
    if not _ANCHOR.fullmatch(name):
        raise ValueError(f"not a usable YAML anchor name: {name!r}")
    return name


def _mapping(value: Mapping[str, Node], depth: int) -> list[str]:
    pad = _INDENT * depth
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, Merge):
            lines.append(f"{pad}<<: *{_anchor(item.name)}")
        elif isinstance(item, Anchored):
            lines.append(f"{pad}{_key(key)}: &{_anchor(item.name)}")
            lines.extend(_mapping(item.value, depth + 1))
        elif isinstance(item, Mapping):
            if item:
                lines.append(f"{pad}{_key(key)}:")
                lines.extend(_mapping(item, depth + 1))
            else:
                lines.append(f"{pad}{_key(key)}: {{}}")
        elif isinstance(item, str | int | bool):
            lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
        else:
            flow = ", ".join(_scalar(element) for element in item)
            lines.append(f"{pad}{_key(key)}: [{flow}]")
    return lines
