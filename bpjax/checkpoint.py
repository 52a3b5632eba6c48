"""Checkpoints of a sweep in progress, so that rerunning the same sweep resumes it.

An output folder holds:
  .lock                   held (``flock``) by the one process writing the folder; its pid
  sweep.json              what the sweep is (grid, optimizers, steps, ...), its fingerprint
                          and its layout (chunk size, segment length)
  history-K.npy           trajectories of every optimizer and config ([o, config, record,
                          ...]; streamed sweeps), written in place one chunk's rows at a time
  chunk-O-C.npz           the per-run records of finished chunk C of optimizer O, with its
                          position (O, C) and rows
  progress.npz            the chunk in progress: its carry and records at the last segment
  result.npz              the finished result (``bpjax.load``); the pieces above are removed

The write order, which keeps a folder resumable at every instant:

0. ``Store(out)`` takes ``.lock`` (``bpjax.lock``: exclusive, non-blocking; the OS drops
   it when the process dies), so one process writes a folder; only then it removes what
   killed writers left: ``.tmp-*`` (files being written) and ``.write-test-*`` (probes).
1. ``sweep.json`` is written once, before any other file of the sweep: a folder with
   sweep files but no ``sweep.json`` is refused. It commits the folder to one sweep
   (its description and fingerprint, ``bpjax.fingerprint``) and layout; every later
   file carries the same fingerprint, and a rerun whose fingerprint differs is refused,
   naming what differs.
2. Chunks run in order, optimizer by optimizer: (0, 0), (0, 1), ..., (1, 0), ... At a
   segment boundary (at most every ``checkpoint_seconds``) ``progress.npz`` is
   replaced: the commit point of a segment (position O, C and records done; the carry;
   the chunk's trajectories so far, in the file itself).
3. A finished chunk's rows are written into ``history-K.npy`` (in place, not atomic),
   the history files are fsynced, then ``chunk-O-C.npz`` is written: the commit point of
   the chunk. Before it exists those rows are undefined and are recomputed on resume;
   after, they are final. (This runs in a writer thread while the next chunk trains,
   so ``progress.npz`` may already hold chunk C + 1 when chunk C commits: a progress
   file is used only by the chunk it names, and only if that chunk has no chunk file.)
4. ``result.npz`` (naming the ``history-K.npy`` files, with their checksums) is the
   commit point of the sweep; then the chunk files and ``progress.npz`` are removed and
   the lock released. A folder with ``result.npz`` is finished, whatever else is in it.

So at every instant the folder holds: nothing of the sweep, or ``sweep.json`` and then
the history files; committed chunks, each with its history rows; at most one
``progress.npz`` (a whole one); maybe ``result.npz``; and dead writers' temporary
files, which no reader looks at. A rerun keeps every committed chunk, resumes the chunk
that ``progress.npz`` names (unless it committed), and recomputes the rest, in the
same layout.

Under ``jax.distributed`` each process runs 0-3 in its own folder ``out/process-K``,
locked by that process; ``out`` holds ``sweep.json`` (written by every process, same
content) and is opened by all of them, so it is not locked (``lock=False``). Process 0
then writes ``out``'s ``history-K.npy`` (the slices', combined) and ``result.npz``, the
commit point of the whole sweep; then each process removes its slice folder.

Every file but ``history-K.npy`` and ``.lock`` is written to a temporary name, fsynced
and renamed (and its folder fsynced), so a kill or a power loss leaves either the old
file or the new one, never half of one; a failed write (full disk) raises
``io.WriteError`` naming the file. Each file is read with its sizes checked before
anything is allocated, and a damaged, foreign or misplaced one is refused by name,
never half-used. Resuming
reuses the stored layout, because XLA on CPU may round differently for a different
batch shape; with the same layout the resumed result is bit-identical to an
uninterrupted run.

Not checked: ``history-K.npy`` rows altered after their chunk committed (chunk files
hold no checksum of them yet; ``result.npz`` does, once written).
"""

import errno
import json
import os
from typing import Any

import numpy as np

from bpjax import lock as folder_lock
from bpjax.fingerprint import differences, fingerprint, warn_unseen
from bpjax.io import WriteError, atomic_savez, atomic_write_text, read_npz

SWEEP_JSON = "sweep.json"
PROGRESS = "progress.npz"
RESULT = "result.npz"


