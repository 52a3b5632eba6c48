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
import re
import sys
import types
import warnings
from enum import Enum
from functools import partial
from typing import Any

import jax
import numpy as np

MAX_DEPTH = 16  # levels of nesting (a closure in a closure, a dict in a list, ...)
MAX_NODES = 50_000  # objects walked for one digest
LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "optax", "bpjax", "scipy", "ml_dtypes",
                       "opt_einsum"}) | sys.stdlib_module_names
_SCALARS = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis))
_DEFAULT_REPR = re.compile(r" at 0x[0-9a-fA-F]+")  # <Foo object at 0x7f...>: no state shown
# class attributes that do not change what its instances compute
_CLASS_NOISE = frozenset({"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__",
                          "__firstlineno__", "__static_attributes__", "__annotations__"})


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
    walk = _Walk(name, arrays)
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
                isinstance(obj, types.FunctionType) and not _library_function(obj)):
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
        if not _library_function(obj):
            yield prefix + "code", obj.__code__
            for name in _names(obj.__code__):
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
    elif not isinstance(obj, (*_SCALARS, type, types.ModuleType, list, tuple, dict, set,
                              frozenset, np.ndarray, np.generic, jax.Array)):
        attrs = _attributes(obj)
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


class _Walk:
    """One digest's walk: the hash, what it has seen (kept alive, so that ids stay
    unique) and what it could not see into."""

    def __init__(self, name: str, arrays: dict):
        self.h = hashlib.sha256()
        self.name = name
        self.seen: dict[int, tuple[int, Any]] = {}  # id -> (order of first visit, object)
        self.arrays = arrays  # id -> (array, its digest)
        self.unseen: list[str] = []

    def put(self, *parts: str) -> None:
        for part in parts:
            self.h.update(part.encode() + b"\0")

    def miss(self, obj, path: tuple, why: str) -> None:
        label = f"{self.name}: {'.'.join(path) or 'itself'} ({why} {_type_name(obj)})"
        if label not in self.unseen:
            self.unseen.append(label)
        self.put("unseen", _type_name(obj))

    def feed(self, obj, depth: int, path: tuple) -> None:
        if isinstance(obj, _SCALARS):  # (not tracked: small ints and strings are shared)
            self.put(type(obj).__name__, repr(obj))
        elif isinstance(obj, types.ModuleType):
            self.put("module", obj.__name__)
        elif isinstance(obj, (np.ndarray, np.generic, jax.Array)):
            self._array(obj, depth, path)
        elif id(obj) in self.seen:  # a cycle, or an object reached twice
            self.put("ref", str(self.seen[id(obj)][0]))
        elif depth > MAX_DEPTH:
            self.miss(obj, path, f"nested deeper than {MAX_DEPTH}:")
        elif len(self.seen) >= MAX_NODES:
            self.miss(obj, path, f"past {MAX_NODES} objects:")
        else:
            self.seen[id(obj)] = (len(self.seen), obj)
            self._feed(obj, depth + 1, path)

    def _feed(self, obj, depth: int, path: tuple) -> None:
        if isinstance(obj, (list, tuple)):
            self.put(type(obj).__qualname__, str(len(obj)))
            names = getattr(obj, "_fields", None) or [f"[{i}]" for i in range(len(obj))]
            for name, item in zip(names, obj):
                self.feed(item, depth, path + (name,))
        elif isinstance(obj, dict):
            self.put(type(obj).__qualname__, str(len(obj)))
            for k, v in obj.items():
                self.feed(k, depth, path)
                self.feed(v, depth, path + (str(k),))
        elif isinstance(obj, (set, frozenset)):  # in an order that no hash seed changes
            self.put(type(obj).__qualname__, *sorted(self._apart(x, depth, path) for x in obj))
        elif isinstance(obj, types.FunctionType):
            self._function(obj, depth, path)
        elif isinstance(obj, types.MethodType):
            self.put("method")
            self.feed(obj.__func__, depth, path)
            self.feed(obj.__self__, depth, path + ("__self__",))
        elif isinstance(obj, partial):
            self.put("partial", str(len(obj.args)))
            self.feed(obj.func, depth, path)
            for i, arg in enumerate(obj.args):
                self.feed(arg, depth, path + (f"args[{i}]",))
            for k in sorted(obj.keywords):
                self.put(k)
                self.feed(obj.keywords[k], depth, path + (k,))
        elif isinstance(obj, (staticmethod, classmethod)):
            self.put(type(obj).__name__)
            self.feed(obj.__func__, depth, path)
        elif isinstance(obj, property):
            self.put("property")
            for f in (obj.fget, obj.fset, obj.fdel):
                self.feed(f, depth, path)
        elif isinstance(obj, type):
            self._class(obj, depth, path)
        elif isinstance(obj, types.CodeType):
            self._code(obj, depth, path)
        elif isinstance(obj, np.dtype):
            self.put("dtype", str(obj))
        elif isinstance(obj, Enum):
            self.put("enum", _type_name(obj), obj.name)
            self.feed(obj.value, depth, path)
        elif isinstance(obj, (types.BuiltinFunctionType, np.ufunc)):  # C functions: by name
            self.put("builtin", getattr(obj, "__module__", None) or "", obj.__qualname__
                     if hasattr(obj, "__qualname__") else obj.__name__)
            owner = getattr(obj, "__self__", None)  # a bound C method: its object
            if owner is not None and not isinstance(owner, types.ModuleType):
                self.feed(owner, depth, path + ("__self__",))
        elif hasattr(obj, "__wrapped__") and not isinstance(obj, type):
            self._wrapper(obj, depth, path)
        else:
            self._object(obj, depth, path)

    def _apart(self, obj, depth: int, path: tuple) -> str:
        """The digest of ``obj`` on its own (to sort a set's items by)."""
        walk = _Walk(self.name, self.arrays)
        walk.feed(obj, depth, path)
        self.unseen += [u for u in walk.unseen if u not in self.unseen]
        return walk.h.hexdigest()

    def _array(self, obj, depth: int, path: tuple) -> None:
        if id(obj) not in self.arrays:
            kind = getattr(obj, "dtype", None)
            try:
                bits = obj
                if jax.dtypes.issubdtype(kind, jax.dtypes.prng_key):
                    bits = jax.random.key_data(obj)  # a typed key: its kind and bits
                a = np.asarray(bits)
            except Exception:  # noqa: BLE001 - e.g. an array spread over processes
                self.miss(obj, path, "unreadable")
                return
            if a.dtype == object:
                self.feed(a.tolist(), depth, path)
                return
            h = hashlib.sha256(f"{kind}{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
            self.arrays[id(obj)] = obj, h.hexdigest()  # (obj kept: its id stays unique)
        self.put("array", self.arrays[id(obj)][1])

    def _function(self, fn: types.FunctionType, depth: int, path: tuple) -> None:
        self.put("function", fn.__qualname__)
        if _library_function(fn):  # by name; what it closes over is walked below
            self.put(fn.__globals__.get("__name__") or "")
        else:
            self._code(fn.__code__, depth, path)
            names = _names(fn.__code__)
            scope = fn.__globals__
            for name in names:
                if name in scope:
                    self.put("global", name)
                    self.feed(scope[name], depth, path + (name,))
            for name in names:  # a user module's attributes that the code names
                m = scope.get(name)
                if isinstance(m, types.ModuleType) and not _library(m.__name__):
                    for attr in names:
                        if attr in vars(m) and not isinstance(vars(m)[attr], types.ModuleType):
                            self.put("attribute", name, attr)
                            self.feed(vars(m)[attr], depth, path + (name, attr))
        self.feed(fn.__defaults__, depth, path + ("defaults",))
        self.feed(fn.__kwdefaults__, depth, path + ("defaults",))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            self.put("free", name)
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                self.put("<empty>")
                continue
            self.feed(value, depth, path + (name,))

    def _code(self, code: types.CodeType, depth: int, path: tuple) -> None:
        # (not its line numbers or file: moving a function changes nothing)
        self.put("code", str(code.co_argcount), str(code.co_kwonlyargcount),
                 repr(code.co_names))
        self.h.update(code.co_code)
        for c in code.co_consts:
            self.feed(c, depth, path)

    def _class(self, cls: type, depth: int, path: tuple) -> None:
        self.put("class", cls.__qualname__)
        if _library(cls.__module__):
            self.put(cls.__module__)
            return
        for name, value in sorted(vars(cls).items()):
            if name not in _CLASS_NOISE:
                self.put(name)
                self.feed(value, depth, path + (name,))
        self.feed(cls.__bases__, depth, path)

    def _wrapper(self, obj, depth: int, path: tuple) -> None:
        """``jax.jit(f)``, ``jax.custom_jvp(f)``, ...: the function wrapped and the
        wrapper's public attributes (a custom_jvp's rule), not its private ones
        (jit's ``_jit_info`` names the source line)."""
        self.put("wrapper", _type_name(obj))
        self.feed(obj.__wrapped__, depth, path)
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            for name in sorted(k for k in attrs if not k.startswith("_")):
                self.put(name)
                self.feed(attrs[name], depth, path + (name,))

    def _object(self, obj, depth: int, path: tuple) -> None:
        cls = type(obj)
        attrs = _attributes(obj)
        if any(not _python_module(c.__module__) for c in cls.__mro__[:-1]):
            # state in C, which no attribute shows: only a repr that says what it is will do
            try:
                text = repr(obj)
            except Exception:  # noqa: BLE001 - a broken __repr__ is just unseen
                text = ""
            if not text or _DEFAULT_REPR.search(text):
                self.miss(obj, path, "state in C, default repr:")
                return
            self.put("repr", _type_name(obj), text)
        self.feed(cls, depth, path)
        for name, value in attrs:
            self.put(name)
            self.feed(value, depth, path + (name,))


def _attributes(obj) -> list[tuple[str, Any]]:
    """An object's ``__dict__`` and ``__slots__`` values, by name."""
    attrs = getattr(obj, "__dict__", None)
    out = dict(attrs) if isinstance(attrs, dict) else {}
    for cls in type(obj).__mro__:
        slots = vars(cls).get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return sorted(out.items())


def _names(code: types.CodeType) -> list[str]:
    """The global and attribute names a function's code (and its lambdas) uses."""
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += [n for n in _names(c) if n not in names]
    return names


_LIBRARY: dict[str, bool] = {}


def _library(module: str) -> bool:
    """A module of a library (named, not walked): jax, NumPy, optax, bpjax, the
    standard library, or an installed package."""
    if module not in _LIBRARY:
        m = sys.modules.get(module)
        file = getattr(m, "__file__", None) or ""
        _LIBRARY[module] = (module.partition(".")[0] in LIBRARIES
                            or "site-packages" in file or "dist-packages" in file)
    return _LIBRARY[module]


def _library_function(fn: types.FunctionType) -> bool:
    # (by the module its code is in, not __module__, which functools.wraps copies)
    return _library(fn.__globals__.get("__name__") or "")


def _python_module(module: str) -> bool:
    """A module written in Python (else its classes may keep state in C)."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if file:
        return file.endswith(".py")
    return module not in sys.builtin_module_names  # (an interactive __main__, ...)


def _type_name(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
