"""The compiled side of a sweep: a static ``Spec`` and its cached ``jit(vmap)``
functions (``trace`` checks shapes abstractly before anything compiles).

Everything here is written for one configuration (``bind``: its key, optimizer
and loss) and batched over configurations with ``jax.vmap``. Compiled functions
are cached on (loss, init, optimizer, static settings), so a new grid of the same
shape does not recompile.
"""

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bpjax import engine, optim, recorders
from bpjax.compilation_cache import jit_fast, jit_once, loop_options

# How many steps between records one iteration of the compiled loop takes, per backend,
# for nets of at most SMALL_NET params. Measured on an H100: W1 (2 params, 4096 x 1000)
# 0.0103 s with 10 steps per iteration, 0.0259 s with 1 (each iteration costs kernel
# launches); W2 (33 params) about the same either way; W3 (9,610 params) 7% slower
# unrolled. On the CPU unrolling is no faster, often slower.
UNROLL: dict[str, int] = {"cpu": 1, "gpu": 10}
SMALL_NET = 256
CACHE_SIZE = 64


class Spec(NamedTuple):
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
    metrics: tuple[tuple[str, Callable], ...] = ()  # (name, metric(params, loss)), by name
    static: tuple[tuple[str, Any], ...] = ()  # (axis, Python value) of a static combination

    @property
    def draws_batches(self) -> bool:
        """Whether every step draws from the data key (a mini-batch): then the keys are
        computed once per chunk (``KEYS``); else XLA drops the unused data key itself."""
        return self.has_data and self.batch_size is not None

    @property
    def key(self):
        return (self.opt.source, *self.start_key)

    @property
    def start_key(self):
        """The key of what comes before the first step (keys, init, ``begin``): no
        optimizer, so a sweep's optimizers share those programs."""
        return (self.loss_fn, self.loss_takes_config, self.init, self.axes,
                self.record_every, self.batch_size, self.has_data, self.record_params,
                self.has_val, self.histories, self.stop, self.metrics, self.static)


class Inputs(NamedTuple):
    """The traced inputs every configuration of a chunk shares."""

    data: Any  # a pytree with a leading example axis, or None
    val_data: Any  # held-out data like ``data``, or None
    target: float  # the loss threshold of the summaries (-inf: none)


class Compiled(NamedTuple):
    """A spec's compiled functions, batched over the rows (configurations) of a chunk.

    ``status`` below is, per row, an int8: 1 if the run still takes steps, + 2 if it
    met a non-finite value in the segment (never when guarded).
    """

    keys: Callable  # (configs, base_seed) -> per row its (init, data) key data, which
    #   the others read from ``configs[KEYS]`` where it is given (``with_keys``)
    start: Callable  # (configs, base_seed, inputs, n_cols) -> (carry, histories with
    #   column 0 filled, per row whether it is finite)
    running: Callable  # carry -> per row, whether the run still takes steps
    segment: Callable  # (carry, hist, configs, base_seed, inputs, start, col, n_records)
    #   -> (carry, hist, status), guarded at every step
    compacted: Callable  # the same on the rows ``idx`` only: (carry, hist, idx, configs, ...)
    fast: Callable  # ``segment``, optimistic (see engine.run_segment); the carry is kept
    fast_compacted: Callable  # ``compacted``, optimistic
    rewind: Callable  # (carry, before, rows) -> carry, with the rows' values from before


# The configurations' entry for their (init, data) key data, which ``Compiled.keys``
# computes once per chunk of a mini-batch sweep: there the random-number code of a
# fold_in and a split, in every program, was a third of the compilation (an XOR sweep
# and a digits mini-batch sweep, compile included: 14.3 s with it, 9.9 s without).
KEYS = "__bpjax_keys__"


def config_keys(config: Mapping, base_seed):
    """The (init, data) keys of one configuration: from the base seed and ``seed`` axis."""
    if KEYS in config:  # computed once per chunk (``Compiled.keys``)
        return tuple(jax.random.wrap_key_data(k) for k in config[KEYS])
    key = jax.random.key(base_seed)
    if "seed" in config:
        key = jax.random.fold_in(key, config["seed"])
    return jax.random.split(key)


