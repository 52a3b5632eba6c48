"""Weight initializers: ``initializer(key, shape, dtype) -> array``.

Each factory closes over its hyperparameters, like ``jax.nn.initializers``; the
scale may be a traced value, so an init-scale axis of a sweep compiles once.

>>> import jax
>>> w = uniform(0.5)(jax.random.key(0), (3, 2))
>>> bool((abs(w) <= 0.5).all())
True
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Initializer = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]


def _fans(shape: tuple) -> tuple[int, int]:
    # Weights are (fan_in, fan_out); a bias or scalar counts as fan_in = fan_out = 1.
    if len(shape) < 2:
        return 1, 1
    return shape[-2], shape[-1]


def zeros(key, shape, dtype=jnp.float32) -> jax.Array:
    del key
    return jnp.zeros(shape, dtype)


def constant(value: ArrayLike) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


def uniform(scale: ArrayLike = 1.0) -> Initializer:
    """U[-scale, scale]."""

    def init(key, shape, dtype=jnp.float32):
        return scale * jax.random.uniform(key, shape, dtype, -1.0, 1.0)

    return init


def normal(std: ArrayLike = 1.0) -> Initializer:
    """N(0, std^2)."""

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def xavier(gain: ArrayLike = 1.0) -> Initializer:
    """Glorot uniform: U[-a, a] with a = gain * sqrt(6 / (fan_in + fan_out))."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = _fans(shape)
        return uniform(gain * (6.0 / (fan_in + fan_out)) ** 0.5)(key, shape, dtype)

    return init


def he(gain: ArrayLike = 1.0) -> Initializer:
    """He normal: N(0, gain^2 * 2 / fan_in)."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, _ = _fans(shape)
        return normal(gain * (2.0 / fan_in) ** 0.5)(key, shape, dtype)

    return init


_BY_NAME = {"uniform": uniform, "normal": normal, "xavier": xavier, "he": he}


def by_name(name: str, scale: ArrayLike = 1.0) -> Initializer:
    """``by_name("uniform", 0.5)`` is ``uniform(0.5)``; for xavier/he the scale is a gain."""
    if name == "zeros":
        return zeros
    if name == "constant":
        return constant(scale)
    if name not in _BY_NAME:
        valid = ", ".join(["zeros", "constant", *_BY_NAME])
        raise ValueError(f"unknown initializer {name!r}; valid names: {valid}")
    return _BY_NAME[name](scale)
