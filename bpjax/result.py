"""Sweep results: arrays over named dims, ``sel``, and their file (``result_file``)."""

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import numpy as np

PARAMS = ("final_params", "params", "best_params")  # trees shaped like one run's params
TREES = PARAMS + ("metrics",)
ARRAYS = ("loss", "final_loss", "diverged_at", "val_loss", "best_val_loss", "best_step",
          "min_loss", "min_step", "reached_at")
STEPPED = ("loss", "val_loss", "params", "metrics")


@dataclass
class Result:
    """Arrays over ``dims`` (the optimizer axis first when there are several).

    ``loss`` and ``params`` leaves have a trailing ``step`` axis (the recorded steps,
    ``coords["step"]``); ``final_loss``, ``diverged_at`` and ``final_params`` do not.
    With validation data (early stopping), ``val_loss`` has the step axis too, and
    ``best_val_loss``, ``best_step`` and ``best_params`` hold each run's best record.
    Sweeps also summarize each run's recorded losses: ``min_loss``, ``min_step``
    (where it was first seen) and ``reached_at`` (the first record step with loss
    at or below the sweep's ``target``; -1 if never). ``metrics`` maps each name given
    to ``sweep(metrics=)`` to its values at the record steps. Trajectories of a sweep run
    with ``out=`` are memory-mapped from ``.npy`` files beside its ``result.npz``.

    >>> r = Result(dims=("lr",), coords={"lr": np.array([0.1, 0.2, 0.3]), "step": np.arange(2)},
    ...            loss=np.zeros((3, 2)), final_loss=np.array([3.0, 2.0, 1.0]),
    ...            diverged_at=np.full(3, -1), final_params={"w": np.zeros((3, 4))})
    >>> r.sel(lr=[0.3, 0.1]).final_loss.tolist(), r.sel(lr=slice(0.15, None)).coords["lr"]
    ([1.0, 3.0], array([0.2, 0.3]))
    >>> r.dims_of("loss"), r.sel(lr=0.2).final_params["w"].shape
    (('lr', 'step'), (4,))
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
    metrics: dict[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.final_loss.shape

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    @property
    def steps(self) -> np.ndarray:
        return self.coords["step"]

    def dims_of(self, name: str) -> tuple[str, ...]:
        """The axes of field ``name``: ``dims``, then ``"step"`` for ``loss``, ``val_loss``,
        ``params`` and ``metrics`` (also ``"metrics/NAME"``). Params leaves and metrics
        also keep their own shape after these axes."""
        if name in STEPPED or name.startswith("metrics/") and name[8:] in (self.metrics or {}):
            return self.dims + ("step",)
        if name in ARRAYS or name in TREES or name == "diverged":
            return self.dims
        raise KeyError(f"no array field {name!r}; fields are {ARRAYS + TREES}")

    def to_xarray(self):
        """An ``xarray.Dataset`` of every array on its named dims (see ``bpjax.frames``)."""
        from bpjax.frames import to_xarray

        return to_xarray(self)

    def to_dataframe(self):
        """A ``pandas.DataFrame`` with one row per run (see ``bpjax.frames``)."""
        from bpjax.frames import to_dataframe

        return to_dataframe(self)

    def sel(self, **coords) -> "Result":
        """Selects along named axes by value, not index.

        ``res.sel(optimizer="adam", lr=0.1)`` drops those axes; a list or tuple of values
        keeps the axis with those values, in that order; ``slice(lo, hi)`` keeps the
        values from ``lo`` to ``hi`` inclusive (either may be None). Float values match
        to a relative tolerance of 1e-5; a value not on the axis raises KeyError.
        """
        index: list[Any] = [slice(None)] * len(self.dims)
        for name, value in coords.items():
            if name not in self.dims:
                raise KeyError(f"no axis {name!r}; axes are {self.dims}")
            index[self.dims.index(name)] = _positions(name, self.coords[name], value)
        kept = [(d, i) for d, i in zip(self.dims, index) if not isinstance(i, int)]
        keep = tuple(d for d, _ in kept)
        new = {k: v for k, v in self.coords.items() if k in keep or k == "step"}
        new.update({d: self.coords[d][i] for d, i in kept if isinstance(i, np.ndarray)})
        by = self.meta.get("params_by")
        own = PARAMS if by else ()  # params kept per static combination (bpjax.sweep.static)
        take = _taker(index)
        fields = {name: jax.tree.map(take, getattr(self, name))
                  for name in ARRAYS + TREES if name not in own}
        meta = self.meta
        if by:
            take_own = _taker([i for d, i in zip(self.dims, index) if d not in by])
            at = [index[self.dims.index(d)] for d in by]
            combos = [c for c in itertools.product(*(range(len(self.coords[d])) for d in by))
                      if all(i == j if isinstance(i, int) else isinstance(i, slice)
                             or j in i for i, j in zip(at, c))]
            names = [",".join(f"{d}={self.coords[d][j].item()}" for d, j in zip(by, c))
                     for c in combos]
            one = all(isinstance(i, int) for i in at)
            for name in PARAMS:
                tree = getattr(self, name)
                picked = None if tree is None else {
                    n: jax.tree.map(take_own, tree[n]) for n in names}
                fields[name] = picked[names[0]] if one and picked is not None else picked
            if one:
                meta = {k: v for k, v in self.meta.items() if k != "params_by"}
        return replace(self, dims=keep, coords=new, meta=meta, **fields)

    def save(self, path, external: dict[str, np.ndarray] | None = None) -> None:
        """Writes atomically (temporary file, fsync, rename): never a half-written file.

        ``external`` (used by ``sweep(out=...)``) names ``.npy`` files in the same
        folder, as memory-mapped arrays, that hold some arrays already: the file
        then refers to them (with their checksums) instead of copying them. A params
        leaf that is not an array of numbers (a function, a string) raises ValueError:
        nothing is pickled. (See ``bpjax.result_file``.)
        """
        from bpjax import result_file

        result_file.save(self, path, external)


def _taker(index: list) -> Any:
    """``x[index]`` with ``index`` per axis an int, ``slice(None)`` or an array of
    positions, applied one axis at a time (outer, not numpy's paired, indexing)."""
    basic = tuple(i if isinstance(i, int) else slice(None) for i in index)
    kept = [i for i in index if not isinstance(i, int)]
    picks = [(axis, i) for axis, i in enumerate(kept) if isinstance(i, np.ndarray)]

    def take(x):
        x = x[basic]
        for axis, ix in picks:
            if ix.size and np.array_equal(ix, np.arange(ix[0], ix[0] + ix.size)):
                x = x[(slice(None),) * axis + (slice(ix[0], ix[0] + ix.size),)]  # a view
            else:
                x = np.take(x, ix, axis=axis)
        return x

    return take


def _positions(name: str, axis: np.ndarray, value) -> int | np.ndarray:
    """Where ``value`` (one value, several, or a ``slice`` of values) is on ``axis``."""
    if isinstance(value, slice):
        if value.step is not None:
            raise ValueError(f"{name}={value!r}: a slice of values takes no step")
        ok = np.ones(axis.shape, bool)
        if value.start is not None:
            ok &= (axis >= value.start) | _match(axis, value.start)
        if value.stop is not None:
            ok &= (axis <= value.stop) | _match(axis, value.stop)
        if not ok.any():
            raise KeyError(f"{name}={value!r} holds no value on the axis; values: "
                           f"{axis.tolist()}")
        return np.flatnonzero(ok)
    if isinstance(value, (list, tuple)) or np.ndim(value) == 1:
        return np.array([_positions(name, axis, v) for v in value], dtype=np.intp)
    hits = np.flatnonzero(_match(axis, value))
    if hits.size == 0:
        raise KeyError(f"{name}={value!r} is not on the axis; values: {axis.tolist()}")
    return int(hits[0])


def _match(axis: np.ndarray, value) -> np.ndarray:
    if axis.dtype.kind in "US":
        return axis == value
    return np.isclose(axis, value, rtol=1e-5, atol=0)




from bpjax.result_file import FORMAT, FORMAT_VERSION, load  # noqa: E402, F401 (needs Result)