def configured(spec: Spec, config: Mapping, base_seed) -> tuple[dict, jax.Array, jax.Array]:
    """One configuration as its init and loss see it (with the static combination's
    values, a static seed axis among them; without ``KEYS``) and its (init, data) keys."""
    config = {**config, **dict(spec.static)}
    init_key, data_key = config_keys(config, base_seed)
    config.pop(KEYS, None)
    return config, init_key, data_key


def keys_one(spec: Spec, config, base_seed) -> jax.Array:
    """One configuration's (init, data) keys as key data, shape (2, ...)."""
    return jnp.stack([jax.random.key_data(k) for k in configured(spec, config, base_seed)[1:]])


class Bound(NamedTuple):
    """One configuration's keys, optimizer, loss ``loss(params, batch)`` and recorders."""

    config: dict  # axis -> value: traced, and the static combination's Python values
    init_key: jax.Array
    data_key: jax.Array
    tx: Any
    loss: Callable
    batching: engine.Batching
    recorders: OrderedDict  # name -> Recorder, in the order of the host's histories


def bind(spec: Spec, config: Mapping, base_seed, inputs: Inputs,
         optimizer: bool = True) -> Bound:
    """One configuration of ``spec``: everything its init, steps and records need
    (without ``optimizer``, no ``tx``: nothing that depends on ``spec.opt``)."""
    config, init_key, data_key = configured(spec, config, base_seed)
    data = inputs.data
    tx = spec.opt.factory(**optim.hyperparams(spec.opt, config)) if optimizer else None
    extra = {"config": config} if spec.loss_takes_config else {}
    if spec.has_data:
        def loss(params, batch):
            return spec.loss_fn(params, batch, **extra)
    else:
        def loss(params, batch):
            del batch
            return spec.loss_fn(params, **extra)
    return Bound(config, init_key, data_key, tx, loss, engine.Batching(data, spec.batch_size),
                 _recorders(spec, loss, inputs))


def _recorders(spec: Spec, loss, inputs: Inputs) -> OrderedDict:
    """What ``spec`` records, by name: the loss and params (with trajectories), early
    stopping's ``best`` (with validation data), the ``summary`` and each metric."""
    out = OrderedDict()
    if spec.histories:
        out["loss"] = recorders.loss()
    if spec.record_params:
        out["params"] = recorders.params()
    if spec.has_val:
        out["best"] = recorders.best(lambda params: loss(params, inputs.val_data))
    out["summary"] = recorders.summary(inputs.target)
    for name, fn in spec.metrics:  # (sorted by name)
        out[f"metrics/{name}"] = recorders.metric(
            lambda params, fn=fn: fn(params, lambda p: loss(p, inputs.data)))
    return out


def init_one(spec: Spec, config, base_seed) -> Any:
    """One configuration's initial params."""
    config, init_key, _ = configured(spec, config, base_seed)
    return spec.init(config, init_key)


def start_one(spec: Spec, config, base_seed, inputs: Inputs, bound: Bound | None = None,
              params=None, optimizer: bool = True):
    """One configuration's starting carry (params, optimizer state, loss, gradient, its
    recorders' states) and its records at step 0: ``(carry, records)``. Without
    ``optimizer`` the carry's ``opt_state`` is None (``opt_init`` gives it)."""
    if bound is None:
        bound = bind(spec, config, base_seed, inputs, optimizer=optimizer)
    params = spec.init(bound.config, bound.init_key) if params is None else params
    carry = engine.init_carry(params, bound.tx if optimizer else None, bound.loss,
                              bound.batching, bound.data_key, bound.recorders)
    return carry, engine.record(carry, 0, bound.recorders, bound.loss, bound.batching)[1]


