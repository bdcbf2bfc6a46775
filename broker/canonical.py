"""RFC 8785 (JCS) canonical bytes, fast for the values wattmesh signs.

Every signed or logged object is canonicalised, so this sits on the ledger's hot path.
The ``rfc8785`` package is the reference, but it is pure Python and about ten times
slower than the standard library's C JSON encoder. For the values our schemas allow
the two produce the same bytes:

- object keys are ASCII strings, so sorting by code point equals RFC 8785's sorting by
  UTF-16 code units;
- integers lie within +-(2**53 - 1), where both print plain decimal digits;
- no floats (RFC 8785's number formatting differs from Python's ``repr``);
- strings: ``json.dumps(..., ensure_ascii=False)`` escapes exactly ``"``, ``\\`` and the
  control characters below U+0020, with the same short forms (``\\b \\t \\n \\f \\r``) and
  lowercase ``\\u00xx`` otherwise, as RFC 8785 section 3.2.2.2 asks; text that is not
  valid Unicode (a lone surrogate) fails to encode either way.

Anything outside that (a float, a non-ASCII key, a larger integer, another type) goes
to ``rfc8785`` itself, which formats it or raises its ``CanonicalizationError``.
``tests/test_canonical.py`` checks the equivalence on generated values.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["canonical_bytes_of_checked"]

_INT_LIMIT = 2**53 - 1
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def _fast_path_applies(value: Any) -> bool:
    # Exact type checks where subclasses might serialise differently; str and int
    # subclasses (StrEnum, IntEnum, bool) serialise as their values in both encoders.
    if isinstance(value, str) or value is None:
        return True
    if isinstance(value, int):
        return -_INT_LIMIT <= value <= _INT_LIMIT
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and k.isascii() and _fast_path_applies(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(_fast_path_applies(v) for v in value)
    return False


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 bytes of ``obj``; raises ``rfc8785.CanonicalizationError`` if it has none."""
    if _fast_path_applies(obj):
        try:
            return _encode(obj).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference implementation raise its error
    return rfc8785.dumps(obj)


def canonical_bytes_of_checked(obj: Any) -> bytes:
    """RFC 8785 bytes of ``obj`` whose schema has been checked to lie inside the fast
    path (ASCII keys; strings, integers within +-(2**53 - 1), objects and lists of
    them): the C encoder without the walk over every value. Raises
    ``UnicodeEncodeError`` for a lone surrogate, which has no canonical form."""
    return _encode(obj).encode("utf-8")
