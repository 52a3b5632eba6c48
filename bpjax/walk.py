"""The walk behind ``bpjax.fingerprint.digest``: what a value reaches, fed to a hash.

See ``bpjax.fingerprint`` for what is followed and what is only named.
"""

import hashlib
import re
import sys
import types
from enum import Enum
from functools import partial
from typing import Any

import jax
import numpy as np

MAX_DEPTH = 16  # levels of nesting (a closure in a closure, a dict in a list, ...)
MAX_NODES = 50_000  # objects walked for one digest
LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "optax", "bpjax", "scipy", "ml_dtypes",
                       "opt_einsum"}) | sys.stdlib_module_names
SCALARS = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis))
_DEFAULT_REPR = re.compile(r" at 0x[0-9a-fA-F]+")  # <Foo object at 0x7f...>: no state shown
# class attributes that do not change what its instances compute
_CLASS_NOISE = frozenset({"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__",
                          "__firstlineno__", "__static_attributes__", "__annotations__"})


class Walk:
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
        if isinstance(obj, SCALARS):  # (not tracked: small ints and strings are shared)
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
        walk = Walk(self.name, self.arrays)
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
        if library_function(fn):  # by name; what it closes over is walked below
            self.put(fn.__globals__.get("__name__") or "")
        else:
            self._code(fn.__code__, depth, path)
            names = code_names(fn.__code__)
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
        attrs = attributes(obj)
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


def attributes(obj) -> list[tuple[str, Any]]:
    """An object's ``__dict__`` and ``__slots__`` values, by name."""
    attrs = getattr(obj, "__dict__", None)
    out = dict(attrs) if isinstance(attrs, dict) else {}
    for cls in type(obj).__mro__:
        slots = vars(cls).get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return sorted(out.items())


def code_names(code: types.CodeType) -> list[str]:
    """The global and attribute names a function's code (and its lambdas) uses."""
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += [n for n in code_names(c) if n not in names]
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


def library_function(fn: types.FunctionType) -> bool:
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
