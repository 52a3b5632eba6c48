"""``sweep``: every configuration of a grid trained in one compiled, vmapped call.

The grid is flattened to N configurations (split across processes under
``jax.distributed``) and cut into equal chunks (sized from a memory estimate),
each chunk sharded over the local devices; each chunk runs in segments of whole
records. Segment boundaries are where progress is shown, checkpoints are
written, and runs that diverged or stopped are dropped (the live ones re-packed
into a power-of-two batch). A segment runs optimistically (no per-step guard)
and again, guarded, only on the runs that met a non-finite value in it; on GPU
the next segment is dispatched while the last one is checked. A chunk's
trajectories accumulate on the device and come back once per chunk, as one
contiguous block, into memory or a ``.npy`` file. Compiled functions are cached
on (loss, init, optimizer, static settings), so a new grid of the same shape
does not recompile.
"""

import inspect
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bpjax import checkpoint, engine, optim
from bpjax.checks import check_data, positive_int
from bpjax.grid import Grid
from bpjax.progress import Progress
from bpjax.result import Result, load

DEFAULT_CPU_MEMORY = 1 << 30  # on CPU the device is the host: its buffers and their copies


class _Spec(NamedTuple):
    """Everything static about a sweep's compiled code (the cache key)."""

    loss_fn: Callable
    loss_takes_config: bool
    init: Callable
    opt: optim.Optimizer
    axes: tuple[tuple[str, str], ...]  # (name, dtype)
    record_every: int
    batch_size: int | None
    has_data: bool
    record_params: bool
    has_val: bool = False
    histories: bool = True  # record="full"; False: summaries only
    stop: bool = False  # runs stop at the target

    @property
    def key(self):
        return (self.loss_fn, self.loss_takes_config, self.init, self.opt.source, self.axes,
                self.record_every, self.batch_size, self.has_data, self.record_params,
                self.has_val, self.histories, self.stop)


class _Compiled(NamedTuple):
    start: Callable  # (configs, base_seed, datas, n_cols) -> (Carry batched over configs,
    #   the chunk's history buffers with column 0 filled, per row: whether it is finite)
    running: Callable  # carry -> per row, whether the run still takes steps
    segment: Callable  # (carry, hist, configs, base_seed, datas, start, col, n_records)
    #   -> (carry, hist, status: per row, int8, 1 if the run still takes steps, + 2 if it
    #       met a non-finite value in this segment (never when guarded))
    compacted: Callable  # the same on the rows idx only: (carry, hist, idx, configs, ...)
    fast: Callable  # segment, optimistic (see engine.run_segment); the carry is kept
    fast_compacted: Callable  # compacted, optimistic
    rewind: Callable  # (carry, before, rows) -> carry, with the rows' values from before


_CACHE: dict = {}
_CACHE_SIZE = 64
# How many steps between records one iteration of the compiled loop takes, per backend,
# for nets of at most SMALL_NET params. Measured on an H100: W1 (2 params, 4096 x 1000)
# 0.0103 s with 10 steps per iteration, 0.0259 s with 1 (each iteration costs kernel
# launches); W2 (33 params) about the same either way; W3 (9,610 params) 7% slower
# unrolled. On the CPU unrolling is no faster, often slower.
UNROLL: dict[str, int] = {"cpu": 1, "gpu": 10}
SMALL_NET = 256
# Whether to dispatch segment k + 1 before checking segment k (see _run_chunk), per
# backend. Measured on an H100: W2 0.033 s with, 0.047 s without. On the CPU a dispatch
# runs much of the segment before it returns, so nothing overlaps, and a segment run
# ahead is thrown away whenever a run breaks (a sweep where 1% of the runs diverge,
# one in each of 8 of 10 segments: 0.89 s with, 0.56 s without; 0.53 s with none).
RUN_AHEAD: dict[str, bool] = {"cpu": False, "gpu": True}
REPLAY_ROWS = 64  # the smallest batch a segment's broken runs are replayed in (fewer sizes)


def _unroll(plan) -> int:
    if _size(plan.carry_shape.params) > SMALL_NET:
        return 1
    return max(1, math.gcd(plan.record_every, UNROLL.get(jax.default_backend(), 1)))


def config_keys(config: Mapping, base_seed):
    """The (init, data) keys of one configuration: from the base seed and ``seed`` axis."""
    key = jax.random.key(base_seed)
    if "seed" in config:
        key = jax.random.fold_in(key, config["seed"])
    return jax.random.split(key)


def initial_params(init: Callable, grid: Grid | Mapping, seed: int = 0):
    """The params every configuration of a sweep starts from, shaped like the grid.

    >>> import bpjax
    >>> p = initial_params(lambda c, k: {"x": c["x0"]}, {"x0": [1.0, 2.0], "seed": [0, 1]})
    >>> p["x"].shape
    (2, 2)
    """
    grid = Grid(**grid) if isinstance(grid, Mapping) else grid
    flat = {k: jnp.asarray(v) for k, v in grid.flat().items()}
    one = lambda config: init(config, config_keys(config, np.uint32(seed))[0])  # noqa: E731
    params = jax.jit(jax.vmap(one))(flat)
    return jax.tree.map(lambda x: np.asarray(x).reshape(grid.shape + x.shape[1:]), params)


def _bind(spec: _Spec, config: Mapping, base_seed):
    init_key, data_key = config_keys(config, base_seed)
    tx = spec.opt.factory(**{n: config[n] for n in spec.opt.takes if n in config})
    extra = {"config": config} if spec.loss_takes_config else {}
    if spec.has_data:
        def loss(params, batch):
            return spec.loss_fn(params, batch, **extra)
    else:
        def loss(params, batch):
            del batch
            return spec.loss_fn(params, **extra)
    return init_key, data_key, tx, loss, engine.Batching(None, spec.batch_size)


