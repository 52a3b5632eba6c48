"""A small streamed sweep (3 optimizers, 2 chunks each, 2 segments per chunk) run with
every file operation bpjax performs in its output folder wrapped, for the exhaustive
kill test (tests/test_kill_points.py).

Run as ``python kill_case.py OUT MODE [ARG]``:
  record DIR   runs the sweep; before and after each operation, the folder as it is
               then is kept (each distinct one once) in DIR, with DIR/ops.json: one
               entry per operation (thread, index in its thread, what, file) and the
               state before and after it. What a SIGKILL at that instant leaves.
  kill LABEL   runs the sweep and SIGKILLs itself just before the operation LABEL
               ("thread:index"), or just after it with LABEL "thread:index:after".
  int LABEL    the same with SIGINT; exits 130 after bpjax's one line.

Operations are labelled by thread and index in their thread, not by a global count,
because the writer thread commits a chunk while the main thread trains the next: each
thread's sequence is the same in every run, their interleaving is not. Each wrapped
operation runs under one lock, so a kept folder is one instant of both threads.
An ``np.savez`` into a temporary file counts as one operation (its inner writes only
touch a file no reader opens); every other write, open for writing, create, rename,
remove, fsync, flock and mkdir in the folder is one.
"""

import builtins
import fcntl
import hashlib
import json
import os
import signal
import sys
import threading

import jax.numpy as jnp
import numpy as np

import bpjax

# 4 configurations in 2 chunks of 2 (one diverging run in each, for SGD and momentum:
# guarded replays), 3 optimizers; ``KILL_CASE=big``: 12 in 3 chunks of 4, 4 segments
BIG = os.environ.get("KILL_CASE") == "big"
GRID = bpjax.Grid(x0=[0.5, 1.0, 2.0] if BIG else [0.5, 2.0], lr=[0.1, 1.0, 1e4] if BIG
                  else [0.1, 1e4])
OPTIMIZERS = ["sgd", "momentum", "adam"]


def loss(p):
    return 0.5 * jnp.sum((p["w"] - 0.3) ** 2)


def init(config, key):
    return {"w": config["x0"] * jnp.array([1.0, -2.0])}


def run(out=None, **kw):
    return bpjax.sweep(loss, init, OPTIMIZERS, GRID, 40 if BIG else 20, record_every=5,
                       chunk_size=4 if BIG else 2, segments=4 if BIG else 2,
                       checkpoint_seconds=0.0, out=out, progress=False, **kw)


