"""Per-weight analysis of recorded trajectories, for one run; ``jax.vmap`` it over a sweep.

A trajectory is an array ``w_T`` of a weight at the recorded steps. Functions take
the trailing axis as time, so ``jax.vmap`` (or NumPy broadcasting through
``analyze``) applies them to every weight of every configuration at once.

>>> import jax.numpy as jnp
>>> w = jnp.array([0.1, 0.08, 0.07, 0.075, 0.09])
>>> bool(is_monotone(w)), int(first_turn(w)), int(turning_points(w))
(False, 2, 1)
"""

import jax
import jax.numpy as jnp
import numpy as np


def _moves(w_T: jax.Array, atol: float) -> jax.Array:
    """The sign of each recorded move, 0 where it is below ``atol`` (rounding)."""
    d = jnp.diff(w_T)
    return jnp.where(jnp.abs(d) > atol, jnp.sign(d), 0)


def _signs_so_far(s: jax.Array) -> jax.Array:
    """The sign of the last non-zero move up to each point (0 before the first)."""
    def carry(last, x):
        last = jnp.where(x != 0, x, last)
        return last, last
    return jax.lax.scan(carry, jnp.zeros((), s.dtype), s)[1]


def turning_points(w_T: jax.Array, atol: float = 0.0) -> jax.Array:
    """How many times the weight reverses direction (moves below ``atol`` ignored)."""
    s = _moves(w_T, atol)
    prev = jnp.concatenate([jnp.zeros(1, s.dtype), _signs_so_far(s)[:-1]])
    return jnp.sum((s != 0) & (prev != 0) & (s != prev))


def is_monotone(w_T: jax.Array, atol: float = 0.0) -> jax.Array:
    return turning_points(w_T, atol) == 0


def first_turn(w_T: jax.Array, atol: float = 0.0) -> jax.Array:
    """Index of the first record from which the weight moves the other way; -1 if never."""
    s = _moves(w_T, atol)
    prev = jnp.concatenate([jnp.zeros(1, s.dtype), _signs_so_far(s)[:-1]])
    return first_true((s != 0) & (prev != 0) & (s != prev))


def first_below(loss_T: jax.Array, threshold) -> jax.Array:
    """Index of the first record whose loss is below ``threshold``; -1 if never."""
    return first_true(loss_T < threshold)


def first_true(mask, axis: int = -1):
    """Index of the first True along ``axis``; -1 where there is none (NumPy or JAX).

    >>> import numpy as np
    >>> first_true(np.array([[False, True, True], [False, False, False]])).tolist()
    [1, -1]
    """
    xp = jnp if isinstance(mask, jax.Array) else np
    return xp.where(mask.any(axis), xp.argmax(mask, axis), -1)


def analyze(weights_xT, loss_xT, threshold, atol: float = 0.0) -> dict:
    """All of the above over any leading axes (e.g. a sweep's grid); returns NumPy.

    ``weights_xT`` is a pytree of arrays (..., T) (one leaf per weight), ``loss_xT`` is
    (..., T). Returns per-leaf ``monotone``, ``turns``, ``first_turn``, and ``first_below``.
    """
    def per_leaf(w):
        flat = jnp.reshape(w, (-1, w.shape[-1]))
        out = jax.vmap(lambda t: (is_monotone(t, atol), turning_points(t, atol),
                                  first_turn(t, atol)))(flat)
        return tuple(np.asarray(o).reshape(w.shape[:-1]) for o in out)

    leaves = jax.tree.map(per_leaf, weights_xT)
    loss_flat = jnp.reshape(loss_xT, (-1, loss_xT.shape[-1]))
    below = np.asarray(jax.vmap(first_below, (0, None))(loss_flat, threshold))
    pick = lambda i: jax.tree.map(lambda t: t[i], leaves,  # noqa: E731
                                  is_leaf=lambda x: isinstance(x, tuple))
    return {"monotone": pick(0), "turns": pick(1), "first_turn": pick(2),
            "first_below": below.reshape(loss_xT.shape[:-1])}
