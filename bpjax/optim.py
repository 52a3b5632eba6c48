"""Optimizers whose every hyperparameter may be a traced value.

Each factory returns a plain optax ``GradientTransformation``. Built inside a
vmapped function from traced hyperparameters (``optax.sgd(lr)`` only closes
over ``lr``), a whole grid of learning rates shares one compiled program.
This is the unwrapped optax optimizer, not ``optax.inject_hyperparams``, so it
matches ``optax.sgd`` / ``optax.adam`` to the last bit (see tests/test_optim.py).

>>> import jax.numpy as jnp
>>> tx = adam(1e-3)
>>> state = tx.init({"w": jnp.zeros(2)})
"""

import inspect
from collections.abc import Callable, Mapping
from typing import NamedTuple

import optax
from jax.typing import ArrayLike


def sgd(lr: ArrayLike) -> optax.GradientTransformation:
    return optax.sgd(lr)


def momentum(lr: ArrayLike, momentum: ArrayLike = 0.9) -> optax.GradientTransformation:
    """Heavy ball: v <- momentum * v + g; w <- w - lr * v (optax.sgd with momentum)."""
    return optax.sgd(lr, momentum=momentum)


def nesterov(lr: ArrayLike, momentum: ArrayLike = 0.9) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=momentum, nesterov=True)


def adam(
    lr: ArrayLike, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    return optax.adam(lr, b1=b1, b2=b2, eps=eps)


BUILTIN: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
}

# Axis names that are handed to an optimizer factory when it takes them, and the
# open interval (lo, hi) each must lie in for the built-ins.
HYPERPARAMS: dict[str, tuple[float, float]] = {
    "lr": (0.0, float("inf")),
    "momentum": (-1e-300, 1.0),  # [0, 1)
    "b1": (-1e-300, 1.0),
    "b2": (-1e-300, 1.0),
    "eps": (0.0, float("inf")),
}


class Optimizer(NamedTuple):
    """A resolved optimizer: a factory and the hyperparameter names it takes."""

    name: str
    factory: Callable[..., optax.GradientTransformation]
    takes: tuple[str, ...]
    builtin: bool
    source: object  # what the user passed: the key under which compiled code is cached


def _takes(factory: Callable) -> tuple[str, ...]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(n for n, p in sig.parameters.items() if p.kind in kinds and n in HYPERPARAMS)


def resolve_one(spec, name: str | None = None) -> Optimizer:
    if isinstance(spec, str):
        if spec not in BUILTIN:
            raise ValueError(
                f"unknown optimizer {spec!r}; valid names: {', '.join(BUILTIN)}, "
                "or a callable returning an optax.GradientTransformation"
            )
        return Optimizer(spec, BUILTIN[spec], _takes(BUILTIN[spec]), True, spec)
    if isinstance(spec, optax.GradientTransformation):
        return Optimizer(name or "custom", lambda: spec, (), False, spec)
    if callable(spec):
        label = name or getattr(spec, "__name__", "custom")
        return Optimizer(label, spec, _takes(spec), False, spec)
    raise TypeError(
        f"optimizer must be a name ({', '.join(BUILTIN)}), an optax.GradientTransformation, "
        f"a callable taking hyperparameters by keyword, or a list/dict of those; got {spec!r}"
    )


def resolve(spec) -> tuple[list[Optimizer], bool]:
    """Returns the optimizers and whether the caller asked for several (an axis)."""
    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError("optimizer dict is empty")
        return [resolve_one(v, str(k)) for k, v in spec.items()], True
    if isinstance(spec, (list, tuple)) and not isinstance(spec, optax.GradientTransformation):
        if not spec:
            raise ValueError("optimizer list is empty")
        opts = [resolve_one(s) for s in spec]
        names = [o.name for o in opts]
        if len(set(names)) != len(names):
            raise ValueError(f"optimizer names must be distinct, got {names}; pass a dict")
        return opts, True
    return [resolve_one(spec)], False


def required(opt: Optimizer) -> tuple[str, ...]:
    """Hyperparameters the factory cannot do without (no default value)."""
    try:
        sig = inspect.signature(opt.factory)
    except (TypeError, ValueError):
        return ()
    empty = inspect.Parameter.empty
    return tuple(n for n in opt.takes if sig.parameters[n].default is empty)


def check_range(opt: Optimizer, name: str, values) -> None:
    """Built-in optimizers reject hyperparameters outside their valid range."""
    if not opt.builtin or name not in HYPERPARAMS:
        return
    lo, hi = HYPERPARAMS[name]
    bad = [float(v) for v in values if not lo < float(v) < hi]
    if bad:
        valid = {"lr": "> 0", "eps": "> 0"}.get(name, "in [0, 1)")
        raise ValueError(f"optimizer {opt.name!r}: {name} must be {valid}, got {bad[:5]}")
