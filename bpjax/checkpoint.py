"""Checkpoints of a sweep in progress, so that rerunning the same sweep resumes it.

An output folder holds:
  .lock                   held (``flock``) by the one process writing the folder; its pid
  sweep.json              what the sweep is (grid, optimizers, steps, ...), its fingerprint
                          and its layout (chunk size, segment length)
  history-K.npy           trajectories of every optimizer and config ([o, config, record,
                          ...]; streamed sweeps), written in place one chunk's rows at a time
  chunk-O-C.npz           the per-run records of finished chunk C of optimizer O, with its
                          position (O, C), rows and its rows' sha256 in each history-K.npy
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
3. A finished chunk's rows are written into ``history-K.npy`` (in place, not atomic;
   the sha256 of the bytes written kept), the history files are fsynced, then
   ``chunk-O-C.npz`` (with those checksums, ``bpjax.chunk_file``) is written: the commit
   point of the chunk. Before it exists those rows are undefined and are recomputed on
   resume; after, they are final, and checked against the checksums on every resume and
   before step 4. (This runs in a writer thread while the next chunk trains, so
   ``progress.npz`` may already hold chunk C + 1 when chunk C commits: a progress file is
   used only by the chunk it names, and only if that chunk has no chunk file.)
4. ``result.npz`` (naming the ``history-K.npy`` files, with their whole checksums) is the
   commit point of the sweep; then the chunk files and ``progress.npz`` are removed and
   the lock released. A folder with ``result.npz`` is finished, whatever else is in it
   (a rerun loads it, removing what a kill just after it left).

So at every instant the folder holds: nothing of the sweep, or ``sweep.json`` and then
the history files (made before any chunk commits: one missing or short beside a chunk
file is refused, not remade); committed chunks, each with its history rows; at most one
whole ``progress.npz``; maybe ``result.npz``; and dead writers' temporary files, which
no reader looks at. A rerun keeps every committed chunk, resumes the chunk that
``progress.npz`` names (unless it committed), and recomputes the rest, in the same
layout. (tests/test_kill_points.py resumes the folder at every file operation.)

Under ``jax.distributed`` each process runs 0-3 in its own folder ``out/process-K``,
locked by that process; ``out`` holds ``sweep.json`` (written by every process, same
content) and is opened by all of them, so it is not locked (``lock=False``). Process 0
then writes ``out``'s ``history-K.npy`` (the slices', combined) and ``result.npz``, the
commit point of the whole sweep; then each process removes its slice folder.

Every file but ``history-K.npy`` and ``.lock`` is written to a temporary name, fsynced
and renamed (its folder fsynced), so a kill or a power loss leaves the old file or the
new one, never half; a failed write (full disk) raises ``io.WriteError`` naming the file.
Each file is read with its sizes checked before anything is allocated; a damaged, foreign
or misplaced one is refused by name, never half-used. Resuming reuses the stored layout
(XLA on CPU may round differently for another batch shape), so the resumed result is
bit-identical to an uninterrupted run. Not checked: rows of a chunk not yet committed
(rewritten anyway), and changes made after the last check or with matching checksums.
"""

import errno
import json
import os
from typing import Any

import numpy as np

from bpjax import chunk_file, history_files
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
        self._blocks: dict = {}  # (o, c) -> rows, {history file: sha256} of chunks seen
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
            flags = {k for k, v in layout.items() if type(v) is bool}  # (optional: a layout
            sizes = set(layout) - flags  # written before bpjax had them lacks them)
            got = stored["layout"]
            if not (sizes <= set(got) <= set(layout)) or not all(
                    type(got[k]) is int and got[k] > 0 for k in sizes) or not all(
                    type(got[k]) is bool for k in flags & set(got)):
                raise ValueError(f"its layout {got} is not one of {sorted(sizes)} as positive "
                                 f"whole numbers (and {sorted(flags)} as true or false)")
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

    # -- finished chunks (bpjax.chunk_file) -------------------------------------------
    def chunk_name(self, o: int, c: int) -> str:
        return self.path(chunk_file.name(o, c))

    def save_chunk(self, o: int, c: int, arrays: dict[str, np.ndarray],
                   rows: tuple[int, int] | None = None, blocks: dict[str, str] | None = None
                   ) -> None:
        """Commits chunk ``c`` of optimizer ``o`` (grid rows ``rows``, by default from the
        layout's chunk size and the arrays' length), after its history rows are synced;
        ``blocks``: the sha256 of its rows in each history file, by file name.
        """
        # (progress.npz stays: by now it may hold the next chunk's progress, saved while
        # this one was written; a finished chunk's own is ignored on resume)
        lo, hi = rows if rows is not None else self._rows(c, arrays)
        blocks = dict(blocks or {})

        def write():
            history_files.sync(self.out)
            atomic_savez(self.chunk_name(o, c), chunk_file.contents(
                arrays | {"fingerprint": np.array(self.fingerprint)}, o, c, (lo, hi), blocks))

        self._write(chunk_file.name(o, c), write)
        self._blocks[(o, c)] = (lo, hi, blocks)

    def load_chunk(self, o: int, c: int, rows: tuple[int, int] | None = None,
                   files: list[str] = ()) -> dict[str, np.ndarray] | None:
        """Chunk ``c`` of optimizer ``o`` if it committed, else None; a file that holds
        another chunk (or other rows than ``rows``, by default the layout's) is refused,
        and so is one whose rows in the history ``files`` differ from its checksums."""
        path = self.chunk_name(o, c)
        arrays = self._read(path)
        if arrays is None:
            return None
        want = rows if rows is not None else self._rows(c, arrays)
        lo, hi, blocks = chunk_file.check(path, arrays, o, c, want, files)
        chunk_file.verify(self.out, o, c, lo, hi, blocks)
        self._blocks[(o, c)] = (lo, hi, blocks)
        return arrays

    def committed(self) -> list[str]:
        """The chunk files in the folder (the chunks that committed), in order."""
        return chunk_file.committed(self.out)

    def _rows(self, c: int, arrays: dict) -> tuple[int, int]:
        """Chunk ``c``'s grid rows: from the layout's chunk size and the arrays' length."""
        length = chunk_file.length(arrays) or 0
        lo = c * self.layout["chunk"] if self.layout and "chunk" in self.layout else -1
        return lo, lo + length

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
        """Checks every committed chunk's history rows against its checksums, writes
        ``result.npz`` (the commit point), removes the pieces, releases the lock."""
        for (o, c), (lo, hi, blocks) in sorted(self._blocks.items()):
            chunk_file.verify(self.out, o, c, lo, hi, blocks)
        self._write(RESULT, lambda: result.save(self.path(RESULT), external))
        self.tidy()
        self.close()

    def tidy(self) -> None:
        """Removes the pieces of a finished sweep (those a writer killed just after
        ``result.npz`` left, too), if this Store holds the lock."""
        if self.finished() and self._lock_fd is not None:
            for name in os.listdir(self.out):
                if name.startswith("chunk-") or name == PROGRESS:
                    os.remove(self.path(name))

    def finished(self) -> bool:
        return os.path.exists(self.path(RESULT))

