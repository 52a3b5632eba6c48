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

from collections.abc import Callable, Mapping
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


def grad_curvature(params, loss) -> jax.Array:
    """The loss's curvature along the gradient, g.H g / g.g: what a gradient step of
    size lr sees, so lr x this > 2 overshoots along the step's own line even where the
    sharpness says nothing (seed 002's tangent). One Hessian-vector product; 0 where
    the gradient is 0."""
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda f: loss(unravel(f)))
    g, hg = jax.jvp(grad, (flat,), (grad(flat),))
    gg = jnp.vdot(g, g)
    return jnp.where(gg > 0, jnp.vdot(g, hg) / jnp.where(gg > 0, gg, 1), 0)


def grad_norm(params, loss) -> jax.Array:
    """The global (Euclidean) norm of the full-batch gradient."""
    return optax.global_norm(jax.grad(loss)(params))


def param_norm(params, loss) -> jax.Array:
    """The global (Euclidean) norm of the params."""
    del loss
    return optax.global_norm(params)


def check(metrics) -> tuple[tuple[str, Callable], ...]:
    """``metrics`` (a dict name -> metric or built-in name, or a list of built-in
    names) as ``(name, metric)`` pairs sorted by name."""
    if metrics is None:
        return ()
    if isinstance(metrics, str) or not isinstance(metrics, (Mapping, list, tuple)):
        raise TypeError(f"metrics must be a dict name -> metric(params, loss), or a list of "
                        f"built-in names ({', '.join(BUILTIN)}), got {metrics!r}")
    if not isinstance(metrics, Mapping):
        metrics = {name: name for name in metrics}
    pairs = []
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"metric names must be Python identifiers, got {name!r}")
        if isinstance(fn, str):
            if fn not in BUILTIN:
                raise ValueError(f"unknown metric {fn!r}; built-in metrics: "
                                 f"{', '.join(BUILTIN)}, or pass a callable "
                                 "metric(params, loss)")
            fn = BUILTIN[fn]
        if not callable(fn):
            raise TypeError(f"metric {name!r} must be callable as metric(params, loss), "
                            f"got {fn!r}")
        pairs.append((name, fn))
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


BUILTIN: dict[str, Metric] = {  # what sweep(metrics=) accepts by name
    "grad_curvature": grad_curvature,
    "grad_norm": grad_norm,
    "param_norm": param_norm,
    "sharpness": sharpness(),
}
