"""The abstract trace of one configuration that checks shapes before anything compiles.

``shapes`` evaluates init, the loss, the first records and one step abstractly,
in one trace (``jax.make_jaxpr``: no compile, no FLOPs), so that a wrong shape,
dtype or metric is an error that names it, and finds the grid axes nothing uses
and the host callbacks the sweep calls.
"""

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import checks, engine
from bpjax.sweep import callbacks
from bpjax.sweep.compiled import Inputs, Spec, bind, keep, start_one


class Traced(NamedTuple):
    """What an abstract trace of one configuration tells (shapes, no values)."""

    carry: engine.Carry
    params: Any
    unused: set  # grid axes that reach neither init, the loss nor the optimizer
    metrics: dict  # metric name -> its value's shape
    records: Any  # what one configuration records at a record step (a mapping by name)
    callbacks: set  # the host callback primitives its start and one step call


_SHAPES: dict = {}


def shapes(spec: Spec, flat: Mapping, seed: int, inputs: Inputs):
    """Traces one configuration abstractly (no compile): catches shape errors early.

    Returns what it finds as ``Traced``; remembered for the same code and argument
    shapes (tracing costs milliseconds per sweep).
    """
    return remembered(_SHAPES, spec, inputs, lambda: _trace_one(spec, flat, seed, inputs))


def remembered(cache: dict, spec: Spec, inputs: Inputs, compute: Callable):
    """``compute()``, once per spec and argument shapes (``cache`` holds at most
    ``CACHE_SIZE`` of them): what an abstract trace finds depends on nothing else."""
    abstract = lambda x: (np.shape(x), str(getattr(x, "dtype", type(x))))  # noqa: E731
    key = (spec.key, jax.tree.structure(inputs), tuple(map(abstract, jax.tree.leaves(inputs))),
           jax.config.jax_enable_x64)
    if key not in cache:
        keep(cache, key, compute())
    return cache[key]


def _trace_one(spec: Spec, flat: Mapping, seed: int, inputs: Inputs):
    config = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in flat.items()}
    base_seed = np.uint32(seed)
    try:  # all in one trace: in three, init and the loss were traced five times
        closed, (found, stepped) = jax.make_jaxpr(partial(_probe, spec), return_shape=True)(
            config, base_seed, inputs)
    except Exception:  # noqa: BLE001 - traced again part by part: the error names its part
        closed = None
    if closed is None:
        params, value = _first_loss(spec, config, base_seed, inputs)
    else:
        params, value, carry, records = found
    _check_first(params, value)
    metrics = {name: _metric_shape(spec._replace(metrics=((name, fn),)), config, seed, inputs,
                                   params) for name, fn in spec.metrics}  # each alone: named
    if closed is None:
        carry, records = jax.eval_shape(partial(start_one, spec), config, base_seed, inputs)
        closed = jax.make_jaxpr(partial(_first_step, spec))(config, base_seed, inputs)
        unused = checks.unused_in(closed, config)
    else:  # what the carry after one step needs
        n = len(jax.tree.leaves(stepped))
        unused = checks.unused_in(closed, config, [False] * (len(closed.out_avals) - n)
                                  + [True] * n)
    return Traced(carry, params, unused, metrics, records, callbacks.found(closed))


def _probe(spec: Spec, config, base_seed, inputs: Inputs):
    """``((params, first loss, carry, records at step 0), carry after one step)`` of
    one configuration: everything the checks look at."""
    bound = bind(spec, config, base_seed, inputs)
    params, value = _params_and_loss(spec, bound)
    carry, records = start_one(spec, config, base_seed, inputs, bound, params=params)
    return (params, value, carry, records), _stepped(carry, bound)


def _params_and_loss(spec: Spec, bound):
    params = spec.init(bound.config, bound.init_key)
    return params, bound.loss(params, bound.batching.batch(bound.data_key, jnp.int32(0)))


def _stepped(carry: engine.Carry, bound) -> engine.Carry:
    return engine.advance(carry, jnp.int32(0), bound.tx, bound.loss, bound.batching,
                          bound.data_key)[0]


def _first_loss(spec: Spec, config, base_seed, inputs: Inputs):
    """A configuration's params and first loss, traced; a failure names init, the loss
    and the optimizer."""
    def one(config, base_seed, inputs):
        return _params_and_loss(spec, bind(spec, config, base_seed, inputs))

    try:
        return jax.eval_shape(one, config, base_seed, inputs)
    except Exception as e:  # noqa: BLE001 - report the user's error with context
        data = inputs.data
        raise ValueError(
            f"init, loss_fn or optimizer {spec.opt.name!r} failed on one configuration "
            f"(data shapes {jax.tree.map(np.shape, data) if data is not None else None}): "
            f"{type(e).__name__}: {e}"
        ) from e


def _check_first(params, value) -> None:
    for leaf in jax.tree.leaves(params):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(f"init must return float params, got a leaf of dtype {leaf.dtype}")
    if not hasattr(value, "shape") or value.shape != ():
        shape = getattr(value, "shape", value)
        raise ValueError(f"loss_fn must return a scalar, got shape {shape}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"loss_fn must return a float, got dtype {value.dtype}")


def _first_step(spec: Spec, config, base_seed, inputs: Inputs) -> engine.Carry:
    """A configuration's carry after one step: what every grid axis must reach."""
    bound = bind(spec, config, base_seed, inputs)
    return _stepped(start_one(spec, config, base_seed, inputs, bound)[0], bound)


def _metric_shape(spec: Spec, config, seed, inputs: Inputs, params) -> jax.ShapeDtypeStruct:
    (name, fn), = spec.metrics

    def value(config, base_seed, inputs, params):
        bound = bind(spec, config, base_seed, inputs)
        return fn(params, lambda p: bound.loss(p, inputs.data))

    try:
        out = jax.eval_shape(value, config, np.uint32(seed), inputs, params)
    except Exception as e:  # noqa: BLE001 - the user's metric, named
        raise ValueError(f"metric {name!r} failed as metric(params, loss): "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"metric {name!r} must return an array (a scalar or a fixed "
                         f"shape), got {type(out).__name__}: {out}")
    return out
