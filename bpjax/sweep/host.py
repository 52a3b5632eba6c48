"""The sweep's host side: its arrays (in memory, or ``.npy`` files in an output
folder), the thread that writes them while the next chunk trains, and the
``Result`` assembled from them.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from bpjax import engine, history_files
from bpjax.result import Result
from bpjax.sweep.plan import Plan


class Host:
    """The sweep's host arrays, indexed [optimizer, config, ...].

    Trajectories (loss, params, validation loss: ``[o, config, record, ...]``) live in
    memory, or, given a folder, in ``.npy`` files there written one chunk at a time
    (a chunk's rows are one contiguous block). Per-run values (diverged_at, final
    params, best, summaries) and, with ``record="summary"``, the losses at the
    start and end, live in memory.
    """

    def __init__(self, plan: Plan, shapes: engine.Carry, folder: str | None,
                 committed: list[str] = ()):
        self.carry_shapes = shapes
        self.config_steps = 0  # computed by this call, padding and compaction included
        self.replays = 0  # segments run again with the per-step guard (not in config_steps)
        self.replayed = 0  # the config-steps those replays ran (padding included)
        self.discarded = 0  # segments run ahead and thrown away (not in config_steps)
        self.n_opt, self.n = len(plan.specs), plan.n
        lead = (self.n_opt, self.n)
        spec = plan.specs[0]
        self.full = spec.histories
        self.folder = folder if spec.histories else None
        self.committed = list(committed)  # the folder's chunk files (their rows are final)
        n_cols = plan.steps // plan.record_every + 1
        dtype = shapes.loss.dtype
        self.histories: dict[str, np.ndarray] = {}
        self.metric_shapes = plan.metric_shapes
        self.record_shapes = plan.record_shapes
        if spec.histories:  # in the order of the records' leaves
            for i, (name, x) in enumerate(history_names(plan.record_shapes)):
                self.histories[name] = self._array(i, lead + (n_cols,) + x.shape, x.dtype)
        else:
            self.histories["loss"] = np.empty(lead + (2,), dtype)
        self.finals = {"diverged_at": np.empty(lead, np.int32)}
        for i, x in enumerate(jax.tree.leaves(shapes.params)):
            self.finals[f"final/{i}"] = np.empty(lead + x.shape[1:], x.dtype)
        for group, state in shapes.recorded.items():
            for i, x in enumerate(jax.tree.leaves(state)):
                self.finals[f"{group}/{i}"] = np.empty(lead + x.shape[1:], x.dtype)

    def _array(self, i: int, shape, dtype) -> np.ndarray:
        if self.folder is None:
            return np.empty(shape, dtype)
        return history_files.open_array(os.path.join(self.folder, f"history-{i}.npy"), shape,
                                        dtype, self.committed)

    def files(self) -> dict[str, np.ndarray]:
        """The trajectories written to files (name -> memory-mapped array)."""
        return dict(self.histories) if self.folder else {}

    def chunk_histories(self, chunk: int, n_cols: int):
        """Zeroed host buffers shaped like one chunk's device trajectories."""
        if not self.full:
            return None
        return jax.tree.map(lambda x: np.zeros((chunk, n_cols) + x.shape, x.dtype),
                            self.record_shapes)

    def saved_histories(self, saved: dict):
        return [saved[f"history/{i}"] for i in range(len(self.histories))]

    @staticmethod
    def fetch(carry, hist):
        """Every array of a chunk the host keeps, fetched at once (the copies overlap)."""
        return jax.device_get((carry._replace(opt_state=None, grad=None, loss=None), hist))

    def put(self, o: int, lo: int, hi: int, carry, hist, loss0) -> dict[str, str]:
        """Writes a chunk's ``fetch``-ed arrays into the host arrays (and files); returns
        the sha256 of its block of each history file written, by file name."""
        m, blocks = hi - lo, {}
        if hist is not None:
            for name, h in zip(self.histories, jax.tree.leaves(hist)):
                a = self.histories[name]
                if isinstance(a, np.memmap):  # one contiguous block, written through the file
                    digest = history_files.write_block(a, o, lo, np.asarray(h)[:m])
                    blocks[os.path.basename(a.filename)] = digest
                else:
                    a[o, lo:hi] = np.asarray(h)[:m]
        else:
            self.histories["loss"][o, lo:hi, 0] = loss0
            self.histories["loss"][o, lo:hi, 1] = np.asarray(carry.summary.last)[:m]
        self.finals["diverged_at"][o, lo:hi] = np.asarray(carry.diverged_at)[:m]
        for group, tree in (("final", carry.params), *carry.recorded.items()):
            for i, x in enumerate(jax.tree.leaves(tree)):
                self.finals[f"{group}/{i}"][o, lo:hi] = np.asarray(x)[:m]
        return blocks

    def gather(self, n: int) -> None:
        """Every process's slice, in grid order, in every process (jax.distributed).
        Trajectories in files stay there (see ``combine``)."""
        from jax.experimental import multihost_utils

        for arrays in (self.finals,) if self.folder else (self.histories, self.finals):
            for name, a in arrays.items():
                slices = np.asarray(multihost_utils.process_allgather(a))
                arrays[name] = np.concatenate(list(slices), axis=1)[:, :n]
        split = np.array(divmod(self.config_steps, 1 << 30) + divmod(self.replayed, 1 << 30)
                         + (self.replays, self.discarded), np.int32)
        hi, lo, rhi, rlo, replays, discarded = np.asarray(
            multihost_utils.process_allgather(split)).sum(0)
        self.config_steps = int(hi) * (1 << 30) + int(lo)  # (int32 on the wire)
        self.replayed = int(rhi) * (1 << 30) + int(rlo)
        self.replays, self.discarded = int(replays), int(discarded)

    def combine(self, folder: str, slices: list[str], n: int) -> None:
        """Each array's files from the processes' ``slices`` folders (in process order)
        into one file in ``folder`` of the whole grid of ``n`` configs, copied some
        rows at a time (host memory stays bounded); the host then maps that file."""
        for i, (name, mine) in enumerate(self.histories.items()):
            shape = (mine.shape[0], n) + mine.shape[2:]
            whole = np.lib.format.open_memmap(os.path.join(folder, f"history-{i}.npy"),
                                              mode="w+", dtype=mine.dtype, shape=shape)
            per = mine.shape[1]  # configs per process (the last slice is padded)
            step = max(1, (64 << 20) // max(1, mine[0, :1].nbytes))
            for p, where in enumerate(slices):
                part = np.load(os.path.join(where, f"history-{i}.npy"), mmap_mode="r")
                rows = min(per, n - p * per)
                for o in range(shape[0]):
                    for lo in range(0, rows, step):
                        hi = min(rows, lo + step)
                        whole[o, p * per + lo: p * per + hi] = part[o, lo:hi]
                del part
            whole.flush()
            self.histories[name] = whole
        self.folder = folder

    def chunk(self, o: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        out = {name: a[o, lo:hi] for name, a in self.finals.items()}
        if self.folder is None:  # else already in their files
            out.update((f"history/{name}", a[o, lo:hi]) for name, a in self.histories.items())
        return out

    def put_chunk(self, o: int, lo: int, hi: int, saved: dict) -> None:
        for name, a in self.finals.items():
            a[o, lo:hi] = saved[name]
        if self.folder is None:
            for name, a in self.histories.items():
                a[o, lo:hi] = saved[f"history/{name}"]



class Writer:
    """Runs the host's write of each chunk in one background thread (or in line), one
    at a time; leaving it waits for the last write (never half a chunk on disk)."""

    def __init__(self, threaded: bool):
        self.pool = ThreadPoolExecutor(1, "bpjax-writer") if threaded else None
        self.last = None

    def wait(self) -> None:
        last, self.last = self.last, None
        if last is not None:
            last.result()

    def submit(self, fn, *args) -> None:
        self.wait()
        if self.pool is None:
            fn(*args)
        else:
            self.last = self.pool.submit(fn, *args)

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        try:
            if kind is None:
                self.wait()
            elif self.last is not None:  # finish that chunk; the first error is the one raised
                self.last.exception()
        finally:
            if self.pool is not None:
                self.pool.shutdown()



def assemble(plan: Plan, host: Host, elapsed: float) -> Result:
    """The ``Result`` of a finished sweep, shaped like the grid."""
    grid = plan.grid
    lead = (len(plan.specs),) if plan.multi else ()
    shape = lead + grid.shape
    names = [s.opt.name for s in plan.specs]

    def shaped(a):  # (optimizers, configs, ...) -> [optimizer,] *grid.shape, ...
        return (a if plan.multi else a[0]).reshape(shape + a.shape[2:])

    def tree(prefix, like):
        n = len(jax.tree.leaves(like))
        return jax.tree.unflatten(jax.tree.structure(like),
                                  [shaped(host.finals[f"{prefix}/{i}"]) for i in range(n)])

    shapes = host.carry_shapes
    hist = host.histories
    coords = dict(grid.axes)
    if plan.multi:
        coords = {"optimizer": np.array(names), **coords}
    coords["step"] = (np.arange(0, plan.steps + 1, plan.record_every, dtype=np.int32)
                      if host.full else np.array([0, plan.steps], np.int32))
    loss_out = shaped(hist["loss"])
    meta = {
        "grid": {k: v.tolist() for k, v in grid.axes.items()},
        "optimizers": names,
        "steps": plan.steps,
        "record_every": plan.record_every,
        "record": "full" if host.full else "summary",
        "target": None if plan.inputs.target == -math.inf else plan.inputs.target,
        "seed": plan.seed,
        "batch_size": plan.specs[0].batch_size,
        "chunk_size": plan.chunk,
        "n_chunks": plan.n_chunks,
        "segments": math.ceil(plan.steps // plan.record_every / plan.seg_records),
        "fast_compile": plan.fast_compile,
        "devices": [str(d) for d in jax.local_devices()] if plan.sharding else
                   [str(jax.local_devices()[0])],
        "processes": plan.procs,
        "elapsed_s": elapsed,
        "config_steps": host.config_steps,
        "replays": host.replays,
        "replayed_config_steps": host.replayed,
        "discarded": host.discarded,
        "versions": _versions(),
    }
    params = None
    if "params/0" in hist:
        n = len(jax.tree.leaves(shapes.params))
        params = jax.tree.unflatten(jax.tree.structure(shapes.params),
                                    [shaped(hist[f"params/{i}"]) for i in range(n)])
    summary = tree("summary", shapes.summary)
    best = {}
    if shapes.best is not None:
        b = tree("best", shapes.best)
        best = dict(val_loss=shaped(hist["best"]) if "best" in hist else None,
                    best_val_loss=b.loss, best_step=b.step, best_params=b.params)
    metrics = {name: shaped(hist[f"metrics/{name}"]) for name in sorted(host.metric_shapes)}
    return Result(
        metrics=metrics or None,
        dims=tuple(coords)[:-1],
        coords=coords,
        loss=loss_out,
        final_loss=summary.last,  # (the last record, without reading a mapped file)
        diverged_at=shaped(host.finals["diverged_at"]),
        final_params=tree("final", shapes.params),
        params=params,
        meta=meta,
        min_loss=summary.min,
        min_step=summary.argmin,
        reached_at=summary.reached_at,
        **best,
    )



def history_names(records) -> list[tuple[str, Any]]:
    """(name, leaf) for each leaf of one configuration's records: the recorder's name for
    an array (``loss``, ``metrics/NAME``), ``NAME/i`` for a tree's i-th leaf (``params``)."""
    out = []
    for name, record in records.items():
        if jax.tree_util.treedef_is_leaf(jax.tree.structure(record)):
            out += [(name, record)] if record is not None else []
        else:
            out += [(f"{name}/{i}", x) for i, x in enumerate(jax.tree.leaves(record))]
    return out


def _versions() -> dict:
    import optax

    from bpjax import __version__

    return {"bpjax": __version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}
