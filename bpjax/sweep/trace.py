"""The abstract trace of one configuration that checks shapes before anything compiles.

``shapes`` evaluates init, the loss, the first records and one step abstractly
(``jax.eval_shape``: no compile, no FLOPs), so that a wrong shape, dtype or metric
is an error that names it, and finds the grid axes nothing uses.
"""

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import checks, engine
from bpjax.sweep.compiled import CACHE_SIZE, Inputs, Spec, bind, start_one


class Traced(NamedTuple):
    """What an abstract trace of one configuration tells (shapes, no values)."""

    carry: engine.Carry
    params: Any
    unused: set  # grid axes that reach neither init, the loss nor the optimizer
    metrics: dict  # metric name -> its value's shape
    records: Any  # what one configuration records at a record step (a mapping by name)


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
        if len(cache) >= CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = compute()
    return cache[key]


def _trace_one(spec: Spec, flat: Mapping, seed: int, inputs: Inputs):
    config = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in flat.items()}

    def one(config, base_seed, inputs):
        bound = bind(spec, config, base_seed, inputs)
        params = spec.init(bound.config, bound.init_key)
        return params, bound.loss(params, bound.batching.batch(bound.data_key, jnp.int32(0)))

    try:
        params, value = jax.eval_shape(one, config, np.uint32(seed), inputs)
    except Exception as e:  # noqa: BLE001 - report the user's error with context
        data = inputs.data
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
    metrics = {name: _metric_shape(spec._replace(metrics=((name, fn),)), config, seed, inputs,
                                   params) for name, fn in spec.metrics}  # each alone: named
    carry, records = jax.eval_shape(partial(start_one, spec), config, np.uint32(seed), inputs)
    unused = checks.unused_inputs(partial(_first_step, spec), config, np.uint32(seed), inputs)
    return Traced(carry, params, unused, metrics, records)


def _first_step(spec: Spec, config, base_seed, inputs: Inputs) -> engine.Carry:
    """A configuration's carry after one step: what every grid axis must reach."""
    bound = bind(spec, config, base_seed, inputs)
    carry = start_one(spec, config, base_seed, inputs, bound)[0]
    return engine.advance(carry, jnp.int32(0), bound.tx, bound.loss, bound.batching,
                          bound.data_key)[0]


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
