"""Per-example losses (the caller reduces), and ``supervised`` to make a batch loss.

>>> import jax.numpy as jnp
>>> squared_error(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])).tolist()
5.0
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
    """sum over outputs of (pred - target)^2, for one example."""
    return jnp.sum((pred - target) ** 2, axis=-1)


def half_squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
    return 0.5 * squared_error(pred, target)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label] for integer labels."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def softmax_squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The seed-004 setup: softmax outputs against one-hot targets, squared error."""
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    return squared_error(jax.nn.softmax(logits, axis=-1), onehot)


PER_EXAMPLE = {
    "mse": squared_error,
    "half_mse": half_squared_error,
    "cross_entropy": softmax_cross_entropy,
    "softmax_mse": softmax_squared_error,
}


def supervised(apply: Callable, per_example: Callable | str = "mse") -> Callable:
    """``loss(params, (x, y)) = mean_i per_example(apply(params, x_i), y_i)``."""
    if isinstance(per_example, str):
        if per_example not in PER_EXAMPLE:
            raise ValueError(f"unknown loss {per_example!r}; valid: {', '.join(PER_EXAMPLE)}")
        per_example = PER_EXAMPLE[per_example]

    def loss(params, batch):
        x, y = batch
        return jnp.mean(per_example(jax.vmap(apply, (None, 0))(params, x), y))

    return loss
