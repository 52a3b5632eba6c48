"""``train``: one run, one compiled ``lax.scan``; the same step ``sweep`` vmaps."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax import engine, recorders
from bpjax.checks import check_data, positive_int
from bpjax.compilation_cache import jit, jit_fast
from bpjax.sweep.plan import examples_per_step, fast_compile_pays, size


class Run(NamedTuple):
    """One run: records at ``steps`` = 0, k, ..., n (loss of the params at that step)."""

    final_params: Any
    loss: np.ndarray  # (records,)
    params: Any  # pytree, leaves (records, ...)
    diverged_at: int  # first step whose params/loss/grad were not finite; -1 if never
    steps: np.ndarray


def train(
    loss_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    record_every: int = 1,
    data=None,
    batch_size: int | None = None,
    key: jax.Array | None = None,
) -> Run:
    """Trains ``params`` for ``steps`` steps of ``optimizer`` on ``loss_fn``.

    ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``data`` is given
    (mini-batches of ``batch_size`` shuffled with ``key`` when it is set).
    ``loss_fn`` and ``optimizer`` are compiled in, known by identity: passing a new
    function or a new optax object (``optax.sgd(lr)`` in a loop over ``lr``) traces
    and lowers again, and compiles unless the persistent cache holds that program.
    For a grid of learning rates use ``bpjax.sweep``, which traces them as data;
    reuse the same objects to call ``train`` again cheaply.

    Example:
      >>> import bpjax
      >>> run = bpjax.train(lambda p: (p["x"] - 3.0) ** 2, {"x": 0.0},
      ...                   bpjax.optim.sgd(0.25), steps=4, record_every=2)
      >>> run.loss.tolist(), float(run.final_params["x"])
      ([9.0, 0.5625, 0.03515625], 2.8125)
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation, e.g. bpjax.optim.sgd(0.1) "
            f"or optax.adam(1e-3); got {optimizer!r}"
        )
    steps = positive_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    if steps % record_every:
        raise ValueError(f"record_every={record_every} must divide steps={steps}")
    data, batch_size = check_data(data, batch_size)
    params = jax.tree.map(_float, params)
    if data is None:
        def loss(p, batch):
            del batch
            return loss_fn(p)
    else:
        loss = loss_fn
    batching = engine.Batching(None, batch_size)
    value = jax.eval_shape(loss, params, batching._replace(data=data).batch(
        jax.random.key(0), jnp.int32(0)))
    if getattr(value, "shape", None) != ():
        shape = getattr(value, "shape", value)
        raise ValueError(f"loss_fn must return a scalar, got shape {shape}")
    key = jax.random.key(0) if key is None else key
    fast = fast_compile_pays(1, steps, size(params), examples_per_step(data, batch_size))
    run = _run_fast if fast else _run  # as a sweep of one run would
    final, rec_loss, rec_params, diverged_at = run(
        loss, optimizer, steps // record_every, record_every, batch_size, params, data, key)
    return Run(
        final_params=jax.tree.map(np.asarray, final),
        loss=np.asarray(rec_loss),
        params=jax.tree.map(np.asarray, rec_params),
        diverged_at=int(diverged_at),
        steps=np.arange(0, steps + 1, record_every),
    )


def _float(x) -> jax.Array:
    """A float leaf keeps its dtype; anything else becomes JAX's default float
    (float32, or float64 under ``jax_enable_x64``)."""
    x = jnp.asarray(x)
    return jnp.asarray(x, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else float)


def _run_one(loss, tx, n_records, record_every, batch_size, params, data, key):
    batching = engine.Batching(data, batch_size)
    kept = {"loss": recorders.loss(), "params": recorders.params()}
    carry = engine.init_carry(params, tx, loss, batching, key, kept)
    first = engine.record(carry, 0, kept, loss, batching)[1]
    carry, records, _ = engine.run_segment(
        carry, jnp.int32(0), n_records, record_every, tx, loss, batching, key, kept)
    records = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, records)
    return carry.params, records["loss"], records["params"], carry.diverged_at


# Compiled like a sweep of one run: by XLA's faster-compiling emitters where they are
# expected to cost little run time (see ``Options.fast_compile``).
_run = jit(_run_one, static_argnums=(0, 1, 2, 3, 4))
_run_fast = jit_fast(_run_one, static_argnums=(0, 1, 2, 3, 4))
