"""What a finished chunk's file, ``chunk-O-C.npz``, holds besides the chunk's per-run
arrays: its position (optimizer O, chunk C), its grid rows, and the sha256 of its rows
in each history file (``bpjax.history_files``); and the checks that refuse, by name, a
chunk file in the wrong place or history rows altered after their chunk committed.
(The sweep's fingerprint is checked by ``checkpoint.Store``, as in every file.)
"""

import os

import numpy as np

from bpjax import history_files

DELETE = ": delete it to recompute that chunk"


def name(o: int, c: int) -> str:
    return f"chunk-{o}-{c}.npz"


def contents(arrays: dict, o: int, c: int, rows: tuple[int, int],
             blocks: dict[str, str]) -> dict[str, np.ndarray]:
    """The arrays of chunk (o, c)'s file: ``arrays`` and what it holds."""
    files = sorted(blocks)
    return {**arrays, "position": np.array([o, c], np.int64),
            "rows": np.array(rows, np.int64), "blocks/files": np.array(files, str),
            "blocks/sha256": np.array([blocks[f] for f in files], str)}


def check(path: str, arrays: dict, o: int, c: int, want, files=()) -> tuple[int, int, dict]:
    """Takes what the chunk file at ``path`` holds out of its ``arrays``; returns its rows
    and history checksums. Refuses (``ValueError``, naming the file) one that holds
    another chunk than (o, c), other rows than ``want`` (or a length that disagrees),
    or no checksum of its rows in one of the history ``files``."""
    names, sums = arrays.pop("blocks/files", None), arrays.pop("blocks/sha256", None)
    position, stored = arrays.pop("position", None), arrays.pop("rows", None)
    if position is None or stored is None or position.shape != (2,) or stored.shape != (2,):
        raise ValueError(f"{path} records no position (not written by this version)" + DELETE)
    if position.tolist() != [o, c]:
        raise ValueError(f"{path} holds optimizer {position[0]} chunk {position[1]}, "
                         f"expected optimizer {o} chunk {c}" + DELETE)
    lo, hi = stored.tolist()
    n = length(arrays)
    if (lo, hi) != tuple(want) or (n is not None and hi - lo != n):
        raise ValueError(f"{path} holds rows {lo}-{hi - 1}, expected {want[0]}-"
                         f"{want[1] - 1}" + DELETE)
    blocks = {} if names is None or sums is None or names.shape != sums.shape else dict(
        zip(names.tolist(), sums.tolist()))
    for file in files:
        if file not in blocks:
            raise ValueError(f"{path} holds no checksum of its rows in {file} (written by an "
                             "older bpjax?)" + DELETE)
    return lo, hi, blocks


def verify(folder: str, o: int, c: int, lo: int, hi: int, blocks: dict[str, str]) -> None:
    """Refuses chunk (o, c) if its rows in a history file differ from its checksums."""
    chunk = name(o, c)
    for file, digest in sorted(blocks.items()):
        path = os.path.join(folder, file)
        try:
            if history_files.block_digest(path, o, lo, hi) == digest:
                continue
            problem = f"differ from the checksum {chunk} holds of them"
        except ValueError as e:
            problem = f"cannot be read: the file {e}"
        raise ValueError(f"{path}: rows {lo}-{hi - 1} of optimizer {o}, committed by {chunk}, "
                         f"{problem}; the file was changed after that chunk finished: delete "
                         f"{chunk} to recompute that chunk")


def committed(folder: str) -> list[str]:
    """The chunk files in ``folder`` (the chunks that committed), in order."""
    found = []
    for file in os.listdir(folder):
        parts = file[6:-4].split("-") if file.startswith("chunk-") and file.endswith(
            ".npz") else []
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            found.append((int(parts[0]), int(parts[1]), file))
    return [file for *_, file in sorted(found)]


def length(arrays: dict) -> int | None:
    """How many grid rows a chunk's arrays hold."""
    a = arrays.get("diverged_at")
    return None if a is None or a.ndim == 0 else int(a.shape[0])
