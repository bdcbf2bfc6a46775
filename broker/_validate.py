"""Strict readers for decoded JSON: exact key sets, integers that are not bools."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wattmesh.broker.errors import MessageError, RejectReason

MAX_INT = 2**53 - 1  # what every JSON implementation represents exactly


def schema_error(detail: str) -> MessageError:
    return MessageError(RejectReason.SCHEMA, detail)


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise schema_error(f"{what} must be a JSON object")
    return value


def exact_keys(obj: Mapping[str, Any], required: set[str], what: str) -> None:
    missing = required - obj.keys()
    if missing:
        raise schema_error(f"{what} lacks {', '.join(sorted(missing))}")
    extra = obj.keys() - required
    if extra:
        # repr(): the names are the sender's text and may hold lone surrogates, which
        # could not be signed back to them in a rejection.
        names = ", ".join(repr(name) for name in sorted(extra))
        raise schema_error(f"{what} has unknown field(s) {names}")


def get_int(obj: Mapping[str, Any], key: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise schema_error(f"{key} must be an integer")
    if not minimum <= value <= maximum:
        raise MessageError(
            RejectReason.OUT_OF_BOUNDS, f"{key}={value} is outside [{minimum}, {maximum}]"
        )
    return value


def get_opt_int(obj: Mapping[str, Any], key: str, *, minimum: int = 0) -> int | None:
    if obj[key] is None:
        return None
    return get_int(obj, key, minimum=minimum)


def get_str(obj: Mapping[str, Any], key: str, *, max_len: int = 128) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise schema_error(f"{key} must be a string")
    if len(value) > max_len:
        raise schema_error(f"{key} is longer than {max_len} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
            raise schema_error(f"{key} is not valid Unicode text") from exc
    return value


def get_opt_str(obj: Mapping[str, Any], key: str, *, max_len: int = 256) -> str | None:
    if obj[key] is None:
        return None
    return get_str(obj, key, max_len=max_len)


def get_choice(obj: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = get_str(obj, key)
    if value not in choices:
        raise schema_error(f"{key} must be one of {', '.join(choices)}")
    return value


def get_int_list(
    obj: Mapping[str, Any], key: str, *, max_items: int, minimum: int = 0
) -> tuple[int, ...]:
    value = obj[key]
    if not isinstance(value, list) or len(value) > max_items:
        raise schema_error(f"{key} must be a list of at most {max_items} integers")
    out: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise schema_error(f"{key} must hold integers only")
        if not minimum <= item <= MAX_INT:
            raise MessageError(RejectReason.OUT_OF_BOUNDS, f"{key} holds {item}")
        out.append(item)
    return tuple(out)
