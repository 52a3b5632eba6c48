"""One chunk, segment by segment.

Each chunk runs in segments of whole records. A segment runs optimistically (no
per-step guard) and again, guarded, only on the runs that met a non-finite
value in it; between segments, runs that diverged or stopped are dropped and
the live ones re-packed into a power-of-two batch (compaction); on GPU the next
segment is dispatched while the last one is checked (run ahead). Segment
boundaries are also where progress is shown and checkpoints are written.
"""


import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import engine
from bpjax.compilation_cache import jit_fast
from bpjax.sweep.compiled import KEYS, Compiled, Spec, bind, keep, with_keys
from bpjax.sweep.host import Host
from bpjax.sweep.plan import Options, Plan, SegmentInfo, chunk_configs

# Whether to dispatch segment k + 1 before checking segment k (see run_chunk), per
# backend. Measured on an H100: W2 0.033 s with, 0.047 s without. On the CPU a dispatch
# runs much of the segment before it returns, so nothing overlaps, and a segment run
# ahead is thrown away whenever a run breaks (a sweep where 1% of the runs diverge,
# one in each of 8 of 10 segments: 0.89 s with, 0.56 s without; 0.53 s with none).
RUN_AHEAD: dict[str, bool] = {"cpu": False, "gpu": True}
SMALL_START = 32 << 20  # trajectory bytes a chunk's start may allocate to check a chunk
REPLAY_ROWS = 64  # the smallest batch a segment's broken runs are replayed in (fewer sizes)


class Chunk(NamedTuple):
    """Where a chunk is: optimizer ``opt``, chunk ``index``, grid rows ``lo:hi``."""

    opt: int
    index: int
    lo: int
    hi: int


class Launched(NamedTuple):
    """A dispatched segment (its arrays may still be computing)."""

    carry: Any
    hist: Any
    status: Any  # per row: 1 if the run still takes steps, + 2 if it met a non-finite value
    active: Any  # the rows it ran (None: all)
    k: int  # records it runs


def run_chunk(plan: Plan, spec: Spec, functions: Compiled, host: Host, configs, base_seed,
              inputs, at: Chunk, resume, store, options: Options, bar, ready=None):
    """Trains one chunk segment by segment; returns its final carry, trajectories (host
    arrays, or None) and losses at step 0. ``ready()``, where given, is called after
    the chunk's start and before its first segment (``compile_first``)."""
    m, n_rec = at.hi - at.lo, plan.n_records
    n_dev = 1 if plan.sharding is None else len(plan.sharding.mesh.devices.flat)
    configs = with_keys(spec, functions.keys, configs, base_seed)
    if resume is not None:
        done = int(resume["position"][2])
        like = jax.tree.structure(plan.carry_shapes[at.opt])  # this optimizer's state
        carry = jax.tree.unflatten(like, [resume[f"carry/{i}"] for i in range(like.num_leaves)])
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
        carry, hist, finite = functions.start(configs, base_seed, inputs, n_rec + 1)
        if at.opt == 0:
            _check_initial(finite, plan, at)
        loss0 = np.asarray(carry.summary.last)[:m]
    last_save = time.perf_counter()
    if ready is not None:
        ready()

    def launch(carry, hist, active, done, guarded=False):
        k = min(plan.seg_records, n_rec - done)
        rows = () if active is None else (active,)
        if active is None:
            fn = functions.segment if guarded else functions.fast
        else:
            fn = functions.compacted if guarded else functions.fast_compacted
        out = fn(carry, hist, *rows, configs, base_seed, inputs,
                 np.int32(done * plan.record_every), np.int32(done + 1), k)
        return Launched(*out, active, k)

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
        again = launch(functions.rewind(cur.carry, before, rows), hist, rows, done,
                       guarded=True)
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
        planned = rows_for(functions.running(carry), active)
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
        bar.update(m * cur.k * plan.record_every, f"{spec.opt.name} chunk {at.index + 1}")
        if options.on_segment is not None:
            options.on_segment(_info(plan, spec, at, carry, status, done))
        if store and done < n_rec and (time.perf_counter() - last_save
                                       >= options.checkpoint_seconds):
            leaves = [np.asarray(x) for x in jax.tree.leaves(carry)]
            saved = {f"history/{i}": np.asarray(h)[:m, : done + 1]
                     for i, h in enumerate(jax.tree.leaves(hist))}
            store.save_progress(at.opt, at.index, done, leaves, saved | {
                "loss0": loss0, "active": np.zeros(0, np.int32) if active is None else active})
            last_save = time.perf_counter()
    if done < n_rec:  # every run stopped: the rest of each trajectory repeats its last record
        bar.update(m * (n_rec - done) * plan.record_every, "(all runs stopped)")
        if hist is not None:
            hist = _freeze(hist, np.zeros(plan.chunk, bool), np.int32(done))
    return carry, hist, loss0


