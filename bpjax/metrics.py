"""Quantities a sweep evaluates at every record step: ``sweep(..., metrics={...})``.

A metric is a pure function ``metric(params, loss) -> array`` of one configuration's
params and its bound full-batch loss ``loss(params) -> scalar``; the sweep vmaps it
and returns ``res.metrics[name]`` with dims ``res.dims_of("metrics/" + name)``
(the grid's, then ``step``, then the metric's own shape).

>>> import jax.numpy as jnp
>>> f = lambda p: 0.5 * (3.0 * p["x"] ** 2 + p["y"] ** 2)
>>> p = {"x": jnp.float32(1.0), "y": jnp.float32(2.0)}
>>> round(float(sharpness()(p, f)), 4), float(grad_norm(p, f)), float(param_norm(p, f))
(3.0, 3.605551242828369, 2.2360680103302)
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Metric = Callable[[Any, Callable[[Any], jax.Array]], Any]


def sharpness(iters: int = 20) -> Metric:
    """The Hessian's eigenvalue of largest magnitude (the sharpness, where it is the
    top one), by ``iters`` steps of power iteration on Hessian-vector products
    (forward over reverse mode: one HVP costs about two gradients), from a fixed
    random direction. The error shrinks like ``(|lambda_2| / |lambda_1|)^(2 iters)``.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"sharpness(iters=) must be a positive integer, got {iters!r}")

    def metric(params, loss):
        flat, unravel = ravel_pytree(params)
        grad = jax.grad(lambda f: loss(unravel(f)))

        def hvp(v):
            return jax.jvp(grad, (flat,), (v,))[1]

        def unit(v):
            return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)

        v = unit(jax.random.normal(jax.random.key(0), flat.shape, flat.dtype))
        v, _ = jax.lax.scan(lambda v, _: (unit(hvp(v)), None), v, None, length=iters)
        return jnp.vdot(v, hvp(v))

    return metric


def grad_norm(params, loss) -> jax.Array:
    """The global (Euclidean) norm of the full-batch gradient."""
    return optax.global_norm(jax.grad(loss)(params))


def param_norm(params, loss) -> jax.Array:
    """The global (Euclidean) norm of the params."""
    del loss
    return optax.global_norm(params)
