"""Second-order steps: Newton and Gauss-Newton, as pure functions of one configuration.

They need more than a gradient (the Hessian, or the Jacobian of the residuals),
so they are not optax transformations; ``run`` scans a step function and
records the loss, and ``jax.vmap`` runs a grid of starts. Solved with
``jnp.linalg.solve`` on the flattened params: fine for the small nets they are
compared on here (w up to a few hundred).

>>> import jax.numpy as jnp
>>> q = lambda p: 0.5 * p["x"] @ jnp.array([[3.0, 1.0], [1.0, 2.0]]) @ p["x"] - p["x"].sum()
>>> losses = run(lambda p: newton_step(q, p), q, {"x": jnp.array([5.0, -7.0])}, 1)
>>> bool(abs(losses[1] - (-0.3)) < 1e-6)  # the minimum of the quadratic, in one step
True
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bpjax import engine


def newton_step(loss, params, damping: float = 0.0):
    """params - (H + damping I)^-1 g: exact on a quadratic, blind to the Hessian's sign."""
    flat, unravel = ravel_pytree(params)
    f = lambda v: loss(unravel(v))  # noqa: E731
    h = jax.hessian(f)(flat) + damping * jnp.eye(flat.size, dtype=flat.dtype)
    return unravel(flat - jnp.linalg.solve(h, jax.grad(f)(flat)))


def gauss_newton_step(residuals, params, damping: float = 1e-6):
    """For loss = |r(params)|^2 / 2: params - (J^T J + damping I)^-1 J^T r (Levenberg-
    Marquardt with a fixed damping; J^T J is singular when residuals < params)."""
    flat, unravel = ravel_pytree(params)
    r_of = lambda v: jnp.ravel(residuals(unravel(v)))  # noqa: E731
    r, jac = r_of(flat), jax.jacfwd(r_of)(flat)
    a = jac.T @ jac + damping * jnp.eye(flat.size, dtype=flat.dtype)
    return unravel(flat - jnp.linalg.solve(a, jac.T @ r))


def run(step, loss, params, steps: int):
    """Applies ``step`` ``steps`` times; returns ``loss`` at steps 0..steps. A step
    that produces non-finite params is not taken (the run stays where it was)."""

    def body(p, _):
        q = step(p)
        ok = engine.all_finite(q)
        q = jax.tree.map(lambda a, b: jnp.where(ok, a, b), q, p)  # a failed step is not taken
        return q, loss(q)

    _, out = jax.lax.scan(body, params, None, steps)
    return jnp.concatenate([jnp.asarray(loss(params))[None], out])