def _validation(spec: _Spec, loss, val_data):
    return (lambda params: loss(params, val_data)) if spec.has_val else None


def _init_one(spec: _Spec, config, base_seed, datas) -> engine.Carry:
    """One configuration's starting carry (params, optimizer state, loss, gradient)."""
    data, val_data, target = datas
    init_key, data_key, tx, loss, batching = _bind(spec, config, base_seed)
    params = spec.init(config, init_key)
    return engine.init_carry(params, tx, loss, batching._replace(data=data), data_key,
                             _validation(spec, loss, val_data), target)


def _compiled(spec: _Spec, sharding=None, unroll: int = 1) -> _Compiled:
    key = (spec.key, sharding, unroll)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit

    def init_one(config, base_seed, datas):
        return _init_one(spec, config, base_seed, datas)

    def segment_one(carry, config, base_seed, datas, start, n_records, optimistic):
        data, val_data, target = datas
        _, data_key, tx, loss, batching = _bind(spec, config, base_seed)
        out = engine.run_segment(carry, start, n_records, spec.record_every, tx, loss,
                                 batching._replace(data=data), data_key, spec.record_params,
                                 _validation(spec, loss, val_data), target, spec.stop,
                                 keep=spec.histories, optimistic=optimistic,
                                 unroll=unroll)
        return out if optimistic else out + (jnp.bool_(False),)

    def run(carry, configs, base_seed, datas, start, n_records, optimistic):
        one = partial(segment_one, n_records=n_records, optimistic=optimistic)
        return jax.vmap(one, in_axes=(0, 0, None, None, None))(
            carry, configs, base_seed, datas, start)

    def live(carry):  # the runs that still take steps, for compaction
        return jax.vmap(lambda c: engine.running(c, spec.stop))(carry)

    def status(carry, broken):  # one array, so the host syncs once per segment
        return live(carry).astype(jnp.int8) + 2 * broken.astype(jnp.int8)

    def start(configs, base_seed, datas, n_cols):
        carry = jax.vmap(init_one, in_axes=(0, None, None))(configs, base_seed, datas)
        return carry, histories(carry, n_cols), jax.vmap(engine.finite)(carry)

    def histories(carry, n_cols):
        if not spec.histories:
            return None
        first = (carry.summary.last, carry.params if spec.record_params else None,
                 None if carry.best is None else carry.best.loss)

        def buffer(x):
            out = jnp.zeros((x.shape[0], n_cols) + x.shape[1:], x.dtype)
            return out.at[:, 0].set(x)

        return jax.tree.map(buffer, first)

    def segment(carry, hist, configs, base_seed, datas, start, col, n_records, optimistic):
        carry, records, broken = run(carry, configs, base_seed, datas, start, n_records,
                                     optimistic)
        hist = jax.tree.map(lambda h, r: jax.lax.dynamic_update_slice_in_dim(h, r, col, 1),
                            hist, records)
        return carry, hist, status(carry, broken)

    def compacted(carry, hist, idx, configs, base_seed, datas, start, col, n_records,
                  optimistic):
        # idx: the live rows, padded with an out-of-range row (its results are dropped)
        def take(x):
            x = jnp.take(x, idx, axis=0, mode="clip")
            return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)

        sub, records, broken = run(jax.tree.map(take, carry), jax.tree.map(take, configs),
                                   base_seed, datas, start, n_records, optimistic)
        carry = jax.tree.map(lambda x, v: x.at[idx].set(v, mode="drop"), carry, sub)
        cols = col + jnp.arange(n_records)
        hist = jax.tree.map(lambda h, r: h.at[idx[:, None], cols[None, :]].set(r, mode="drop"),
                            hist, records)
        broken = jnp.zeros(carry.diverged_at.shape, bool).at[idx].set(broken, mode="drop")
        return carry, hist, status(carry, broken)

    # Each segment runs optimistically first (its input carry kept: not donated), and
    # again with the per-step guard from that carry where some run met a non-finite value.
    compiled = _Compiled(
        start=jax.jit(start, static_argnums=3),
        running=jax.jit(live),
        segment=jax.jit(partial(segment, optimistic=False), static_argnums=7,
                        donate_argnums=(0, 1)),
        compacted=jax.jit(partial(compacted, optimistic=False), static_argnums=8,
                          donate_argnums=(0, 1)),
        fast=jax.jit(partial(segment, optimistic=True), static_argnums=7, donate_argnums=1),
        fast_compacted=jax.jit(partial(compacted, optimistic=True), static_argnums=8,
                               donate_argnums=1),
        rewind=jax.jit(lambda carry, before, rows: jax.tree.map(
            lambda a, b: a.at[rows].set(b[jnp.clip(rows, 0, b.shape[0] - 1)], mode="drop"),
            carry, before)),
    )
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = compiled
    return compiled


@partial(jax.jit, donate_argnums=0)
def _freeze(hist, active, col):
    """History columns after ``col`` of the rows not in ``active`` repeat column ``col``:
    those runs are frozen (diverged or stopped), so every later record equals it."""

    def fill(h):
        later = (jnp.arange(h.shape[1]) > col)[None, :] & ~active[:, None]
        later = later.reshape(later.shape + (1,) * (h.ndim - 2))
        return jnp.where(later, jax.lax.dynamic_slice_in_dim(h, col, 1, 1), h)

    return jax.tree.map(fill, hist)


def _padded(rows: np.ndarray, size: int, chunk: int) -> np.ndarray:
    """``rows`` as a batch of ``size``, padded with row ``chunk`` (out of range: the
    compacted functions drop its results)."""
    out = np.full(size, chunk, np.int32)
    out[: rows.size] = rows
    return out


def _mask(rows: np.ndarray, chunk: int) -> np.ndarray:
    keep = np.zeros(chunk + 1, bool)
    keep[rows] = True  # (padding rows point one past the end)
    return keep[:chunk]


