"""Fingerprints: a hash of everything that determines a sweep's result, so that a rerun
into the same folder resumes or loads it only if nothing the sweep reads has changed.

``digest`` walks a value and hashes what it reaches: arrays by dtype, shape and bytes;
numbers and strings by value; containers item by item; a function by its code, its
defaults, the values it closes over and the globals its code names (constants, helper
functions, recursively); a ``functools.partial`` by its function, arguments and
keywords; a bound method by its function and its instance; an object (a callable
object, a dataclass) by its class's code and its attributes; a wrapper (``jax.jit(f)``,
``functools.wraps``) by the function it wraps. Modules are named, not walked (the
attributes of a user module that a function's code names are walked). The functions
and classes of jax, NumPy, optax, bpjax, the standard library and installed packages
are named, not walked, so that a digest stays fast and stable; their closures (the
widths of a ``bpjax.nets`` net, the function inside ``jax.vmap(f)``) are walked.

What it cannot see into it names (``unseen``): an object whose state lives in C
(a class of an extension module in its MRO), unless its ``repr`` says what it is (the
default ``<Foo object at 0x...>`` does not); values nested deeper than ``MAX_DEPTH``;
more than ``MAX_NODES`` objects. Nor can it see what a function reads when it runs and not
before: a global reassigned later, a file the loss opens, a C extension's own state.
``Options(fingerprint=...)`` adds such inputs by hand.
"""

import hashlib
import json
import math
import types
import warnings
from enum import Enum
from functools import partial
from typing import Any

import jax
import numpy as np

from bpjax.walk import SCALARS, Walk, attributes, code_names, library_function


class UnseenInputWarning(UserWarning):
    """An input of a sweep that its fingerprint cannot see into."""


def digest(obj, unseen: list[str] | None = None, name: str = "") -> str:
    """A digest of ``obj`` and of everything it reaches (see the module docstring).

    Args:
      obj: a value, function, object, ...
      unseen: if given, what the digest could not see into is appended to it, as
        ``"NAME: PATH (why)"`` (stable across processes: no addresses).
      name: what ``obj`` is, for those labels (``"loss_fn"``).

    >>> from functools import partial
    >>> def f(x, center):
    ...     return (x - center) ** 2
    >>> digest(partial(f, center=0.5)) == digest(partial(f, center=0.5))
    True
    >>> digest(partial(f, center=0.5)) == digest(partial(f, center=0.7))
    False
    """
    return _digest(obj, unseen, name, {})


def _digest(obj, unseen: list[str] | None, name: str, arrays: dict) -> str:
    walk = Walk(name, arrays)
    walk.feed(obj, 0, ())
    if unseen is not None:
        unseen.extend(label for label in walk.unseen if label not in unseen)
    return walk.h.hexdigest()[:16]


def digest_parts(obj, unseen: list[str] | None = None, name: str = "") -> dict[str, Any]:
    """``obj``'s digest and, by name, what it reaches one level down, each a number or
    string by value, else by its digest: a partial's arguments, a function's code,
    globals, closure and defaults, an object's class and attributes (through jit
    wrappers and bound methods). So a refusal can say which part changed
    (``center: stored 0.5, now 0.7``); ``"digest"`` covers all of it.

    >>> from functools import partial
    >>> def f(x, center):
    ...     return (x - center) ** 2
    >>> digest_parts(partial(f, center=0.5))["center"]
    0.5
    """
    arrays: dict = {}  # (each array hashed once)
    out: dict[str, Any] = {"digest": _digest(obj, unseen, name, arrays)}
    for part, value in _parts(obj, "", 0):
        out.setdefault(part, value if _plain(value) else _digest(value, None, name, arrays))
    return out


