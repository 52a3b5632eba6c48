"""Checkpoints of a sweep in progress, so that rerunning the same sweep resumes it.

An output folder holds:
  sweep.json              what the sweep is (grid, optimizers, steps, ...) and its fingerprint
  chunk-O-C.npz           the records of finished chunk C of optimizer O
  progress.npz            the chunk in progress: its carry and records at the last segment
  result.npz              the finished result (``bpjax.load``); the pieces above are removed

Every file is written to a temporary name, fsynced and renamed, so a kill at any
moment leaves either the old file or the new one, never half of one. Resuming
reuses the stored layout (chunk size and segment length), because XLA on CPU may
round differently for a different batch shape; with the same layout the resumed
result is bit-identical to an uninterrupted run.
"""

import hashlib
import inspect
import json
import os
import types
from typing import Any

import jax
import numpy as np

from bpjax.io import atomic_savez, atomic_write_text

SWEEP_JSON = "sweep.json"
PROGRESS = "progress.npz"
RESULT = "result.npz"


def digest(obj, depth: int = 0) -> str:
    """A best-effort digest of a value: arrays by dtype, shape and bytes; functions by
    their code, constants and closed-over values.

    Two functions with the same digest compute the same thing unless they read
    mutable global state; closures (e.g. the net inside a loss) are followed.
    """
    h = hashlib.sha256()
    _feed(h, obj, depth, set())
    return h.hexdigest()[:16]


def _feed(h, obj, depth: int, seen: set) -> None:
    if depth > 6 or id(obj) in seen:
        h.update(b"<...>")
        return
    seen.add(id(obj))
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        fn = obj.__func__ if isinstance(obj, types.MethodType) else obj
        h.update(fn.__qualname__.encode())  # not the module: __main__ in a script
        _feed_code(h, fn.__code__)
        for cell in fn.__closure__ or ():
            try:
                _feed(h, cell.cell_contents, depth + 1, seen)
            except ValueError:  # empty cell
                h.update(b"<empty>")
        for value in fn.__defaults__ or ():
            _feed(h, value, depth + 1, seen)
    elif isinstance(obj, (np.ndarray, jax.Array)):
        a = np.asarray(obj)
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    elif isinstance(obj, (int, float, str, bool, bytes, type(None), complex)):
        h.update(repr(obj).encode())
    elif isinstance(obj, (list, tuple)):
        h.update(type(obj).__name__.encode())
        for item in obj:
            _feed(h, item, depth + 1, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            h.update(repr(k).encode())
            _feed(h, v, depth + 1, seen)
    elif callable(obj):
        h.update(getattr(obj, "__qualname__", type(obj).__qualname__).encode())
        try:
            h.update(inspect.getsource(obj).encode())
        except (OSError, TypeError):
            pass
    else:
        h.update(type(obj).__qualname__.encode())


def _feed_code(h, code) -> None:
    h.update(code.co_code)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _feed_code(h, c)
        else:
            h.update(repr(c).encode())
    h.update(repr(code.co_names).encode())


def fingerprint(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


class Store:
    """Reads and writes one sweep's output folder."""

    def __init__(self, out, description: dict):
        self.out = os.fspath(out)
        self.description = description
        self.fingerprint = fingerprint(description)
        try:
            os.makedirs(self.out, exist_ok=True)
            probe = os.path.join(self.out, f".write-test-{os.getpid()}")  # one per process
            with open(probe, "w") as f:
                f.write("x")
            os.remove(probe)
        except OSError as e:
            raise ValueError(f"out={self.out!r} is not a writable folder: {e.strerror}") from e

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def open(self, layout: dict) -> dict | None:
        """Checks the folder holds this sweep (or nothing).

        Returns the stored layout when resuming (to be reused), else None.
        """
        path = self.path(SWEEP_JSON)
        if not os.path.exists(path):
            ours = ("chunk-", "progress", "result", "history-", "process-")
            if any(n.startswith(ours) for n in os.listdir(self.out)):
                raise ValueError(f"{self.out} holds sweep files but no {SWEEP_JSON}; "
                                 "use an empty folder")
            self._write_json(layout)
            return None
        with open(path) as f:
            stored = json.load(f)
        if stored.get("fingerprint") != self.fingerprint:
            diff = _differences(stored.get("description", {}), self.description)
            raise ValueError(
                f"{self.out} holds a different sweep ({'; '.join(diff) or 'fingerprint differs'})"
                "; use another output folder, or delete this one to start over")
        return stored["layout"]

    def _write_json(self, layout: dict) -> None:
        atomic_write_text(self.path(SWEEP_JSON), json.dumps(
            {"fingerprint": self.fingerprint, "layout": layout, "description": self.description},
            indent=1))

    # -- finished chunks --------------------------------------------------------
    def chunk_name(self, o: int, c: int) -> str:
        return self.path(f"chunk-{o}-{c}.npz")

    def save_chunk(self, o: int, c: int, arrays: dict[str, np.ndarray]) -> None:
        # (progress.npz stays: by now it may hold the next chunk's progress, saved while
        # this one was written; a finished chunk's own is ignored on resume)
        atomic_savez(self.chunk_name(o, c), {**arrays, "fingerprint": np.array(self.fingerprint)})

    def load_chunk(self, o: int, c: int) -> dict[str, np.ndarray] | None:
        return self._read(self.chunk_name(o, c))

    # -- the chunk in progress --------------------------------------------------------
    def save_progress(self, o: int, c: int, done: int, carry_leaves, arrays: dict) -> None:
        out = {f"carry/{i}": np.asarray(x) for i, x in enumerate(carry_leaves)}
        out.update(arrays)
        out["position"] = np.array([o, c, done], np.int64)
        out["fingerprint"] = np.array(self.fingerprint)
        atomic_savez(self.path(PROGRESS), out)

    def load_progress(self) -> dict[str, Any] | None:
        return self._read(self.path(PROGRESS))

    def _read(self, path: str) -> dict | None:
        if not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as e:  # noqa: BLE001 - a damaged file is reported, never half-used
            raise ValueError(f"{path} is damaged ({e}); delete it to recompute that part") from e
        if str(arrays.pop("fingerprint", "")) != self.fingerprint:
            raise ValueError(f"{path} belongs to another sweep; delete it")
        return arrays

    def finish(self, result, external=None) -> None:
        result.save(self.path(RESULT), external)
        for name in os.listdir(self.out):
            if name.startswith("chunk-") or name == PROGRESS:
                os.remove(self.path(name))

    def finished(self) -> bool:
        return os.path.exists(self.path(RESULT))


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            a, b = json.dumps(old.get(key)), json.dumps(new.get(key))
            short = lambda s: s if len(s) < 60 else s[:57] + "..."  # noqa: E731
            out.append(f"{key}: stored {short(a)}, now {short(b)}")
    return out
