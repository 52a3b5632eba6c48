"""Argument checks shared by ``train`` and ``sweep``: clear errors before any compile."""

import jax
import jax.numpy as jnp
import numpy as np


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_data(data, batch_size):
    if data is None:
        if batch_size is not None:
            raise ValueError("batch_size needs data=(x, y): mini-batches are drawn from data")
        return None, None
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data holds no arrays")
    leaves = [np.asarray(x) for x in leaves]
    if any(x.ndim == 0 for x in leaves):
        raise ValueError("every array in data needs a leading example axis")
    counts = {x.shape[0] for x in leaves}
    if len(counts) != 1:
        raise ValueError(f"arrays in data disagree on the number of examples: {sorted(counts)}")
    n = counts.pop()
    data = jax.tree.map(jnp.asarray, data)
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} examples in data")
    return data, batch_size