def _parts(obj, prefix: str, depth: int):
    for _ in range(8):  # jax.jit(f), jax.vmap(f), functools.wraps: the function inside
        inner = getattr(obj, "__wrapped__", None)
        if inner is None or isinstance(obj, type) or (
                isinstance(obj, types.FunctionType) and not library_function(obj)):
            break
        obj = inner
    if depth > 3:
        return
    if isinstance(obj, partial):
        for k, v in obj.keywords.items():
            yield prefix + k, v
        for i, arg in enumerate(obj.args):
            yield f"{prefix}args[{i}]", arg
        yield from _parts(obj.func, prefix, depth + 1)
    elif isinstance(obj, types.MethodType):
        yield from _parts(obj.__func__, prefix, depth + 1)
        yield from _parts(obj.__self__, prefix + "self.", depth + 1)
    elif isinstance(obj, types.FunctionType):
        if not library_function(obj):
            yield prefix + "code", obj.__code__
            for name in code_names(obj.__code__):
                if name in obj.__globals__ and not isinstance(obj.__globals__[name],
                                                              types.ModuleType):
                    yield prefix + name, obj.__globals__[name]
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            try:
                yield prefix + name, cell.cell_contents
            except ValueError:  # an empty cell
                pass
        if obj.__defaults__ or obj.__kwdefaults__:
            yield prefix + "defaults", (obj.__defaults__, obj.__kwdefaults__)
    elif not isinstance(obj, (*SCALARS, type, types.ModuleType, list, tuple, dict, set,
                              frozenset, np.ndarray, np.generic, jax.Array)):
        attrs = attributes(obj)
        if attrs:
            yield prefix + "class", type(obj)
            for k, v in attrs:
                yield prefix + k, v


def _plain(value) -> bool:
    """Stored as it is: a JSON number that equals itself, or a short string."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= 80
    return isinstance(value, (int, bool, type(None))) and not isinstance(value, Enum)


def fingerprint(description: dict) -> str:
    """The hash of a sweep's description (``bpjax.sweep.plan.describe``)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What differs between two descriptions, ``"key: stored A, now B"``; for a
    function, also its parts that differ (``loss_fn: stored "1f..", now "9c.." (center:
    stored 0.5, now 0.7)``).

    >>> differences({"steps": 20, "f": {"digest": "1f", "c": 0.5}},
    ...             {"steps": 40, "f": {"digest": "9c", "c": 0.7}})
    ['f: stored "1f", now "9c" (c: stored 0.5, now 0.7)', 'steps: stored 20, now 40']
    """
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        both = isinstance(a, dict) and isinstance(b, dict)
        if both and "digest" in a and "digest" in b:  # digest_parts
            parts = differences({k: v for k, v in a.items() if k != "digest"},
                                {k: v for k, v in b.items() if k != "digest"})
            more = f" ({'; '.join(parts[:3])}{'; ...' if len(parts) > 3 else ''})"
            out.append(f"{prefix}{key}: stored {_short(json.dumps(a['digest']))}, now "
                       f"{_short(json.dumps(b['digest']))}" + (more if parts else ""))
        elif both and any(isinstance(v, dict) and "digest" in v
                          for v in (*a.values(), *b.values())):  # metrics, optimizers
            out += differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: stored {_short(json.dumps(a))}, now "
                       f"{_short(json.dumps(b))}")
    return out


def _short(s: str) -> str:
    return s if len(s) < 60 else s[:57] + "..."


def user_value(value: Any) -> Any:
    """``Options.fingerprint`` checked and in its JSON form (a tuple becomes a list)."""
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"Options(fingerprint=...) must be a string or a JSON value (numbers, "
                        "strings, lists, dicts) describing inputs bpjax cannot see, e.g. a "
                        f"data file's version; got {value!r} ({e})") from None


_warned: set[str] = set()


def warn_unseen(description: dict, out: str) -> None:
    """Warns, once per process and input, of what a sweep's fingerprint cannot see into,
    unless the description has the user's own fingerprint."""
    new = [u for u in description.get("unseen", ()) if u not in _warned]
    if not new or description.get("fingerprint") is not None:
        return
    _warned.update(new)
    warnings.warn(UnseenInputWarning(
        f"bpjax: the fingerprint of the sweep in {out} cannot see into {'; '.join(new)}: "
        "a rerun after a change there would resume or load the old results; if it can "
        "change, pass Options(fingerprint=...) naming its version"), stacklevel=2)