def compile_first(plan: Plan, o: int, functions: Compiled, configs, base_seed, inputs) -> None:
    """Compiles optimizer ``o``'s first segment, the program a chunk that starts runs
    first (optimistic, every row), from abstract arguments: the carry and histories
    its start returns, with the shapes ``plan`` knows and the segments' sharding.
    ``sweep`` does it on a thread (``loop.Ahead``) while the start's programs are
    traced and compiled, and the first optimizer trains: XLA's compiler runs without
    Python's lock, so what was one after the other overlaps. The call that follows
    finds the program in JAX's caches (lowered and compiled for the same arguments)."""
    spec = plan.specs[o]

    def batched(x, *cols):
        return jax.ShapeDtypeStruct((plan.chunk, *cols, *x.shape), x.dtype,
                                    weak_type=x.weak_type, sharding=plan.sharding)

    carry = jax.tree.map(batched, plan.carry_shapes[o])
    hist = None
    if spec.histories:
        hist = jax.tree.map(lambda x: batched(x, plan.n_records + 1), plan.record_shapes)
    if spec.draws_batches:  # the keys' shapes (traced, not computed: start computes them)
        keys = functions.keys.trace(configs, base_seed).out_info
        configs = {**configs, KEYS: jax.ShapeDtypeStruct(keys.shape, keys.dtype,
                                                         sharding=plan.sharding)}
    k = min(plan.seg_records, plan.n_records)
    functions.fast.trace(carry, hist, configs, base_seed, inputs, np.int32(0), np.int32(1),
                         k).lower().compile()


@jit_fast(donate_argnums=0)  # (selects: the same bits)
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


def _info(plan: Plan, spec: Spec, at: Chunk, carry, status, done: int) -> SegmentInfo:
    m = at.hi - at.lo
    diverged_at, lowest = jax.device_get((carry.diverged_at, carry.summary.min))
    return SegmentInfo(spec.opt.name, at.index, plan.n_chunks, done * plan.record_every,
                       plan.steps, m, int((np.asarray(status)[:m] & 1).sum()),
                       int((diverged_at[:m] >= 0).sum()), float(np.min(lowest[:m])))


def _put(plan: Plan, tree):
    return jax.device_put(tree, plan.sharding) if plan.sharding else jax.device_put(tree)


def check_initial(plan: Plan, base_seed, inputs, skip=lambda c: False, start=None,
                  first_checks_itself: bool = True) -> None:
    """Refuses the plan if a configuration is not finite at its initial params (params,
    loss or gradient), looking at every chunk (but those ``skip(c)`` says have run)
    before any trains: init and one loss and gradient per configuration. (The first
    chunk to train checks itself at its start, before a step, so a sweep of one chunk
    does nothing more; not so where a resumed chunk trains first:
    ``first_checks_itself=False``.) ``start``: the first optimizer's compiled start, used where
    a chunk's trajectory buffers are small (it compiles nothing new), else a program
    of its own (~0.17 s to compile for a small MLP) that allocates none."""
    todo = [c for c in range(plan.n_chunks) if not skip(c)][int(first_checks_itself):]
    if not todo:
        return
    if start is not None and plan.chunk * (plan.n_records + 1) * sum(
            math.prod(x.shape) * x.dtype.itemsize
            for x in jax.tree.leaves(plan.record_shapes)) <= SMALL_START:
        def check(configs, base_seed, inputs):
            return start(configs, base_seed, inputs, plan.n_records + 1)[2]
    else:
        check = _initial_check(plan.specs[0], plan.sharding)
    pending, bad = [], []
    for i, c in enumerate(todo):  # one chunk checked while the next is dispatched
        lo, hi = c * plan.chunk, min((c + 1) * plan.chunk, plan.n)
        pending.append((lo, hi, check(chunk_configs(plan, lo, hi), base_seed, inputs)))
        if len(pending) > 1 or i == len(todo) - 1:
            for lo, hi, finite in pending:
                bad.extend(lo + np.flatnonzero(~np.asarray(finite)[: hi - lo]))
            pending = []
    _refuse_nonfinite(plan, np.asarray(bad, np.int64))


_CHECKS: dict = {}


def _initial_check(spec: Spec, sharding):
    """``jit(vmap)`` of whether one configuration's start is finite (what the start
    function of ``compiled`` reports, without the optimizer state, records or buffers)."""
    key = (spec.key, sharding)
    if key not in _CHECKS:
        def one(config, base_seed, inputs):
            bound = bind(spec, config, base_seed, inputs)
            params = spec.init(bound.config, bound.init_key)
            value, grad = jax.value_and_grad(bound.loss)(
                params, bound.batching.batch(bound.data_key, jnp.int32(0)))
            return engine.finite(engine.Carry(params, None, value, grad, jnp.int32(-1)))

        # (a test of finiteness)
        keep(_CHECKS, key, jit_fast(jax.vmap(one, in_axes=(0, None, None))))
    return _CHECKS[key]


def _check_initial(finite, plan: Plan, at: Chunk) -> None:
    ok = np.asarray(finite)[: at.hi - at.lo]
    _refuse_nonfinite(plan, at.lo + np.flatnonzero(~ok))


def _refuse_nonfinite(plan: Plan, bad: np.ndarray) -> None:
    """Refuses the grid rows ``bad`` (if any), naming a few of them."""
    if bad.size == 0:
        return
    examples = [{k: float(f"{v[i]:.6g}") for k, v in plan.flat.items()} for i in bad[:3]]
    raise ValueError(
        f"params, loss or gradient is not finite at the initial params for {bad.size} "
        f"configuration(s), e.g. {examples}; check init and loss_fn"
    )


