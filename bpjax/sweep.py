"""``sweep``: every configuration of a grid trained in one compiled, vmapped call.

The grid is flattened to N configurations and cut into equal chunks (sized from
a memory estimate), each chunk sharded over the local devices; each chunk runs
in segments of whole records (progress, and the boundary where checkpoints are
written). Compiled functions are cached on (loss, init, optimizer, static
settings), so a new grid of the same shape does not recompile.
"""

import inspect
import math
import sys
import time
from collections.abc import Callable, Mapping
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

DEFAULT_CPU_MEMORY = 2 << 30


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

    @property
    def key(self):
        return (self.loss_fn, self.loss_takes_config, self.init, self.opt.source, self.axes,
                self.record_every, self.batch_size, self.has_data, self.record_params,
                self.has_val)


class _Compiled(NamedTuple):
    init: Callable  # (configs, base_seed, (data, val_data)) -> Carry, batched over configs
    segment: Callable  # (carry, configs, base_seed, (data, val_data), start, n_records)


_CACHE: dict = {}
_CACHE_SIZE = 64


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
    data, val_data = datas
    init_key, data_key, tx, loss, batching = _bind(spec, config, base_seed)
    params = spec.init(config, init_key)
    return engine.init_carry(params, tx, loss, batching._replace(data=data), data_key,
                             _validation(spec, loss, val_data))