def with_keys(spec: Spec, keys: Callable, configs: dict, base_seed) -> dict:
    """``configs`` with their keys (``KEYS``) where ``spec`` draws mini-batches."""
    if not spec.draws_batches or KEYS in configs:
        return configs
    return {**configs, KEYS: keys(configs, base_seed)}


def opt_init(spec: Spec, params, config, base_seed, inputs: Inputs):
    """One configuration's optimizer state at ``params``."""
    return bind(spec, config, base_seed, inputs).tx.init(params)


def _start(spec: Spec, shard: dict, keys: Callable, init: Callable,
           begin: Callable) -> Callable:
    """``Compiled.start`` as three programs: the init and ``begin`` (``_before``) and
    the optimizer's state (``jit_once``: zeros and copies)."""
    state = jit_once(jax.vmap(partial(opt_init, spec), in_axes=(0, 0, None, None)), **shard)

    def start(configs, base_seed, inputs, n_cols):
        configs = with_keys(spec, keys, configs, base_seed)  # (the same programs whoever calls)
        params = init(configs, base_seed)
        carry, hist, finite = begin(params, configs, base_seed, inputs, n_cols)
        like = jax.eval_shape(state, params, configs, base_seed, inputs)
        if jax.tree.leaves(like):
            opt_state = state(params, configs, base_seed, inputs)
        else:  # no arrays (plain SGD): no program
            opt_state = jax.tree.unflatten(jax.tree.structure(like), [])
        return carry._replace(opt_state=opt_state), hist, finite

    return start


_CACHE: dict = {}
_BEFORE: dict = {}


def keep(cache: dict, key, value):
    """``value``, stored in ``cache`` under ``key``; the oldest entry is dropped where
    the cache holds ``CACHE_SIZE`` already."""
    if len(cache) >= CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def _before(spec: Spec, sharding, fast_compile: bool) -> tuple[Callable, Callable, Callable]:
    """The programs before the first step, which no optimizer changes, as ``(keys,
    init, begin)``; cached on ``spec.start_key``, so that a sweep's second and third
    optimizers trace and lower none of them again (each of W2's traced and lowered the
    init and ``begin`` in 0.1 s to load what the first had compiled). The init is
    compiled for a single run (``jit_once``: the random-number code of an init took
    seconds to compile at XLA's full optimization); ``begin`` (the first loss, gradient
    and records) like the segments, so that step 0 is computed by the same code as the
    later steps."""
    key = (spec.start_key, sharding, fast_compile)
    hit = _BEFORE.get(key)
    if hit is not None:
        return hit

    def begin(params, configs, base_seed, inputs, n_cols):
        carry, first = jax.vmap(lambda p, c: start_one(spec, c, base_seed, inputs, params=p,
                                                       optimizer=False))(params, configs)
        return carry, histories(first, n_cols), jax.vmap(engine.finite)(carry)

    def histories(first, n_cols):
        if not spec.histories:
            return None

        def buffer(x):
            out = jnp.zeros((x.shape[0], n_cols) + x.shape[1:], x.dtype)
            return out.at[:, 0].set(x)

        return jax.tree.map(buffer, first)

    # keys' and start's outputs sharded like the segments' (else the second segment
    # compiles again, for new input shardings: W2 cold paid 3 of 11 compiles for it)
    shard = {} if sharding is None else {"out_shardings": sharding}
    options = loop_options(fast_compile)
    return keep(_BEFORE, key, (
        jit_once(jax.vmap(partial(keys_one, spec), in_axes=(0, None)), **shard),
        jit_once(jax.vmap(partial(init_one, spec), in_axes=(0, None)), **shard),
        jax.jit(begin, static_argnums=4, compiler_options=options, **shard)))


