"""Sweep results with named axes, saved as one ``.npz`` whose metadata is JSON.

The file is an ordinary NumPy archive: ``np.load(path)`` reads every array
without pickle, and ``json.loads(str(np.load(path)["meta.json"]))`` gives the
metadata (format version, grid, optimizers, versions, fingerprint and a
SHA-256 of every array, which ``load`` checks).
"""

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

FORMAT = "bpjax-result"
FORMAT_VERSION = 1


@dataclass
class Result:
    """Arrays over ``dims`` (the optimizer axis first when there are several).

    ``loss`` and ``params`` leaves have a trailing ``step`` axis (the recorded steps,
    ``coords["step"]``); ``final_loss``, ``diverged_at`` and ``final_params`` do not.
    With validation data (early stopping), ``val_loss`` has the step axis too, and
    ``best_val_loss``, ``best_step`` and ``best_params`` hold each run's best record.
    Sweeps also summarize each run's recorded losses: ``min_loss``, ``min_step``
    (where it was first seen) and ``reached_at`` (the first record step with loss
    at or below the sweep's ``target``; -1 if never). Trajectories of a sweep run
    with ``out=`` are memory-mapped from ``.npy`` files beside its ``result.npz``.
    """

    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    loss: np.ndarray
    final_loss: np.ndarray
    diverged_at: np.ndarray
    final_params: Any
    params: Any = None
    meta: dict = field(default_factory=dict)
    val_loss: np.ndarray | None = None
    best_val_loss: np.ndarray | None = None
    best_step: np.ndarray | None = None
    best_params: Any = None
    min_loss: np.ndarray | None = None
    min_step: np.ndarray | None = None
    reached_at: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.final_loss.shape

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    @property
    def steps(self) -> np.ndarray:
        return self.coords["step"]

    def sel(self, **coords) -> "Result":
        """Selects one value along each named axis (by value, not index).

        ``res.sel(optimizer="adam", lr=0.1)`` drops those axes. Float values
        match to a relative tolerance of 1e-5; a value not on the axis raises.
        """
        index: list[Any] = [slice(None)] * len(self.dims)
        for name, value in coords.items():
            if name not in self.dims:
                raise KeyError(f"no axis {name!r}; axes are {self.dims}")
            axis = self.coords[name]
            if axis.dtype.kind in "US":
                hits = np.flatnonzero(axis == value)
            else:
                hits = np.flatnonzero(np.isclose(axis, value, rtol=1e-5, atol=0))
            if hits.size == 0:
                raise KeyError(f"{name}={value!r} is not on the axis; values: {axis.tolist()}")
            index[self.dims.index(name)] = int(hits[0])
        idx = tuple(index)
        keep = tuple(d for d, i in zip(self.dims, index) if isinstance(i, slice))

        def take(a):
            return None if a is None else _tree_map(lambda x: x[idx], a)

        return replace(
            self,
            dims=keep,
            coords={k: v for k, v in self.coords.items() if k in keep or k == "step"},
            loss=self.loss[idx],
            final_loss=self.final_loss[idx],
            diverged_at=self.diverged_at[idx],
            final_params=take(self.final_params),
            params=take(self.params),
            val_loss=take(self.val_loss),
            best_val_loss=take(self.best_val_loss),
            best_step=take(self.best_step),
            best_params=take(self.best_params),
            min_loss=take(self.min_loss),
            min_step=take(self.min_step),
            reached_at=take(self.reached_at),
        )

    def save(self, path, external: dict[str, np.ndarray] | None = None) -> None:
        """Writes atomically (temporary file, fsync, rename): never a half-written file.

        ``external`` (used by ``sweep(out=...)``) names ``.npy`` files in the same
        folder, as memory-mapped arrays, that hold some arrays already: the file
        then refers to them (with their checksums) instead of copying them.
        """
        arrays: dict[str, np.ndarray] = {
            "loss": self.loss,
            "final_loss": self.final_loss,
            "diverged_at": self.diverged_at,
        }
        for name in ("val_loss", "best_val_loss", "best_step", "min_loss", "min_step",
                     "reached_at"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for name, value in self.coords.items():
            arrays[f"coords/{name}"] = np.asarray(value)
        final_spec = _flatten(self.final_params, "final_params", arrays)
        params_spec = None if self.params is None else _flatten(self.params, "params", arrays)
        best_spec = (None if self.best_params is None
                     else _flatten(self.best_params, "best_params", arrays))
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            dims=list(self.dims),
            final_params_tree=final_spec,
            params_tree=params_spec,
            best_params_tree=best_spec,
            sha256={k: _digest(v) for k, v in arrays.items()},
        )
        files = {}
        for file in (external or {}).values():
            for name, a in list(arrays.items()):
                if np.shares_memory(a, file) and a.nbytes == file.nbytes:
                    files[name] = [os.path.basename(file.filename), list(a.shape)]
                    del arrays[name]
        meta["external"] = files
        arrays["meta.json"] = np.array(json.dumps(meta))
        atomic_savez(path, arrays)