def _compiled(spec: _Spec) -> _Compiled:
    hit = _CACHE.get(spec.key)
    if hit is not None:
        return hit

    def init_one(config, base_seed, datas):
        return _init_one(spec, config, base_seed, datas)

    def segment_one(carry, config, base_seed, datas, start, n_records):
        data, val_data = datas
        _, data_key, tx, loss, batching = _bind(spec, config, base_seed)
        return engine.run_segment(carry, start, n_records, spec.record_every, tx, loss,
                                  batching._replace(data=data), data_key, spec.record_params,
                                  _validation(spec, loss, val_data))

    compiled = _Compiled(
        init=jax.jit(jax.vmap(init_one, in_axes=(0, None, None))),
        segment=jax.jit(
            jax.vmap(segment_one, in_axes=(0, 0, None, None, None, None)),
            static_argnums=5,
            donate_argnums=0,
        ),
    )
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[spec.key] = compiled
    return compiled


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
    max_memory: int | None = None,
    chunk_size: int | None = None,
    segments: int = 10,
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
      max_memory: device bytes a chunk may use (default: half the device memory,
        or 2 GiB on CPU). ``chunk_size`` overrides the estimate.
      segments: how many pieces each chunk's run is cut into, for progress.
      shard: shard the configuration axis over all local devices.
      progress: show a progress bar (default: when stderr is a terminal).
      out: a folder to checkpoint into (at most every ``checkpoint_seconds``, at
        segment boundaries, and after each chunk) and to write ``result.npz``
        to. Running the same sweep with the same ``out`` resumes it; a different
        sweep there is refused, naming what differs.

    Example:
      >>> import bpjax, jax.numpy as jnp
      >>> res = bpjax.sweep(lambda p: p["x"] ** 4, lambda c, k: {"x": c["x0"]}, "sgd",
      ...                   bpjax.Grid(lr=[0.01, 0.2], x0=[0.5, 2.0]), steps=100)
      >>> res.diverged.tolist()
      [[False, False], [False, True]]
    """
    plan = _plan(loss_fn, init, optimizer, grid, steps, record_every, seed, data, batch_size,
                 record_params, max_memory, chunk_size, segments, shard, val_data)
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


def _plan(loss_fn, init, optimizer, grid, steps, record_every, seed, data, batch_size,
          record_params, max_memory, chunk_size, segments, shard, val_data=None) -> _Plan:
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
    segments = positive_int("segments", segments)
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
    specs = [_Spec(loss_fn, takes_config, init, o, axes, record_every, batch_size,
                   data is not None, bool(record_params), val_data is not None) for o in opts]

    flat = grid.flat()
    carry_shape, params_shape = _check_shapes(specs[0], flat, seed, (data, val_data))
    for spec in specs[1:]:
        _check_shapes(spec, flat, seed, (data, val_data))

    n_rec = steps // record_every
    seg_records = _segment_records(n_rec, segments)
    devices = jax.local_devices()
    n_dev = len(devices) if shard else 1
    per_config = _bytes(carry_shape) * 4 + seg_records * (
        8 + (_bytes(params_shape) if record_params else 0)) * 2
    if data is not None:
        per_config += 2 * _bytes(data) // max(1, jax.tree.leaves(data)[0].shape[0]) * (
            batch_size or jax.tree.leaves(data)[0].shape[0])
    if chunk_size is None:
        budget = _default_memory(devices[0]) if max_memory is None else int(max_memory)
        if budget <= 0:
            raise ValueError(f"max_memory must be positive bytes, got {max_memory}")
        chunk = max(1, min(grid.size, budget // per_config))
    else:
        chunk = min(positive_int("chunk_size", chunk_size), grid.size)
    chunk = max(n_dev, chunk // n_dev * n_dev)
    n_chunks = math.ceil(grid.size / chunk)
    chunk = math.ceil(grid.size / n_chunks / n_dev) * n_dev  # balance the chunks
    sharding = replicated = None
    if n_dev > 1:
        mesh = Mesh(np.array(devices), ("config",))
        sharding = NamedSharding(mesh, PartitionSpec("config"))
        replicated = NamedSharding(mesh, PartitionSpec())
    return _Plan(specs, multi, grid, flat, steps, record_every, int(seed), data, val_data, chunk,
                 n_chunks, seg_records, sharding, replicated)


def _execute(plan: _Plan, progress: bool | None, out=None, checkpoint_seconds=30.0) -> Result:
    store = None
    if out is not None:
        store = checkpoint.Store(out, _describe(plan))
        layout = store.open({"chunk": plan.chunk, "seg_records": plan.seg_records})
        if layout is not None:
            if store.finished():
                _say(f"bpjax: {store.out} holds this finished sweep; loading it")
                return load(store.path(checkpoint.RESULT))
            plan = _relayout(plan, layout)
            _say(f"bpjax: resuming the sweep in {store.out}")
    n, chunk = plan.grid.size, plan.chunk
    n_rec = plan.steps // plan.record_every
    n_opt = len(plan.specs)
    data = (plan.data, plan.val_data)
    if plan.data is not None and plan.replicated is not None:
        data = jax.device_put(data, plan.replicated)
    base_seed = np.uint32(plan.seed)
    resume = store.load_progress() if store else None

    loss = None
    diverged_at = np.empty((n_opt, n), np.int32)
    params = final = best = None
    bar = Progress(n_opt * n * plan.steps, "sweep", progress)
    t0 = time.perf_counter()
    for o, spec in enumerate(plan.specs):
        fns = _compiled(spec)
        for c in range(plan.n_chunks):
            lo, hi = c * chunk, min((c + 1) * chunk, n)
            m = hi - lo
            configs = _chunk_configs(plan, lo, hi)
            shapes = jax.eval_shape(fns.init, configs, base_seed, data)
            if final is None:  # host buffers in the run's own dtypes (float64 under x64)
                loss = np.empty((n_opt, n, n_rec + 1), shapes.loss.dtype)
                final = _alloc(shapes.params, (n_opt, n))
                if spec.record_params:
                    params = _alloc(shapes.params, (n_opt, n, n_rec + 1))
                if shapes.best is not None:
                    best = _Best(np.empty((n_opt, n, n_rec + 1), shapes.loss.dtype),
                                 _alloc(shapes.best, (n_opt, n)))
            rows = _Rows(loss, diverged_at, final, params, o, lo, hi, best)
            saved = store.load_chunk(o, c) if store else None
            if saved is not None:
                rows.put_chunk(saved)
                bar.update(m * plan.steps, "(from checkpoint)")
                continue
            if resume is not None and tuple(resume["position"][:2]) == (o, c):
                done = int(resume["position"][2])
                leaves = [resume[f"carry/{i}"] for i in range(len(jax.tree.leaves(shapes)))]
                carry = jax.tree.unflatten(jax.tree.structure(shapes), leaves)
                carry = jax.device_put(carry, plan.sharding) if plan.sharding else carry
                rows.put_records(resume, done)
                bar.update(m * done * plan.record_every, "(from checkpoint)")
            else:
                done = 0
                carry = fns.init(configs, base_seed, data)
                if o == 0:
                    _check_initial(carry, plan, lo, hi)
                rows.keep((carry.loss[:, None], jax.tree.map(lambda x: x[:, None], carry.params)
                           if params is not None else None,
                           carry.best.loss[:, None] if best else None), 0, 1)
            last_save = time.perf_counter()
            pending = None
            while done < n_rec:
                k = min(plan.seg_records, n_rec - done)
                start = np.int32(done * plan.record_every)
                carry, records = fns.segment(carry, configs, base_seed, data, start, k)
                if pending is not None:  # copy the previous segment while this one runs
                    rows.keep(*pending)
                pending = (records, done + 1, k)
                done += k
                bar.update(m * k * plan.record_every, f"{spec.opt.name} chunk {c + 1}")
                if store and done < n_rec and time.perf_counter() - last_save >= checkpoint_seconds:
                    rows.keep(*pending)
                    pending = None
                    host = [np.asarray(x) for x in jax.tree.leaves(carry)]
                    store.save_progress(o, c, done, host, rows.records(done))
                    last_save = time.perf_counter()
            if pending is not None:
                rows.keep(*pending)
            rows.put_final(carry)
            if store:
                store.save_chunk(o, c, rows.chunk())
    bar.close()
    result = _result(plan, loss, diverged_at, final, params, time.perf_counter() - t0, best)
    result.meta["fingerprint"] = (store.fingerprint if store
                                  else checkpoint.fingerprint(_describe(plan)))
    if store:
        store.finish(result)
    return result


class _Best(NamedTuple):
    """Host arrays of early stopping: validation loss per record, and engine.Best."""

    val_loss: np.ndarray  # (optimizers, configs, records)
    best: engine.Best  # leaves (optimizers, configs, ...)


class _Rows:
    """The host arrays' rows of one chunk, [o, lo:hi]; reads and writes them."""

    def __init__(self, loss, diverged_at, final, params, o, lo, hi, best=None):
        self.loss, self.diverged_at, self.final, self.params = loss, diverged_at, final, params
        self.best = best
        self.o, self.lo, self.hi = o, lo, hi
        self.rows = (o, slice(lo, hi))

    def keep(self, records, first: int, k: int) -> None:
        rec_loss, rec_params, rec_val = records
        m = self.hi - self.lo
        self.loss[self.o, self.lo:self.hi, first:first + k] = np.asarray(rec_loss)[:m]
        if self.params is not None:
            _store(self.params, rec_params, self.rows + (slice(first, first + k),), m)
        if self.best is not None:
            self.best.val_loss[self.o, self.lo:self.hi, first:first + k] = np.asarray(rec_val)[:m]

    def put_final(self, carry) -> None:
        _store(self.final, carry.params, self.rows, self.hi - self.lo)
        self.diverged_at[self.rows] = np.asarray(carry.diverged_at)[: self.hi - self.lo]
        if self.best is not None:
            _store(self.best.best, carry.best, self.rows, self.hi - self.lo)

    def _histories(self):
        yield "loss", self.loss
        if self.params is not None:
            for i, leaf in enumerate(jax.tree.leaves(self.params)):
                yield f"params/{i}", leaf
        if self.best is not None:
            yield "val_loss", self.best.val_loss

    def _finals(self):
        yield "diverged_at", self.diverged_at
        for i, leaf in enumerate(jax.tree.leaves(self.final)):
            yield f"final/{i}", leaf
        if self.best is not None:
            for i, leaf in enumerate(jax.tree.leaves(self.best.best)):
                yield f"best/{i}", leaf

    def records(self, done: int) -> dict[str, np.ndarray]:
        return {name: a[self.rows][:, : done + 1] for name, a in self._histories()}

    def put_records(self, saved: dict, done: int) -> None:
        for name, a in self._histories():
            a[self.rows][:, : done + 1] = saved[name]

    def chunk(self) -> dict[str, np.ndarray]:
        out = self.records(self.loss.shape[-1] - 1)
        out.update((name, a[self.rows]) for name, a in self._finals())
        return out

    def put_chunk(self, saved: dict) -> None:
        self.put_records(saved, self.loss.shape[-1] - 1)
        for name, a in self._finals():
            a[self.rows] = saved[name]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _relayout(plan: _Plan, layout: dict) -> _Plan:
    """Reuses a stored chunk size and segment length, so resumed bits match."""
    chunk = int(layout["chunk"])
    sharding, replicated = plan.sharding, plan.replicated
    if sharding is not None and chunk % len(sharding.mesh.devices.flat):
        sharding = replicated = None
    return plan._replace(chunk=chunk, n_chunks=math.ceil(plan.grid.size / chunk),
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


def _result(plan: _Plan, loss, diverged_at, final, params, elapsed, best=None) -> Result:
    grid = plan.grid
    lead = (len(plan.specs),) if plan.multi else ()
    shape = lead + grid.shape
    names = [s.opt.name for s in plan.specs]

    def shaped(a):  # (optimizers, configs, ...) -> [optimizer,] *grid.shape, ...
        return (a if plan.multi else a[0]).reshape(shape + a.shape[2:])

    coords = dict(grid.axes)
    if plan.multi:
        coords = {"optimizer": np.array(names), **coords}
    coords["step"] = np.arange(0, plan.steps + 1, plan.record_every, dtype=np.int32)
    loss_out = shaped(loss)
    meta = {
        "grid": {k: v.tolist() for k, v in grid.axes.items()},
        "optimizers": names,
        "steps": plan.steps,
        "record_every": plan.record_every,
        "seed": plan.seed,
        "batch_size": plan.specs[0].batch_size,
        "chunk_size": plan.chunk,
        "n_chunks": plan.n_chunks,
        "devices": [str(d) for d in jax.local_devices()] if plan.sharding else
                   [str(jax.local_devices()[0])],
        "elapsed_s": elapsed,
        "versions": _versions(),
    }
    return Result(
        dims=tuple(coords)[:-1],
        coords=coords,
        loss=loss_out,
        final_loss=loss_out[..., -1].copy(),
        diverged_at=shaped(diverged_at),
        final_params=jax.tree.map(shaped, final),
        params=None if params is None else jax.tree.map(shaped, params),
        meta=meta,
        **({} if best is None else dict(
            val_loss=shaped(best.val_loss), best_val_loss=shaped(best.best.loss),
            best_step=shaped(best.best.step), best_params=jax.tree.map(shaped, best.best.params))),
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
    """Traces one configuration abstractly (no compile): catches shape errors early."""
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


def _check_initial(carry, plan: _Plan, lo: int, hi: int) -> None:
    ok = np.asarray(engine_finite(carry))[: hi - lo]
    if ok.all():
        return
    bad = np.flatnonzero(~ok)
    examples = [{k: float(f"{v[lo + i]:.6g}") for k, v in plan.flat.items()} for i in bad[:3]]
    raise ValueError(
        f"loss or gradient is not finite at the initial params for {bad.size} "
        f"configuration(s), e.g. {examples}; check init and loss_fn"
    )


@jax.jit
def engine_finite(carry):
    return jax.vmap(lambda c: engine.all_finite((c.loss, c.grad, c.params)))(carry)


# -- sizing and storage ---------------------------------------------------------


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


def _alloc(tree, lead: tuple[int, ...]):
    return jax.tree.map(lambda x: np.empty(lead + tuple(x.shape[1:]), x.dtype), tree)


def _store(dest, src, index, m: int) -> None:
    """Copies the first ``m`` (unpadded) configurations of ``src`` into ``dest[index]``."""

    def put(d, s):
        d[index] = np.asarray(s)[:m]

    jax.tree.map(put, dest, src)


def _versions() -> dict:
    import optax

    from bpjax import __version__

    return {"bpjax": __version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}