def _bucket(live: int, chunk: int, n_dev: int) -> int:
    """The batch that holds ``live`` runs: the next power of two (a multiple of the
    device count), so a shrinking grid compiles at most log2(chunk) sizes."""
    b = max(n_dev, 1 << max(0, live - 1).bit_length())
    b = -(-b // n_dev) * n_dev
    return chunk if b >= chunk else b


def sweep(
    loss_fn: Callable,
    init: Callable,
    optimizer,
    grid: Grid | Mapping,
    steps: int,
    *,
    record_every: int = 1,
    seed: int = 0,
    data=None,
    batch_size: int | None = None,
    val_data=None,
    record_params: bool = True,
    record: str = "full",
    target: float | None = None,
    stop_at_target: bool = False,
    compact: bool = True,
    max_memory: int | None = None,
    chunk_size: int | None = None,
    segments: int | None = None,
    shard: bool = True,
    progress: bool | None = None,
    out=None,
    checkpoint_seconds: float = 30.0,
) -> Result:
    """Trains every configuration of ``grid`` and returns a ``Result`` with named axes.

    Args:
      loss_fn: ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``data`` is
        given; returns a scalar. If it has a ``config`` parameter it also gets the
        configuration (a dict of axis name -> traced value), e.g. to sweep a
        property of the problem.
      init: ``init(config, key) -> params``. ``key`` depends on ``seed`` and on the
        grid's ``seed`` axis, if any (never on the optimizer or other axes).
      optimizer: a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``), an
        optax ``GradientTransformation``, a callable taking hyperparameters by
        keyword (axes named ``lr``, ``momentum``, ``b1``, ``b2``, ``eps`` are passed
        to it), or a list/dict of those: the result then has a leading
        ``optimizer`` axis.
      grid: a ``Grid`` or a dict of axes.
      steps: optimizer steps per configuration.
      record_every: record loss (and params) every this many steps; must divide
        ``steps``. Records are at steps 0, k, ..., steps.
      seed: base PRNG seed.
      data: a pytree of arrays with a leading example axis, passed to ``loss_fn``.
      batch_size: mini-batch size; each configuration shuffles with its own key
        every epoch. Default: full batch.
      val_data: held-out data like ``data``. At every record step each
        configuration evaluates ``loss_fn(params, val_data)`` and keeps the best
        (lowest) value, its step and the params there: early stopping, returned
        as ``val_loss``, ``best_val_loss``, ``best_step`` and ``best_params``.
      record_params: record params at each record step (else only final params).
      record: ``"full"`` keeps the loss (and params) at every record step;
        ``"summary"`` keeps no trajectories, only per run the loss at the start
        and end and the summaries below: memory per run then does not grow
        with ``steps``, for grids of tens of millions.
      target: a loss threshold. Every sweep returns, from the recorded losses,
        ``min_loss``, ``min_step`` and ``reached_at``: the first record step
        with loss <= ``target`` (-1 if never, or with no target).
      stop_at_target: a run stops at the record step where it reaches
        ``target`` (its later records repeat that one), like a diverged run.
      compact: between segments, drop the runs that have diverged or stopped
        and run only the live ones, re-packed into a batch whose size is a
        power of two (so recompiles stay few). Their records are what they
        would have been; live runs may differ from an uncompacted sweep in the
        last bits where XLA's code depends on the batch size.
      max_memory: device bytes a chunk may use (default: half the device memory,
        or 1 GiB on CPU). ``chunk_size`` overrides the estimate.
      segments: how many pieces each chunk's run is cut into: for progress,
        checkpoints and compaction, each costing a dispatch and a sync (~0.2-0.5
        ms). Default: 10, or fewer where a chunk is estimated to take less
        than 10 x ``SEGMENT_SECONDS`` (one for a sweep of a few milliseconds).
      shard: shard the configuration axis over all local devices.
      progress: show a progress bar (default: when stderr is a terminal).
      out: a folder to checkpoint into (at most every ``checkpoint_seconds``, at
        segment boundaries, and after each chunk) and to write ``result.npz``
        to. Running the same sweep with the same ``out`` resumes it; a different
        sweep there is refused, naming what differs. Trajectories are streamed
        into ``.npy`` files there, chunk by chunk, so host memory holds one
        chunk of them at a time; the result maps them from disk. Across
        processes (``jax.distributed``), ``out`` must be a folder they all
        see: each keeps its slice in ``out/process-K`` until process 0 writes
        the whole result in ``out``.

    Example:
      >>> import bpjax, jax.numpy as jnp
      >>> res = bpjax.sweep(lambda p: p["x"] ** 4, lambda c, k: {"x": c["x0"]}, "sgd",
      ...                   bpjax.Grid(lr=[0.01, 0.2], x0=[0.5, 2.0]), steps=100)
      >>> res.diverged.tolist()
      [[False, False], [False, True]]
    """
    plan = _plan(loss_fn, init, optimizer, grid, steps, record_every, seed, data, batch_size,
                 record_params, max_memory, chunk_size, segments, shard, val_data, record,
                 target, stop_at_target, compact)
    return _execute(plan, progress, out, checkpoint_seconds)


class _Plan(NamedTuple):
    specs: list[_Spec]
    multi: bool
    grid: Grid
    flat: dict[str, np.ndarray]
    steps: int
    record_every: int
    seed: int
    data: Any
    val_data: Any
    chunk: int
    n_chunks: int
    seg_records: int
    sharding: Any  # NamedSharding over configs, or None
    replicated: Any
    target: float = -math.inf
    compact: bool = True
    n: int = 0  # configurations this process runs (all of them, with one process)
    procs: int = 1  # processes sharing the grid (jax.distributed), each a slice of it
    carry_shape: Any = None  # one configuration's Carry, as ShapeDtypeStructs


def _plan(loss_fn, init, optimizer, grid, steps, record_every, seed, data, batch_size,
          record_params, max_memory, chunk_size, segments, shard, val_data=None, record="full",
          target=None, stop_at_target=False, compact=True) -> _Plan:
    """Checks every argument and sizes the work; nothing here compiles."""
    if isinstance(grid, Mapping):
        grid = Grid(**grid)
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a bpjax.Grid or a dict of axes, got {type(grid).__name__}")
    steps = positive_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    if steps % record_every:
        raise ValueError(
            f"record_every={record_every} does not divide steps={steps}; records are at "
            f"steps 0, k, 2k, ..., steps, so choose a divisor of {steps}"
        )
    if segments is not None:
        segments = positive_int("segments", segments)
    if record not in ("full", "summary"):
        raise ValueError(f"record must be 'full' (trajectories) or 'summary' (min, first step "
                         f"below target, final), got {record!r}")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, (int, float, np.floating,
                                                               np.integer)):
            raise ValueError(f"target must be a number (a loss threshold), got {target!r}")
        if math.isnan(target):
            raise ValueError("target must be a number (a loss threshold), got nan")
    elif stop_at_target:
        raise ValueError("stop_at_target needs target=<loss threshold>")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
    if not callable(init):
        raise TypeError(f"init must be callable as init(config, key), got {init!r}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    opts, multi = optim.resolve(optimizer)
    _check_hyperparams(opts, grid)
    data, batch_size = check_data(data, batch_size)
    if val_data is not None:
        if data is None:
            raise ValueError("val_data needs data: the validation loss is "
                             "loss_fn(params, val_data), so loss_fn must take a batch")
        val_data, _ = check_data(val_data, None)
        if jax.tree.structure(val_data) != jax.tree.structure(data):
            raise ValueError(f"val_data must be structured like data "
                             f"({jax.tree.structure(data)}), got {jax.tree.structure(val_data)}")
    takes_config = _takes_config(loss_fn)
    axes = tuple((n, str(v.dtype)) for n, v in grid.axes.items())
    histories = record == "full"
    specs = [_Spec(loss_fn, takes_config, init, o, axes, record_every, batch_size,
                   data is not None, bool(record_params) and histories, val_data is not None,
                   histories, bool(stop_at_target)) for o in opts]

    flat = grid.flat()
    procs = jax.process_count()
    n = grid.size
    if procs > 1:  # this process's slice of the grid, padded so every slice has one shape
        n = math.ceil(grid.size / procs)
        rows = np.arange(jax.process_index() * n, (jax.process_index() + 1) * n)
        flat = {k: v[np.where(rows < grid.size, rows, 0)] for k, v in flat.items()}
    target = -math.inf if target is None else float(target)
    carry_shape, params_shape = _check_shapes(specs[0], flat, seed, (data, val_data, target))
    for spec in specs[1:]:
        _check_shapes(spec, flat, seed, (data, val_data, target))

    n_rec = steps // record_every
    seg_records = _segment_records(n_rec, segments or SEGMENTS)
    devices = jax.local_devices()
    n_dev = len(devices) if shard else 1
    per_record = 8 + (_bytes(params_shape) if specs[0].record_params else 0)
    # carry, its donated copy and the optimizer's temporaries; the chunk's trajectories
    # (all records) on the device and their copy on the host, and one segment's records
    per_config = _bytes(carry_shape) * 4 + (
        (2 * (n_rec + 1) + seg_records) * per_record if histories else 0)
    if data is not None:
        per_config += 2 * _bytes(data) // max(1, jax.tree.leaves(data)[0].shape[0]) * (
            batch_size or jax.tree.leaves(data)[0].shape[0])
    if chunk_size is None:
        budget = _default_memory(devices[0]) if max_memory is None else int(max_memory)
        if budget <= 0:
            raise ValueError(f"max_memory must be positive bytes, got {max_memory}")
        chunk = max(1, min(n, budget // per_config))
    else:
        chunk = min(positive_int("chunk_size", chunk_size), n)
    chunk = max(n_dev, chunk // n_dev * n_dev)
    n_chunks = math.ceil(n / chunk)
    chunk = math.ceil(n / n_chunks / n_dev) * n_dev  # balance the chunks
    if segments is None:
        examples = 1 if data is None else batch_size or jax.tree.leaves(data)[0].shape[0]
        few = _segment_records(n_rec, _auto_segments(chunk, steps, _size(params_shape),
                                                     examples))
        if few != seg_records and (chunk_size is not None or chunk * (
                per_config + (few - seg_records) * per_record * histories) <= budget):
            seg_records = few
    sharding = replicated = None
    if n_dev > 1:
        mesh = Mesh(np.array(devices), ("config",))
        sharding = NamedSharding(mesh, PartitionSpec("config"))
        replicated = NamedSharding(mesh, PartitionSpec())
    return _Plan(specs, multi, grid, flat, steps, record_every, int(seed), data, val_data, chunk,
                 n_chunks, seg_records, sharding, replicated, target, bool(compact), n, procs,
                 carry_shape)


def _execute(plan: _Plan, progress: bool | None, out=None, checkpoint_seconds=30.0) -> Result:
    store = top = None
    if out is not None:
        # With several processes (jax.distributed), each checkpoints its slice of the
        # grid in a folder of its own inside ``out`` (which they must all see), and
        # process 0 writes the result of the whole grid in ``out`` at the end.
        top = store = checkpoint.Store(out, _describe(plan))
        layout = top.open({"chunk": plan.chunk, "seg_records": plan.seg_records})
        if top.finished():
            _say(f"bpjax: {top.out} holds this finished sweep; loading it")
            result = load(top.path(checkpoint.RESULT))
            _drop_slices(top, plan)
            return result
        if plan.procs > 1:
            store = checkpoint.Store(_slice_folder(top, jax.process_index()),
                                     _describe(plan) | {"process": jax.process_index(),
                                                        "processes": plan.procs})
            layout = store.open({"chunk": plan.chunk, "seg_records": plan.seg_records})
        elif _slices(top):
            raise ValueError(f"{top.out} holds a sweep in progress across processes "
                             f"({', '.join(_slices(top))}); run it again with as many "
                             "processes, or delete that folder to start over")
        if layout is not None:
            plan = _relayout(plan, layout)
            _say(f"bpjax: resuming the sweep in {store.out}")
    n = plan.n
    data = (plan.data, plan.val_data)
    if plan.data is not None and plan.replicated is not None:
        data = jax.device_put(data, plan.replicated)
    datas = data + (plan.target,)
    base_seed = np.uint32(plan.seed)
    resume = store.load_progress() if store else None

    host = None
    bar = Progress(len(plan.specs) * n * plan.steps, "sweep", progress)
    t0 = time.perf_counter()
    # Trajectories streamed to files are written (then the chunk's checkpoint) by one
    # thread while the next chunk trains; a chunk is fetched from the device only once
    # the one before it is written, so host memory holds one chunk, as without it.
    writer = _Writer(threaded=store is not None and plan.specs[0].histories)

    def keep(o, c, lo, hi, fetched, loss0):
        host.put(o, lo, hi, *fetched, loss0)
        if store:
            store.save_chunk(o, c, host.chunk(o, lo, hi))

    with writer:
        for o, spec in enumerate(plan.specs):
            fns = _compiled(spec, plan.sharding, _unroll(plan))
            for c in range(plan.n_chunks):
                lo, hi = c * plan.chunk, min((c + 1) * plan.chunk, n)
                configs = _chunk_configs(plan, lo, hi)
                if host is None:  # host arrays in the run's own dtypes (float64 under x64)
                    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct((plan.chunk,) + x.shape,
                                                                         x.dtype), plan.carry_shape)
                    host = _Host(plan, shapes, store.out if store else None)
                saved = store.load_chunk(o, c) if store else None
                if saved is not None:
                    host.put_chunk(o, lo, hi, saved)
                    bar.update((hi - lo) * plan.steps, "(from checkpoint)")
                    continue
                mid = resume is not None and tuple(resume["position"][:2]) == (o, c)
                carry, hist, loss0 = _run_chunk(plan, spec, fns, host, configs, base_seed, datas,
                                                (o, c, lo, hi), resume if mid else None, store,
                                                checkpoint_seconds, bar)
                writer.wait()  # (raises what the last write raised)
                writer.submit(keep, o, c, lo, hi, host.fetch(carry, hist), loss0)
    bar.close()
    if plan.procs > 1:
        host.gather(plan.grid.size)
        if top is not None:
            return _finish_slices(plan, host, top, time.perf_counter() - t0)
    result = _result(plan, host, time.perf_counter() - t0)
    result.meta["fingerprint"] = (store.fingerprint if store
                                  else checkpoint.fingerprint(_describe(plan)))
    if store:
        store.finish(result, external=host.files())
    return result


def _slice_folder(top: checkpoint.Store, process: int) -> str:
    return top.path(f"process-{process}")


def _slices(top: checkpoint.Store) -> list[str]:
    return sorted(n for n in os.listdir(top.out) if n.startswith("process-"))


def _finish_slices(plan: _Plan, host: "_Host", top: checkpoint.Store, elapsed: float) -> Result:
    """Multi-process ``out=``: process 0 writes the whole grid's trajectories (from the
    slices' files) and ``result.npz`` into ``top``; then every process loads it and
    drops its slice's folder."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("bpjax: slices written")
    if jax.process_index() == 0:
        if host.folder is not None:
            host.combine(top.out, [_slice_folder(top, p) for p in range(plan.procs)],
                         plan.grid.size)
        result = _result(plan, host, elapsed)
        result.meta["fingerprint"] = top.fingerprint
        top.finish(result, external=host.files())
    multihost_utils.sync_global_devices("bpjax: result written")
    result = load(top.path(checkpoint.RESULT))
    _drop_slices(top, plan)
    return result


def _drop_slices(top: checkpoint.Store, plan: _Plan) -> None:
    """Removes this process's slice folder (its result is in ``top`` now)."""
    folder = _slice_folder(top, jax.process_index())
    if plan.procs > 1 and os.path.isdir(folder):
        shutil.rmtree(folder)


def _run_chunk(plan, spec, fns, host, configs, base_seed, datas, where, resume, store,
               checkpoint_seconds, bar):
    """Trains one chunk segment by segment; returns its final carry, trajectories (host
    arrays, or None) and losses at step 0."""
    o, c, lo, hi = where
    m, n_rec = hi - lo, plan.steps // plan.record_every
    n_dev = 1 if plan.sharding is None else len(plan.sharding.mesh.devices.flat)
    shapes = host.carry_shapes
    if resume is not None:
        done = int(resume["position"][2])
        leaves = [resume[f"carry/{i}"] for i in range(len(jax.tree.leaves(shapes)))]
        carry = jax.tree.unflatten(jax.tree.structure(shapes), leaves)
        hist = host.chunk_histories(plan.chunk, n_rec + 1)
        for h, saved in zip(jax.tree.leaves(hist), host.saved_histories(resume)):
            h[:m, : done + 1] = saved
        carry, hist = _put(plan, carry), _put(plan, hist)
        loss0 = resume["loss0"]
        active = resume["active"] if resume["active"].size else None
        if active is not None and hist is not None:  # columns after done: not saved
            hist = _freeze(hist, _mask(active, plan.chunk), np.int32(done))
        bar.update(m * done * plan.record_every, "(from checkpoint)")
    else:
        done, active = 0, None
        carry, hist, finite = fns.start(configs, base_seed, datas, n_rec + 1)
        if o == 0:
            _check_initial(finite, plan, lo, hi)
        loss0 = np.asarray(carry.summary.last)[:m]
    last_save = time.perf_counter()

    def launch(carry, hist, active, done, guarded=False):
        k = min(plan.seg_records, n_rec - done)
        rows = () if active is None else (active,)
        if active is None:
            fn = fns.segment if guarded else fns.fast
        else:
            fn = fns.compacted if guarded else fns.fast_compacted
        out = fn(carry, hist, *rows, configs, base_seed, datas,
                 np.int32(done * plan.record_every), np.int32(done + 1), k)
        return _Launched(*out, active, k)

    def replay(cur, before, hist, status, done):
        """Segment ``cur`` again from ``before``, guarded at every step: only the rows
        that broke (as a compacted batch; the others' optimistic results are the guarded
        bits) when they fit a batch of at most half the segment's, else all of them."""
        broken = np.flatnonzero(status[:m] & 2)
        size = max(_bucket(broken.size, plan.chunk, n_dev), min(REPLAY_ROWS, plan.chunk))
        ran = plan.chunk if cur.active is None else cur.active.size
        host.replayed += min(size, ran) * cur.k * plan.record_every
        if 2 * size > ran:
            return launch(before, hist, cur.active, done, guarded=True)
        rows = _padded(broken, size, plan.chunk)
        again = launch(fns.rewind(cur.carry, before, rows), hist, rows, done, guarded=True)
        return again._replace(active=cur.active)

    def rows_for(status, active):
        """Compaction: the rows to run next (None: all), given which runs still step
        (``status & 1``)."""
        live = np.flatnonzero(np.asarray(status)[:m] & 1)
        size = _bucket(live.size, plan.chunk, n_dev)
        if live.size == 0 or size == plan.chunk:
            return None, live
        if active is not None and active.size == size:
            return active, live
        return _padded(live, size, plan.chunk), live

    # Where RUN_AHEAD (GPU): while segment k is checked (the host reads whether a run
    # broke and which runs still step), segment k + 1 already runs on the same rows; it
    # is thrown away if k must be replayed or if compaction changes the rows. It runs
    # ahead only while the last check left the rows as they were, so a grid whose runs
    # die early (compacted after its first segment) does not pay for a discarded one.
    if not plan.compact:
        planned = None
    elif resume is None and not spec.stop:  # every run takes steps (none has diverged)
        planned = None, np.arange(m)
    else:
        planned = rows_for(fns.running(carry), active)
    ahead, steady = None, not plan.compact
    ahead_ok = RUN_AHEAD.get(jax.default_backend(), True)
    while done < n_rec:
        if ahead is None:
            if plan.compact:
                rows, live = planned
                if live.size == 0:
                    break
                if rows is not None and rows is not active and hist is not None:
                    hist = _freeze(hist, _mask(live, plan.chunk), np.int32(done))
                active = rows
            cur = launch(carry, hist, active, done)
        else:
            cur, ahead = ahead, None
        if steady and ahead_ok and done + cur.k < n_rec:
            ahead = launch(cur.carry, cur.hist, cur.active, done + cur.k)
        hist = (ahead or cur).hist  # the latest buffer: the others were donated to it
        status = np.asarray(cur.status)
        host.config_steps += (plan.chunk if cur.active is None else cur.active.size) * cur.k \
            * plan.record_every
        if (status & 2).any():  # a run met a non-finite value: again, guarded at every step
            host.replays += 1
            host.discarded += ahead is not None
            ahead = None
            cur = replay(cur, carry, hist, status, done)
            hist, status = cur.hist, cur.status
        carry, done = cur.carry, done + cur.k
        if plan.compact and done < n_rec:  # the next segment's rows: the runs still stepping
            planned = rows, live = rows_for(status, active)
            steady = rows is active and live.size > 0
            if ahead is not None and not steady:
                host.discarded += 1
                ahead = None
        bar.update(m * cur.k * plan.record_every, f"{spec.opt.name} chunk {c + 1}")
        if store and done < n_rec and time.perf_counter() - last_save >= checkpoint_seconds:
            leaves = [np.asarray(x) for x in jax.tree.leaves(carry)]
            saved = {f"history/{i}": np.asarray(h)[:m, : done + 1]
                     for i, h in enumerate(jax.tree.leaves(hist))}
            store.save_progress(o, c, done, leaves, saved | {
                "loss0": loss0, "active": np.zeros(0, np.int32) if active is None else active})
            last_save = time.perf_counter()
    if done < n_rec:  # every run stopped: the rest of each trajectory repeats its last record
        bar.update(m * (n_rec - done) * plan.record_every, "(all runs stopped)")
        if hist is not None:
            hist = _freeze(hist, np.zeros(plan.chunk, bool), np.int32(done))
    return carry, hist, loss0


class _Writer:
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


class _Launched(NamedTuple):
    """A dispatched segment (its arrays may still be computing)."""

    carry: Any
    hist: Any
    status: Any  # per row: 1 if the run still takes steps, + 2 if it met a non-finite value
    active: Any  # the rows it ran (None: all)
    k: int  # records it runs


def _put(plan: _Plan, tree):
    return jax.device_put(tree, plan.sharding) if plan.sharding else jax.device_put(tree)


class _Host:
    """The sweep's host arrays, indexed [optimizer, config, ...].

    Trajectories (loss, params, validation loss: ``[o, config, record, ...]``) live in
    memory, or, given a folder, in ``.npy`` files there written one chunk at a time
    (a chunk's rows are one contiguous block). Per-run values (diverged_at, final
    params, best, summaries) and, with ``record="summary"``, the losses at the
    start and end, live in memory.
    """

    def __init__(self, plan: _Plan, shapes: engine.Carry, folder: str | None):
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
        n_cols = plan.steps // plan.record_every + 1
        dtype = shapes.loss.dtype
        self.histories: dict[str, np.ndarray] = {}
        if spec.histories:
            leaves = [("loss", shapes.loss)]
            if spec.record_params:
                leaves += [(f"params/{i}", x) for i, x in enumerate(jax.tree.leaves(shapes.params))]
            if shapes.best is not None:
                leaves.append(("val_loss", shapes.loss))
            for i, (name, x) in enumerate(leaves):
                self.histories[name] = self._array(i, lead + (n_cols,) + x.shape[1:], x.dtype)
        else:
            self.histories["loss"] = np.empty(lead + (2,), dtype)
        self.finals = {"diverged_at": np.empty(lead, np.int32)}
        for i, x in enumerate(jax.tree.leaves(shapes.params)):
            self.finals[f"final/{i}"] = np.empty(lead + x.shape[1:], x.dtype)
        for group in ("best", "summary"):
            for i, x in enumerate(jax.tree.leaves(getattr(shapes, group))):
                self.finals[f"{group}/{i}"] = np.empty(lead + x.shape[1:], x.dtype)

    def _array(self, i: int, shape, dtype) -> np.ndarray:
        if self.folder is None:
            return np.empty(shape, dtype)
        path = os.path.join(self.folder, f"history-{i}.npy")
        if os.path.exists(path):  # resuming: keep the chunks already written
            try:
                a = np.load(path, mmap_mode="r+")
            except (OSError, ValueError):  # killed while creating it: no chunk is in it yet
                a = None
            if a is not None and a.shape == shape and a.dtype == dtype:
                return a
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def files(self) -> dict[str, np.ndarray]:
        """The trajectories written to files (name -> memory-mapped array)."""
        return dict(self.histories) if self.folder else {}

    def chunk_histories(self, chunk: int, n_cols: int):
        """Zeroed host buffers shaped like one chunk's device trajectories."""
        if not self.full:
            return None
        s = self.carry_shapes
        first = (s.loss, s.params if "params/0" in self.histories else None,
                 s.loss if "val_loss" in self.histories else None)
        return jax.tree.map(lambda x: np.zeros((chunk, n_cols) + x.shape[1:], x.dtype), first)

    def saved_histories(self, saved: dict):
        return [saved[f"history/{i}"] for i in range(len(self.histories))]

    def _write(self, a: np.ndarray, o: int, lo: int, block: np.ndarray) -> None:
        if isinstance(a, np.memmap):  # one contiguous block, written through the file
            block = np.ascontiguousarray(block, a.dtype)
            row = block.nbytes // max(1, block.shape[0])
            with open(a.filename, "r+b") as f:
                f.seek(a.offset + (o * self.n + lo) * row)
                f.write(memoryview(block).cast("B"))
        else:
            a[o, lo: lo + block.shape[0]] = block

    @staticmethod
    def fetch(carry, hist):
        """Every array of a chunk the host keeps, fetched at once (the copies overlap)."""
        return jax.device_get((carry._replace(opt_state=None, grad=None, loss=None), hist))

    def put(self, o: int, lo: int, hi: int, carry, hist, loss0) -> None:
        """Writes a chunk's ``fetch``-ed arrays into the host arrays (and files)."""
        m = hi - lo
        if hist is not None:
            for name, h in zip(self.histories, jax.tree.leaves(hist)):
                self._write(self.histories[name], o, lo, np.asarray(h)[:m])
        else:
            self.histories["loss"][o, lo:hi, 0] = loss0
            self.histories["loss"][o, lo:hi, 1] = np.asarray(carry.summary.last)[:m]
        self.finals["diverged_at"][o, lo:hi] = np.asarray(carry.diverged_at)[:m]
        for group in ("params", "best", "summary"):
            name = "final" if group == "params" else group
            for i, x in enumerate(jax.tree.leaves(getattr(carry, group))):
                self.finals[f"{name}/{i}"][o, lo:hi] = np.asarray(x)[:m]

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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _relayout(plan: _Plan, layout: dict) -> _Plan:
    """Reuses a stored chunk size and segment length, so resumed bits match."""
    chunk = int(layout["chunk"])
    sharding, replicated = plan.sharding, plan.replicated
    if sharding is not None and chunk % len(sharding.mesh.devices.flat):
        sharding = replicated = None
    return plan._replace(chunk=chunk, n_chunks=math.ceil(plan.n / chunk),
                         seg_records=int(layout["seg_records"]), sharding=sharding,
                         replicated=replicated)


def _describe(plan: _Plan) -> dict:
    """What defines a sweep's result; its hash is the fingerprint checked on resume."""
    spec = plan.specs[0]
    return {
        "grid": {k: v.tolist() for k, v in plan.grid.axes.items()},
        "optimizers": {s.opt.name: s.opt.source if isinstance(s.opt.source, str)
                       else checkpoint.digest(s.opt.source) for s in plan.specs},
        "loss_fn": checkpoint.digest(spec.loss_fn),
        "init": checkpoint.digest(spec.init),
        "steps": plan.steps,
        "record_every": plan.record_every,
        "seed": plan.seed,
        "batch_size": spec.batch_size,
        "record_params": spec.record_params,
        "data": None if plan.data is None else checkpoint.digest(jax.tree.leaves(plan.data)),
    } | ({} if plan.val_data is None else
         {"val_data": checkpoint.digest(jax.tree.leaves(plan.val_data))})


def _result(plan: _Plan, host: _Host, elapsed: float) -> Result:
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
        "target": None if plan.target == -math.inf else plan.target,
        "seed": plan.seed,
        "batch_size": plan.specs[0].batch_size,
        "chunk_size": plan.chunk,
        "n_chunks": plan.n_chunks,
        "segments": math.ceil(plan.steps // plan.record_every / plan.seg_records),
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
        best = dict(val_loss=shaped(hist["val_loss"]) if "val_loss" in hist else None,
                    best_val_loss=b.loss, best_step=b.step, best_params=b.params)
    return Result(
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


# -- checks -------------------------------------------------------------------


def _check_hyperparams(opts: list[optim.Optimizer], grid: Grid) -> None:
    for name in grid.dims:
        if name in optim.HYPERPARAMS and not any(name in o.takes for o in opts):
            takes = {o.name: list(o.takes) for o in opts}
            raise ValueError(
                f"grid axis {name!r} is an optimizer hyperparameter, but no optimizer takes it "
                f"(they take: {takes}); remove the axis or choose an optimizer that uses it"
            )
    for o in opts:
        missing = [r for r in optim.required(o) if r not in grid.axes]
        if missing:
            raise ValueError(
                f"optimizer {o.name!r} needs {missing}: add a grid axis for each "
                f"(e.g. Grid(lr=[0.1, 0.01], ...))"
            )
        for name in o.takes:
            if name in grid.axes:
                optim.check_range(o, name, grid.axes[name])


def _takes_config(loss_fn) -> bool:
    try:
        return "config" in inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        return False


def _check_shapes(spec: _Spec, flat, seed, data):
    """Traces one configuration abstractly (no compile): catches shape errors early.
    Returns the shapes of one configuration's carry and params; remembered for the
    same code and argument shapes (tracing costs milliseconds per sweep)."""
    abstract = lambda x: (np.shape(x), str(getattr(x, "dtype", type(x))))  # noqa: E731
    key = (spec.key, jax.tree.structure(data), tuple(map(abstract, jax.tree.leaves(data))),
           jax.config.jax_enable_x64)
    hit = _SHAPES.get(key)
    if hit is None:
        hit = _SHAPES[key] = _trace_one(spec, flat, seed, data)
        if len(_SHAPES) > _CACHE_SIZE:
            _SHAPES.pop(next(iter(_SHAPES)))
    return hit


_SHAPES: dict = {}


def _trace_one(spec: _Spec, flat, seed, data):
    config = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in flat.items()}

    def one(config, base_seed, datas):
        init_key, data_key, tx, loss, batching = _bind(spec, config, base_seed)
        params = spec.init(config, init_key)
        value = loss(params, batching._replace(data=datas[0]).batch(data_key, jnp.int32(0)))
        return params, value

    try:
        params, value = jax.eval_shape(one, config, np.uint32(seed), data)
    except Exception as e:  # noqa: BLE001 - report the user's error with context
        raise ValueError(
            f"init, loss_fn or optimizer {spec.opt.name!r} failed on one configuration "
            f"(data shapes {jax.tree.map(np.shape, data) if data is not None else None}): "
            f"{type(e).__name__}: {e}"
        ) from e
    for leaf in jax.tree.leaves(params):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(f"init must return float params, got a leaf of dtype {leaf.dtype}")
    if not hasattr(value, "shape") or value.shape != ():
        shape = getattr(value, "shape", value)
        raise ValueError(f"loss_fn must return a scalar, got shape {shape}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"loss_fn must return a float, got dtype {value.dtype}")

    carry = jax.eval_shape(lambda c, s, d: _init_one(spec, c, s, d), config, np.uint32(seed),
                           data)
    return carry, params


def _check_initial(finite, plan: _Plan, lo: int, hi: int) -> None:
    ok = np.asarray(finite)[: hi - lo]
    if ok.all():
        return
    bad = np.flatnonzero(~ok)
    examples = [{k: float(f"{v[lo + i]:.6g}") for k, v in plan.flat.items()} for i in bad[:3]]
    raise ValueError(
        f"params, loss or gradient is not finite at the initial params for {bad.size} "
        f"configuration(s), e.g. {examples}; check init and loss_fn"
    )


# -- sizing and storage ---------------------------------------------------------


# Default segments per chunk, and the fewest estimated seconds each may take: a
# chunk estimated under SEGMENTS * SEGMENT_SECONDS runs in fewer (see _auto_segments).
SEGMENTS = 10
SEGMENT_SECONDS = 0.01


def _auto_segments(chunk: int, steps: int, params: int, examples: int) -> int:
    """Segments for a chunk, from a rough estimate of its seconds: a per-step floor
    (the loop's ops: ~4 us per step on the CPU for W1's 2-param net) plus 6 FLOPs per
    param and example (forward and backward of a dense layer) at 10 GFLOP/s (W2 on
    the CPU: 12-16). Only the granularity of progress, checkpoints and compaction
    depends on it, never a result."""
    seconds = steps * 5e-6 + 6 * params * examples * chunk * steps / 1e10
    return max(1, min(SEGMENTS, int(seconds / SEGMENT_SECONDS)))


def _size(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _segment_records(n_rec: int, segments: int) -> int:
    target = math.ceil(n_rec / segments)
    for k in range(target, min(2 * target, n_rec) + 1):  # a divisor avoids a 2nd compile
        if n_rec % k == 0:
            return k
    return target


def _bytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _default_memory(device) -> int:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend reports
        stats = {}
    limit = stats.get("bytes_limit")
    return int(limit) // 2 if limit else DEFAULT_CPU_MEMORY


def _chunk_configs(plan: _Plan, lo: int, hi: int) -> dict:
    pad = plan.chunk - (hi - lo)
    configs = {}
    for k, v in plan.flat.items():
        part = v[lo:hi]
        if pad:  # repeat a real configuration so every chunk has one shape
            part = np.concatenate([part, np.repeat(part[:1], pad)])
        configs[k] = part
    if plan.sharding is not None:
        return jax.device_put(configs, plan.sharding)
    return {k: jnp.asarray(v) for k, v in configs.items()}


def _versions() -> dict:
    import optax

    from bpjax import __version__

    return {"bpjax": __version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}
