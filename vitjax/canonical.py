"""Canonical JSON, digests and JSON conversion of results: one walker, one NaN policy.

Everything that names a computation (feature-store keys, result cache keys, dataset digests) and
everything that writes results.json converts values through `_plain` here, so the same value has
one JSON text everywhere.

NaN policy:
  * Keys and digests (`canonical_json`, `key_hash`, `digest`) reject NaN and +-inf: a cache key
    holding NaN names nothing reproducible (NaN != NaN, and turning it into null would collide
    with a real None), so it is a user or program error, raised with the offending field's path.
  * Results (`to_jsonable`) write NaN and +-inf as JSON `null`, so results.json stays valid JSON
    that every parser reads (Python's `NaN` token is not JSON); the report prints a null cell as
    "-".

Text forms: `canonical_json` is compact (`","`/`":"` separators), the text stored in a feature
group's key.json and hashed by `key_hash`. `digest` hashes `json.dumps(..., sort_keys=True)` with
the default separators: that is the text the digests already inside stored feature keys and
result cache keys were made from, so keeping it keeps every existing cache valid.

Examples:
  >>> canonical_json({"b": (1, 2), "a": np.float32(0.5)})
  '{"a":0.5,"b":[1,2]}'
  >>> to_jsonable({"miou": float("nan")})
  {'miou': None}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

from vitjax.errors import VitjaxError


class CanonicalError(VitjaxError, ValueError):
    """A value that cannot be part of a key or digest (non-finite float, non-JSON type)."""


def _plain(value: Any, path: str, nonfinite: str, error: type[VitjaxError]) -> Any:
    """`value` as plain JSON types (dict with str keys, list, str, int, float, bool, None).

    Tuples and numpy arrays become lists, numpy scalars Python scalars, paths strings.
    `nonfinite` is "reject" (raise `error` naming `path`) or "null" (NaN/inf -> None).
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if nonfinite == "reject" and not isinstance(k, str):
                raise error(f"key field {path}: dict keys must be str, got {k!r}")
            out[str(k)] = _plain(v, f"{path}.{k}" if path else str(k), nonfinite, error)
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", nonfinite, error) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), path, nonfinite, error)
    if isinstance(value, np.generic):
        return _plain(value.item(), path, nonfinite, error)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            if nonfinite == "null":
                return None
            raise error(f"key field {path}: non-finite float {value} cannot be hashed")
        return value
    if value is None or isinstance(value, bool | int | str):
        return value
    if nonfinite == "null":
        return value  # results may carry other values; json.dumps names them if it cannot
    raise error(
        f"key field {path or '<root>'}: expected JSON-like values (dict, list, str, number, "
        f"bool, None), got {type(value).__name__}"
    )


def canonical(obj: Any, error: type[VitjaxError] = CanonicalError) -> Any:
    """`obj` as plain JSON types for a key; raises `error` on NaN/inf or a non-JSON value."""
    return _plain(obj, "", "reject", error)


def canonical_json(obj: Any, error: type[VitjaxError] = CanonicalError) -> str:
    """The canonical JSON text of a key: sorted keys, no whitespace, ASCII, tuples as lists.

    Raises:
      error: a field holds NaN/inf, a non-str dict key, or a value JSON cannot hold (the message
        names the field's path).
    """
    return json.dumps(
        canonical(obj, error), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def key_hash(obj: Any, error: type[VitjaxError] = CanonicalError) -> str:
    """sha256 hex digest (64 characters) of `canonical_json(obj)`."""
    return hashlib.sha256(canonical_json(obj, error).encode()).hexdigest()


def digest(obj: Any, length: int = 16, error: type[VitjaxError] = CanonicalError) -> str:
    """First `length` hex characters of the sha256 of `obj`'s sorted JSON (order-independent).

    Raises:
      error: as `canonical_json`.
    """
    text = json.dumps(canonical(obj, error), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def to_jsonable(obj: Any) -> Any:
    """Converts numpy scalars/arrays, tuples and paths into plain JSON values; NaN/inf -> None."""
    return _plain(obj, "", "null", CanonicalError)