def load(path) -> Result:
    """Reads a file written by ``Result.save``, checking format and checksums."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(
            f"{path} is not a readable bpjax result (truncated or corrupt): {e}") from e
    if "meta.json" not in arrays:
        raise ValueError(f"{path} has no meta.json: not a bpjax result")
    meta = json.loads(str(arrays.pop("meta.json")))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {meta.get('format')!r} v{meta.get('format_version')}, "
            f"expected {FORMAT!r} v{FORMAT_VERSION}"
        )
    sums = meta.pop("sha256")
    folder = os.path.dirname(os.path.abspath(path))
    for name, (file, shape) in meta.pop("external", {}).items():
        try:
            arrays[name] = np.load(os.path.join(folder, file), mmap_mode="r").reshape(shape)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: its array {name!r} lives in {file}, which is missing "
                             f"or unreadable beside it ({e})") from e
    if set(sums) != set(arrays):
        missing = sorted(set(sums) ^ set(arrays))
        raise ValueError(f"{path}: arrays {missing} missing or unexpected; file was altered")
    for name, digest in sums.items():
        if _digest(arrays[name]) != digest:
            raise ValueError(f"{path}: checksum mismatch in {name!r}; file was altered")
    dims = tuple(meta.pop("dims"))
    coords = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("coords/")}
    params_spec = meta.pop("params_tree")
    best_spec = meta.pop("best_params_tree", None)
    return Result(
        dims=dims,
        coords=coords,
        loss=arrays["loss"],
        final_loss=arrays["final_loss"],
        diverged_at=arrays["diverged_at"],
        final_params=_unflatten(meta.pop("final_params_tree"), arrays),
        params=None if params_spec is None else _unflatten(params_spec, arrays),
        meta=meta,
        val_loss=arrays.get("val_loss"),
        best_val_loss=arrays.get("best_val_loss"),
        best_step=arrays.get("best_step"),
        best_params=None if best_spec is None else _unflatten(best_spec, arrays),
        min_loss=arrays.get("min_loss"),
        min_step=arrays.get("min_step"),
        reached_at=arrays.get("reached_at"),
    )


def atomic_write(path, write, suffix: str = "") -> None:
    """``write(binary_file)`` into a temporary file beside ``path``, fsync, rename: a
    kill or a full disk leaves either the old file or the new one, never half of one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays), ".npz")


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    if _whole_file(a):  # read the file, not the mapping: page cache is not our memory
        with open(a.filename, "rb") as f:
            f.seek(a.offset)
            while block := f.read(64 << 20):
                h.update(block)
        return h.hexdigest()
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    step = max(1, (64 << 20) // max(1, a.itemsize))  # 64 MB at a time: no copy of a file
    for i in range(0, flat.size, step):
        h.update(flat[i: i + step].tobytes())
    return h.hexdigest()


def _whole_file(a: np.ndarray) -> bool:
    """Whether ``a`` is a memory-mapped array covering all of its file's data."""
    if not isinstance(a, np.memmap) or not a.filename or not a.flags.c_contiguous:
        return False
    try:
        return a.nbytes == os.path.getsize(a.filename) - a.offset
    except OSError:
        return False


def _flatten(tree, prefix: str, out: dict) -> Any:
    """Stores leaves in ``out`` under ``prefix/...`` and returns a JSON spec of the tree."""
    if isinstance(tree, dict):
        return {"dict": {str(k): _flatten(v, f"{prefix}/{k}", out) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_flatten(v, f"{prefix}/{i}", out) for i, v in enumerate(tree)]}
    if hasattr(tree, "_fields"):  # NamedTuple: kept as a dict of its fields
        return _flatten(tree._asdict(), prefix, out)
    out[prefix] = np.asarray(tree)
    return {"leaf": prefix}


def _unflatten(spec, arrays: dict) -> Any:
    if "dict" in spec:
        return {k: _unflatten(v, arrays) for k, v in spec["dict"].items()}
    if "list" in spec:
        return [_unflatten(v, arrays) for v in spec["list"]]
    if "tuple" in spec:
        return tuple(_unflatten(v, arrays) for v in spec["tuple"])
    return arrays[spec["leaf"]]


def _tree_map(fn, tree):
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(_tree_map(fn, v) for v in tree)
    return fn(tree)
