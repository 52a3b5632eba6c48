"""Diagnostics of a run, written for one configuration; ``jax.vmap`` them over a grid.

>>> import jax.numpy as jnp
>>> float(softmax_saturation(jnp.array([[10.0, 0.0], [0.1, 0.0]])))
0.5
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bpjax import nets


def dead_units(params, x: jax.Array, activation="relu") -> jax.Array:
    """Per hidden layer, the fraction of units whose pre-activation is <= 0 on every
    example of ``x`` (n, d): a dead ReLU passes no signal and gets no gradient."""
    zs = jax.vmap(lambda xi: nets.preactivations(params, xi, activation))(x)
    return jnp.stack([jnp.mean(jnp.all(z <= 0, axis=0)) for z in zs[:-1]])


def softmax_saturation(logits: jax.Array, threshold: float = 0.99) -> jax.Array:
    """Fraction of examples whose largest softmax probability exceeds ``threshold``:
    there the softmax Jacobian, and so the gradient through it, nearly vanishes."""
    return jnp.mean(jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1) > threshold)


def layer_grad_norms(loss, params, batch) -> jax.Array:
    """Euclidean norm of the gradient of each layer (weights and bias together)."""
    grads = jax.grad(loss)(params, batch)
    return jnp.stack([
        jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(layer)))
        for layer in grads["layers"]
    ])


def plateau_fraction(loss_curve, rtol: float = 1e-3) -> np.ndarray:
    """Fraction of recorded intervals in which the loss changed by less than ``rtol``
    of its value (works on the trailing axis of a grid of curves)."""
    loss_curve = np.asarray(loss_curve)
    change = np.abs(np.diff(loss_curve, axis=-1))
    return np.mean(change < rtol * np.abs(loss_curve[..., :-1]), axis=-1)


def hvp(loss, params, v):
    """Hessian-vector product by forward-over-reverse differentiation."""
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def sharpness(loss, params, k: int = 1, iters: int = 100, key=None) -> jax.Array:
    """The ``k`` largest-magnitude Hessian eigenvalues of ``loss`` at ``params`` (sorted,
    signed), by subspace iteration on Hessian-vector products; no Hessian is formed.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda p: 3.0 * p["a"] ** 2 + 0.5 * p["b"] ** 2   # Hessian diag(6, 1)
      >>> [round(float(v), 4) for v in sharpness(f, {"a": 1.0, "b": 1.0}, k=2)]
      [6.0, 1.0]
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    key = jax.random.key(0) if key is None else key
    hv = jax.vmap(lambda v: ravel_pytree(hvp(loss, params, unravel(v)))[0], in_axes=1,
                  out_axes=1)
    q, _ = jnp.linalg.qr(jax.random.normal(key, (n, k), flat.dtype))

    def body(q, _):
        q, _ = jnp.linalg.qr(hv(q))
        return q, None

    q, _ = jax.lax.scan(body, q, None, length=iters)
    # Rayleigh-Ritz on the converged subspace gives the eigenvalues with their signs.
    small = q.T @ hv(q)
    values = jnp.linalg.eigvalsh((small + small.T) / 2)
    return values[jnp.argsort(-jnp.abs(values))]