class Store:
    """Reads and writes one sweep's output folder, as its only writer.

    Args:
      out: the folder (created if missing).
      description: what defines the sweep (its hash is the fingerprint).
      lock: take the folder's lock (``.lock``) for the Store's life, refusing a folder
        another Store holds, and remove dead writers' leftovers. False for a folder
        that several processes open at once (the top folder under jax.distributed).

    The lock is released by ``finish``, ``close`` (or leaving a ``with`` block), when the
    Store is garbage-collected, or by the OS when the process dies.
    """

    def __init__(self, out, description: dict, lock: bool = True):
        self.out = os.fspath(out)
        self.description = description
        self.fingerprint = fingerprint(description)
        self.layout: dict | None = None
        self._lock_fd: int | None = None
        try:
            os.makedirs(self.out, exist_ok=True)
        except OSError as e:
            raise ValueError(f"out={self.out!r} is not a writable folder: {e.strerror}") from e
        if lock:
            self._lock_fd = folder_lock.take(self.out)
            if self._lock_fd is not None:
                folder_lock.remove_leftovers(self.out)
        try:
            probe = self.path(f"{folder_lock.PROBE}{os.getpid()}")  # one per process
            with open(probe, "w") as f:
                f.write("x")
            os.remove(probe)
        except OSError as e:
            self.close()
            raise ValueError(f"out={self.out!r} is not a writable folder: {e.strerror}") from e
        warn_unseen(description, self.out)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def close(self) -> None:
        """Releases the folder's lock (removing ``.lock``); the Store reads on."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            folder_lock.release(self.out, fd)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone
            pass

    # -- what the folder holds ---------------------------------------------------------
    def open(self, layout: dict) -> dict | None:
        """Checks the folder holds this sweep (or nothing).

        Returns the stored layout when resuming (to be reused), else None. On refusal
        the lock is released.
        """
        try:
            stored = self._open(layout)
        except BaseException:
            self.close()
            raise
        self.layout = stored or layout
        return stored

    def _open(self, layout: dict) -> dict | None:
        path = self.path(SWEEP_JSON)
        if not os.path.exists(path):
            ours = ("chunk-", "progress", "result", "history-", "process-")
            if any(n.startswith(ours) for n in os.listdir(self.out)):
                raise ValueError(f"{self.out} holds sweep files but no {SWEEP_JSON}; "
                                 "use an empty folder")
            self._write_json(layout)
            return None
        try:
            with open(path, "rb") as f:
                stored = json.loads(f.read().decode())
            if not (isinstance(stored, dict) and isinstance(stored.get("layout"), dict)
                    and isinstance(stored.get("description"), dict)
                    and isinstance(stored.get("fingerprint"), str)):
                raise ValueError("not a bpjax sweep.json: no fingerprint, layout or "
                                 "description")
            if set(stored["layout"]) != set(layout) or not all(
                    type(v) is int and v > 0 for v in stored["layout"].values()):
                raise ValueError(f"its layout {stored['layout']} is not one of {sorted(layout)}"
                                 " as positive whole numbers")
        except (OSError, ValueError) as e:  # (JSONDecodeError, UnicodeDecodeError)
            raise ValueError(
                f"{path} is damaged ({type(e).__name__}: {e}); it says which sweep "
                f"{self.out} holds, so that folder cannot be resumed: delete the folder (or "
                "use another) to start over") from e
        if stored["fingerprint"] != self.fingerprint:
            diff = differences(stored["description"], self.description)
            raise ValueError(
                f"{self.out} holds a different sweep ({'; '.join(diff) or 'fingerprint differs'})"
                "; use another output folder, or delete this one to start over")
        return stored["layout"]

    def _write_json(self, layout: dict) -> None:
        self._write(SWEEP_JSON, lambda: atomic_write_text(self.path(SWEEP_JSON), json.dumps(
            {"fingerprint": self.fingerprint, "layout": layout, "description": self.description},
            indent=1)))

    def _write(self, name: str, write) -> None:
        """Runs ``write()``; a failed write says what is kept and how to go on."""
        try:
            write()
        except WriteError as e:
            cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
            space = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            raise WriteError(e.errno, f"could not write {self.path(name)}: "
                             f"{cause.strerror or cause}; the previous checkpoint is intact; "
                             f"{'free space' if space else 'fix that'} and rerun to resume"
                             ) from cause

    # -- finished chunks --------------------------------------------------------
    def chunk_name(self, o: int, c: int) -> str:
        return self.path(f"chunk-{o}-{c}.npz")

    def save_chunk(self, o: int, c: int, arrays: dict[str, np.ndarray],
                   rows: tuple[int, int] | None = None) -> None:
        """Commits chunk ``c`` of optimizer ``o`` (grid rows ``rows``, by default from the
        layout's chunk size and the arrays' length), after its history rows are synced.
        """
        # (progress.npz stays: by now it may hold the next chunk's progress, saved while
        # this one was written; a finished chunk's own is ignored on resume)
        lo, hi = rows if rows is not None else self._rows(c, arrays)
        name = os.path.basename(self.chunk_name(o, c))

        def write():
            self._sync_histories()
            atomic_savez(self.chunk_name(o, c), {
                **arrays, "fingerprint": np.array(self.fingerprint),
                "position": np.array([o, c], np.int64), "rows": np.array([lo, hi], np.int64)})

        self._write(name, write)

    def load_chunk(self, o: int, c: int, rows: tuple[int, int] | None = None
                   ) -> dict[str, np.ndarray] | None:
        """Chunk ``c`` of optimizer ``o`` if it committed, else None; a file that holds
        another chunk (or other rows than ``rows``, by default the layout's) is refused."""
        path = self.chunk_name(o, c)
        arrays = self._read(path)
        if arrays is None:
            return None
        delete = ": delete it to recompute that chunk"
        position, stored = arrays.pop("position", None), arrays.pop("rows", None)
        if position is None or stored is None or position.shape != (2,) or stored.shape != (2,):
            raise ValueError(f"{path} records no position (not written by this version)"
                             + delete)
        if position.tolist() != [o, c]:
            raise ValueError(f"{path} holds optimizer {position[0]} chunk {position[1]}, "
                             f"expected optimizer {o} chunk {c}" + delete)
        lo, hi = stored.tolist()
        length = _length(arrays)
        want = rows if rows is not None else self._rows(c, arrays)
        if (lo, hi) != tuple(want) or (length is not None and hi - lo != length):
            raise ValueError(f"{path} holds rows {lo}-{hi - 1}, expected {want[0]}-"
                             f"{want[1] - 1}" + delete)
        return arrays

    def _rows(self, c: int, arrays: dict) -> tuple[int, int]:
        """Chunk ``c``'s grid rows: from the layout's chunk size and the arrays' length."""
        length = _length(arrays) or 0
        lo = c * self.layout["chunk"] if self.layout and "chunk" in self.layout else -1
        return lo, lo + length

    def _sync_histories(self) -> None:
        """Makes the history rows just written durable before the chunk commits."""
        for name in sorted(os.listdir(self.out)):
            if name.startswith("history-") and name.endswith(".npy"):
                fd = os.open(self.path(name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                except OSError as e:
                    raise WriteError(e.errno, f"could not sync {self.path(name)}: "
                                     f"{e.strerror}") from e
                finally:
                    os.close(fd)

    # -- the chunk in progress --------------------------------------------------------
    def save_progress(self, o: int, c: int, done: int, carry_leaves, arrays: dict) -> None:
        out = {f"carry/{i}": np.asarray(x) for i, x in enumerate(carry_leaves)}
        out.update(arrays)
        out["position"] = np.array([o, c, done], np.int64)
        out["fingerprint"] = np.array(self.fingerprint)
        self._write(PROGRESS, lambda: atomic_savez(self.path(PROGRESS), out))

    def load_progress(self) -> dict[str, Any] | None:
        arrays = self._read(self.path(PROGRESS))
        if arrays is not None and (arrays.get("position") is None
                                   or arrays["position"].shape != (3,)):
            raise ValueError(f"{self.path(PROGRESS)} records no position; delete it to "
                             "recompute that chunk")
        return arrays

    def _read(self, path: str) -> dict | None:
        if not os.path.exists(path):
            return None
        try:
            arrays = read_npz(path)
        except (OSError, ValueError) as e:  # a damaged file is reported, never half-used
            raise ValueError(f"{path} is damaged ({e}); delete it to recompute that part") from e
        if str(arrays.pop("fingerprint", "")) != self.fingerprint:
            raise ValueError(f"{path} belongs to another sweep; delete it")
        return arrays

    def finish(self, result, external=None) -> None:
        """Writes ``result.npz`` (the commit point), removes the pieces, releases the lock."""
        self._write(RESULT, lambda: result.save(self.path(RESULT), external))
        for name in os.listdir(self.out):
            if name.startswith("chunk-") or name == PROGRESS:
                os.remove(self.path(name))
        self.close()

    def finished(self) -> bool:
        return os.path.exists(self.path(RESULT))


def _length(arrays: dict) -> int | None:
    """How many grid rows a chunk's arrays hold."""
    a = arrays.get("diverged_at")
    return None if a is None or a.ndim == 0 else int(a.shape[0])
