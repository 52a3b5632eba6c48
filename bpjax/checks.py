"""Argument checks shared by ``train`` and ``sweep``: clear errors before any compile."""

from collections.abc import Callable, Mapping
from typing import Any

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


def unused_inputs(fn: Callable, config: Mapping[str, Any], *args) -> set[str]:
    """The entries of ``config`` that no output of ``fn(config, *args)`` depends on.

    ``fn`` is traced abstractly (``jax.make_jaxpr``; ``config`` and ``args`` may hold
    ``jax.ShapeDtypeStruct``s, nothing runs or compiles) and jax's dead-code
    elimination marks the inputs no output needs. A sweep uses it to warn about a
    grid axis that changes nothing. A primitive without a DCE rule counts all its
    inputs as used, so an answer may miss an unused entry but never names a used
    one. The DCE is private jax API (``jax._src.interpreters.partial_eval``):
    where it is unavailable this returns an empty set (no warning, never a wrong one).

    >>> import jax.numpy as jnp
    >>> S = jax.ShapeDtypeStruct((), jnp.float32)
    >>> sorted(unused_inputs(lambda c, x: c["a"] * x, {"a": S, "b": S}, S))
    ['b']
    """
    return unused_in(jax.make_jaxpr(fn)(config, *args), config)


def unused_in(closed, config: Mapping[str, Any], outputs=None) -> set[str]:
    """``unused_inputs`` of a function already traced to ``closed`` (a ``ClosedJaxpr``
    whose first argument is ``config``): the entries of ``config`` that none of its
    outputs needs, or none of those ``outputs`` marks (a bool per output leaf)."""
    try:
        from jax._src.interpreters.partial_eval import dce_jaxpr
    except ImportError:
        return set()
    outputs = [True] * len(closed.jaxpr.outvars) if outputs is None else list(outputs)
    try:
        _, used = dce_jaxpr(closed.jaxpr, outputs)
    except Exception:  # noqa: BLE001 - private API: a changed signature means no answer
        return set()
    paths, _ = jax.tree_util.tree_flatten_with_path(config)
    names = [path[0].key for path, _ in paths]  # the invars of config come first
    live = {n for n, u in zip(names, used) if u}
    return set(config) - live