class Recorder:
    """Wraps the ``os``, ``builtins``, ``fcntl`` and numpy calls that touch ``folder``."""

    def __init__(self, folder: str, mode: str, arg: str):
        self.folder = os.path.realpath(folder)
        self.mode, self.arg = mode, arg
        self.lock = threading.RLock()
        self.local = threading.local()
        self.counts: dict[str, int] = {}
        self.ops: list[dict] = []
        self.states: dict[str, str] = {}  # content hash -> state id
        self.real = {name: getattr(os, name) for name in (
            "open", "replace", "rename", "remove", "unlink", "fsync", "write", "ftruncate",
            "truncate", "mkdir", "makedirs", "rmdir", "listdir", "readlink")}
        self.real_open, self.real_flock, self.real_savez = builtins.open, fcntl.flock, np.savez

    # -- where an operation is ---------------------------------------------------------
    def mine(self, path) -> str | None:
        """``path``'s name in the folder (``.`` for the folder), or None if elsewhere."""
        if isinstance(path, int):
            try:
                path = self.real["readlink"](f"/proc/self/fd/{path}")
            except OSError:
                return None
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None
        path = os.path.realpath(os.fsdecode(path))
        if path == self.folder:
            return "."
        return os.path.basename(path) if os.path.dirname(path) == self.folder else None

    def op(self, what: str, name: str | None, call):
        """Runs ``call()`` as one operation on ``name`` (recorded, kept, killed at)."""
        if name is None or getattr(self.local, "inside", False):
            return call()
        with self.lock:
            thread = "main" if threading.current_thread() is threading.main_thread() \
                else "writer"
            index = self.counts.get(thread, 0)
            self.counts[thread] = index + 1
            label = f"{thread}:{index}"
            entry = {"label": label, "what": what, "file": _kind(name)}
            self.stop(label)
            entry["before"] = self.keep()
            self.local.inside = True
            try:
                out = call()
            finally:
                self.local.inside = False
            self.stop(label + ":after")
            entry["after"] = self.keep()
            self.ops.append(entry)
            return out

    def stop(self, label: str) -> None:
        if self.mode in ("kill", "int") and label == self.arg:
            os.kill(os.getpid(), signal.SIGKILL if self.mode == "kill" else signal.SIGINT)

    def keep(self) -> str | None:
        """The folder's state now, kept once per distinct content; its id."""
        if self.mode != "record":
            return None
        files = {}
        names = self.real["listdir"](self.folder) if os.path.isdir(self.folder) else []
        for name in sorted(names):
            with self.real_open(os.path.join(self.folder, name), "rb") as f:
                files[name] = f.read()
        digest = hashlib.sha256(repr(sorted((k, hashlib.sha256(v).hexdigest())
                                            for k, v in files.items())).encode()).hexdigest()
        if digest not in self.states:
            state = self.states[digest] = f"state-{len(self.states):04d}"
            where = os.path.join(self.arg, state)
            self.real["makedirs"](where)
            for name, data in files.items():
                with self.real_open(os.path.join(where, name), "wb") as f:
                    f.write(data)
        return self.states[digest]

    # -- the wrappers ----------------------------------------------------------------
    def install(self) -> None:
        real, rec = self.real, self

        def path_op(name, what=None):
            def wrapped(path, *a, **k):
                return rec.op(what or name, rec.mine(path), lambda: real[name](path, *a, **k))
            return wrapped

        def os_open(path, flags, *a, **k):
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            name = rec.mine(path) if writes else None
            return rec.op("os.open", name, lambda: real["open"](path, flags, *a, **k))

        def replace(src, dst, *a, **k):
            return rec.op("replace", rec.mine(dst), lambda: real["replace"](src, dst, *a, **k))

        def fd_op(name):
            def wrapped(fd, *a, **k):
                return rec.op(name, rec.mine(fd), lambda: real[name](fd, *a, **k))
            return wrapped

        def open_(file, mode="r", *a, **k):
            writes = any(c in mode for c in "wax+")
            name = rec.mine(file) if writes and not isinstance(file, int) else None
            f = rec.op(f"open {mode}", name, lambda: rec.real_open(file, mode, *a, **k))
            return _Writes(f, rec, name) if name is not None else f

        def flock(fd, how):
            return rec.op("flock", rec.mine(fd), lambda: rec.real_flock(fd, how))

        def savez(file, *a, **k):
            return rec.op("np.savez", rec.mine(file.fileno() if hasattr(file, "fileno")
                                               else file), lambda: rec.real_savez(file, *a, **k))

        os.open, os.replace, os.rename = os_open, replace, replace
        for name in ("remove", "unlink", "truncate", "mkdir", "makedirs", "rmdir"):
            setattr(os, name, path_op(name))
        for name in ("fsync", "write", "ftruncate"):
            setattr(os, name, fd_op(name))
        builtins.open, fcntl.flock, np.savez = open_, flock, savez


class _Writes:
    """A file opened for writing in the folder, whose writes are operations."""

    def __init__(self, f, rec: Recorder, name: str):
        self._f, self._rec, self._name = f, rec, name

    def write(self, data):
        return self._rec.op("write", self._name, lambda: self._f.write(data))

    def __getattr__(self, attr):
        return getattr(self._f, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)


def _kind(name: str) -> str:
    """A file's name, with a temporary file's random part dropped."""
    for prefix in (".tmp-", ".write-test-"):
        if name.startswith(prefix):
            return prefix + "*"
    return name


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else ""
    recorder = Recorder(out, mode, arg)
    recorder.install()
    try:
        run(out)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        if mode == "record":
            with recorder.real_open(os.path.join(arg, "ops.json"), "w") as f:
                json.dump(recorder.ops, f, indent=0)
    print("finished", flush=True)