def compiled(spec: Spec, sharding=None, unroll: int = 1, fast_compile: bool = False) -> Compiled:
    """The compiled functions of ``spec`` (cached); with ``fast_compile`` its segments
    and ``begin`` are compiled by XLA's faster-compiling CPU emitters (``FAST_COMPILE``),
    whose code may round differently in the last bit and run up to about 2x slower."""
    key = (spec.key, sharding, unroll, fast_compile)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit

    def segment_one(carry, config, base_seed, inputs, start, n_records, optimistic):
        bound = bind(spec, config, base_seed, inputs)
        return engine.run_segment(carry, start, n_records, spec.record_every, bound.tx,
                                  bound.loss, bound.batching, bound.data_key, bound.recorders,
                                  spec.stop, keep=spec.histories, optimistic=optimistic,
                                  unroll=unroll)

    def run(carry, configs, base_seed, inputs, start, n_records, optimistic):
        one = partial(segment_one, n_records=n_records, optimistic=optimistic)
        return jax.vmap(one, in_axes=(0, 0, None, None, None))(
            carry, configs, base_seed, inputs, start)

    def live(carry):  # the runs that still take steps, for compaction
        return jax.vmap(lambda c: engine.running(c, spec.stop))(carry)

    def status(carry, broken):  # one array, so the host syncs once per segment
        return live(carry).astype(jnp.int8) + 2 * broken.astype(jnp.int8)

    def segment(carry, hist, configs, base_seed, inputs, start, col, n_records, optimistic):
        carry, records, broken = run(carry, configs, base_seed, inputs, start, n_records,
                                     optimistic)
        hist = jax.tree.map(lambda h, r: jax.lax.dynamic_update_slice_in_dim(h, r, col, 1),
                            hist, records)
        return carry, hist, status(carry, broken)

    def compacted(carry, hist, idx, configs, base_seed, inputs, start, col, n_records,
                  optimistic):
        # idx: the live rows, padded with an out-of-range row (its results are dropped)
        def take(x):
            x = jnp.take(x, idx, axis=0, mode="clip")
            return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)

        sub, records, broken = run(jax.tree.map(take, carry), jax.tree.map(take, configs),
                                   base_seed, inputs, start, n_records, optimistic)
        carry = jax.tree.map(lambda x, v: x.at[idx].set(v, mode="drop"), carry, sub)
        cols = col + jnp.arange(n_records)
        hist = jax.tree.map(lambda h, r: h.at[idx[:, None], cols[None, :]].set(r, mode="drop"),
                            hist, records)
        broken = jnp.zeros(carry.diverged_at.shape, bool).at[idx].set(broken, mode="drop")
        return carry, hist, status(carry, broken)

    def rewind(carry, before, rows):
        return jax.tree.map(
            lambda a, b: a.at[rows].set(b[jnp.clip(rows, 0, b.shape[0] - 1)], mode="drop"),
            carry, before)

    # Each segment runs optimistically first (its input carry kept: not donated), and
    # again with the per-step guard from that carry where some run met a non-finite value.
    shard = {} if sharding is None else {"out_shardings": sharding}
    options = loop_options(fast_compile)  # (where the code is arithmetic)
    keys, init, begin = _before(spec, sharding, fast_compile)
    functions = Compiled(
        keys=keys,
        start=_start(spec, shard, keys, init, begin),
        running=jit_fast(live),  # (comparisons: the same bits)
        segment=jax.jit(partial(segment, optimistic=False), static_argnums=7,
                        donate_argnums=(0, 1), compiler_options=options),
        compacted=jax.jit(partial(compacted, optimistic=False), static_argnums=8,
                          donate_argnums=(0, 1), compiler_options=options),
        fast=jax.jit(partial(segment, optimistic=True), static_argnums=7, donate_argnums=1,
                     compiler_options=options),
        fast_compacted=jax.jit(partial(compacted, optimistic=True), static_argnums=8,
                               donate_argnums=1, compiler_options=options),
        rewind=jit_fast(rewind),  # (copies: the same bits)
    )
    return keep(_CACHE, key, functions)


def unroll(spec_params_size: int, record_every: int) -> int:
    """Steps per iteration of the loop between records (see ``UNROLL``)."""
    if spec_params_size > SMALL_NET:
        return 1
    return max(1, math.gcd(record_every, UNROLL.get(jax.default_backend(), 1)))
