"""Optimizers whose every hyperparameter may be a traced value.

Each factory returns a plain optax ``GradientTransformation``. Built inside a
vmapped function from traced hyperparameters (``optax.sgd(lr)`` only closes
over ``lr``), a whole grid of learning rates shares one compiled program.
This is the unwrapped optax optimizer, not ``optax.inject_hyperparams``, so it
matches ``optax.sgd`` / ``optax.adam`` to the last bit (see tests/test_optim.py and
tests/test_optim_factories.py).

A factory gets, by keyword, the grid axis named like each of its parameters
(``lr`` and ``learning_rate`` stand for each other: ``ALIASES``), the whole
configuration if it has a ``config`` parameter, and every axis if it has
``**kwargs``. ``hyperparams`` builds those keyword arguments for one
configuration; ``check_grid`` checks a grid against the optimizers before any
compile; ``update`` passes the loss value and function to the transformations
that take them (``optax.lbfgs``, ``optax.polyak_sgd``, ``reduce_on_plateau``).

>>> import jax.numpy as jnp
>>> tx = adam(1e-3)
>>> state = tx.init({"w": jnp.zeros(2)})
>>> opt = resolve_one(lambda learning_rate, wd: optax.adamw(learning_rate, weight_decay=wd),
...                   "adamw")
>>> check_grid([opt], {"lr": [0.1, 0.01], "wd": [0.0, 1e-4]})
>>> sorted(hyperparams(opt, {"lr": 0.1, "wd": 0.0, "seed": 0}))
['learning_rate', 'wd']
"""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
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


def rmsprop(lr: ArrayLike, decay: ArrayLike = 0.9, eps: ArrayLike = 1e-8
            ) -> optax.GradientTransformation:
    return optax.rmsprop(lr, decay=decay, eps=eps)


BUILTIN: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
    "rmsprop": rmsprop,
}

# Axis names that must reach some optimizer (an axis so named that none takes is an
# error: a typo or the wrong optimizer), and the open interval (lo, hi) each must lie
# in for the built-ins.
HYPERPARAMS: dict[str, tuple[float, float]] = {
    "lr": (0.0, float("inf")),
    "momentum": (-1e-300, 1.0),  # [0, 1)
    "b1": (-1e-300, 1.0),
    "b2": (-1e-300, 1.0),
    "eps": (0.0, float("inf")),
}

# Two names for one hyperparameter: a factory parameter named one of them gets the
# grid axis named the other when the grid has no axis of its own name (bpjax's
# built-ins say ``lr``, optax's factories ``learning_rate``).
ALIASES: dict[str, str] = {"lr": "learning_rate", "learning_rate": "lr"}


class Optimizer(NamedTuple):
    """A resolved optimizer: a factory and the names it takes."""

    name: str
    factory: Callable[..., optax.GradientTransformation]
    takes: tuple[str, ...]  # every named parameter of the factory but ``config``
    builtin: bool
    source: object  # what the user passed: the key under which compiled code is cached
    takes_config: bool = False  # a ``config`` parameter: gets the whole configuration
    takes_all: bool = False  # ``**kwargs``: gets every grid axis


def _signature(factory: Callable) -> tuple[tuple[str, ...], bool, bool]:
    """(named parameters but ``config``, has ``config``, has ``**kwargs``)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return (), False, False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [n for n, p in sig.parameters.items() if p.kind in kinds]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return tuple(n for n in named if n != "config"), "config" in named, var_kw


def _optimizer(name: str, factory: Callable, builtin: bool, source) -> Optimizer:
    takes, takes_config, takes_all = _signature(factory)
    return Optimizer(name, factory, takes, builtin, source, takes_config, takes_all)


def resolve_one(spec, name: str | None = None) -> Optimizer:
    if isinstance(spec, str):
        if spec not in BUILTIN:
            raise ValueError(
                f"unknown optimizer {spec!r}; valid names: {', '.join(BUILTIN)}, "
                "or a callable returning an optax.GradientTransformation"
            )
        return _optimizer(spec, BUILTIN[spec], True, spec)
    if isinstance(spec, optax.GradientTransformation):
        return Optimizer(name or "custom", lambda: spec, (), False, spec)
    if callable(spec):
        return _optimizer(name or getattr(spec, "__name__", "custom"), spec, False, spec)
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
    """Parameters the factory cannot do without (no default value)."""
    try:
        sig = inspect.signature(opt.factory)
    except (TypeError, ValueError):
        return ()
    empty = inspect.Parameter.empty
    return tuple(n for n in opt.takes if sig.parameters[n].default is empty)


def _axis_for(opt: Optimizer, param: str, axes) -> str | None:
    """The axis of ``axes`` that feeds the factory's ``param``: its own name, else its
    alias (unless the factory names the alias too), else None."""
    alias = ALIASES.get(param)
    if alias is None or alias in opt.takes or alias not in axes:
        return param if param in axes else None
    if param in axes:
        raise ValueError(
            f"optimizer {opt.name!r} takes {param!r}, and the grid has both {param!r} and "
            f"{alias!r} axes, two names for one hyperparameter: keep one"
        )
    return alias


def _check_required(opt: Optimizer, axes) -> None:
    missing = [n for n in required(opt) if _axis_for(opt, n, axes) is None]
    if not missing:
        return
    each = "it" if len(missing) == 1 else "each"
    example = ", ".join(f"{n}=[...]" for n in missing)
    aliases = "".join(f" ({ALIASES[n]!r} also works)" for n in missing if n in ALIASES)
    raise ValueError(
        f"optimizer {opt.name!r} needs {missing}: add a grid axis for {each}, e.g. "
        f"Grid({example}){aliases}; the grid's axes: {', '.join(axes) or 'none'}"
    )


def hyperparams(opt: Optimizer, config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``opt.factory`` for one configuration.

    Args:
      opt: a resolved optimizer.
      config: this configuration's value of each grid axis (tracers in a sweep).

    Returns:
      ``{param: config[axis]}`` for each factory parameter that an axis (or its
      alias) provides; with ``**kwargs``, every other axis too; with ``config``,
      ``config=config``.

    >>> opt = resolve_one("momentum")
    >>> hyperparams(opt, {"lr": 0.1, "x0": 2.0})
    {'lr': 0.1}
    >>> tx = opt.factory(**hyperparams(opt, {"lr": 0.1, "x0": 2.0}))
    """
    _check_required(opt, config)
    kwargs = dict(config) if opt.takes_all else {}
    for param in opt.takes:
        axis = _axis_for(opt, param, config)
        if axis is not None:
            kwargs.pop(axis, None)  # under **kwargs an alias is passed once, as ``param``
            kwargs[param] = config[axis]
    if opt.takes_config:
        kwargs["config"] = config
    return kwargs


def _receives(opt: Optimizer, axis: str, axes) -> bool:
    return opt.takes_all or opt.takes_config or any(
        _axis_for(opt, p, axes) == axis for p in opt.takes)


def check_grid(opts: Iterable[Optimizer], axes: Iterable[str] | Mapping[str, Any]) -> None:
    """Checks grid axes against the optimizers; raises ValueError, compiles nothing.

    Errors: a factory parameter without a default that no axis (nor its alias)
    provides; an axis and its alias both present for a factory that takes one; an
    axis named like a hyperparameter (``HYPERPARAMS``, or an alias of one) that no
    optimizer takes. Given ``axes`` as a mapping of axis -> values, the built-ins'
    hyperparameters are also range-checked (``check_range``).

    >>> check_grid([resolve_one("sgd")], ["x0"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: optimizer 'sgd' needs ['lr']: add a grid axis for it, e.g. Grid(lr=[...]) ...
    """
    opts = list(opts)
    names = list(axes)
    for o in opts:
        for p in o.takes:
            _axis_for(o, p, names)  # raises on an axis and its alias both present
    for axis in names:
        hyper = axis in HYPERPARAMS or ALIASES.get(axis) in HYPERPARAMS
        if hyper and not any(_receives(o, axis, names) for o in opts):
            takes = {o.name: list(o.takes) + ["config"] * o.takes_config
                     + ["**kwargs"] * o.takes_all for o in opts}
            raise ValueError(
                f"grid axis {axis!r} is an optimizer hyperparameter, but no optimizer takes it "
                f"(they take: {takes}); remove the axis or choose an optimizer that uses it"
            )
    for o in opts:
        _check_required(o, names)
    if isinstance(axes, Mapping):
        for o in opts:
            for p in o.takes:
                axis = _axis_for(o, p, names)
                if axis is not None:
                    check_range(o, p, axes[axis])


def check_range(opt: Optimizer, name: str, values) -> None:
    """Built-in optimizers reject hyperparameters outside their valid range."""
    if not opt.builtin or name not in HYPERPARAMS:
        return
    lo, hi = HYPERPARAMS[name]
    bad = [float(v) for v in values if not lo < float(v) < hi]
    if bad:
        valid = {"lr": "> 0", "eps": "> 0"}.get(name, "in [0, 1)")
        raise ValueError(f"optimizer {opt.name!r}: {name} must be {valid}, got {bad[:5]}")


EXTRA_ARGS = ("value", "grad", "value_fn")


def update(tx: optax.GradientTransformation, grad, state, params, *, value: jax.Array,
           value_fn: Callable[[Any], jax.Array]):
    """One optimizer step: ``tx.update(grad, state, params)``, plus the loss ``value``
    at ``params``, ``grad`` again and ``value_fn`` (params -> loss on the same batch)
    for a ``GradientTransformationExtraArgs`` that takes them (``optax.lbfgs``'s line
    search calls ``value_fn``; ``polyak_sgd`` and ``reduce_on_plateau`` read ``value``).
    A plain transformation gets exactly ``tx.update(grad, state, params)``.

    Returns:
      ``(updates, new_state)``.

    >>> import jax.numpy as jnp
    >>> f = lambda p: jnp.sum(p ** 2)
    >>> p = jnp.array([1.0, 2.0])
    >>> u, _ = update(optax.polyak_sgd(), jax.grad(f)(p), optax.polyak_sgd().init(p), p,
    ...               value=f(p), value_fn=f)
    >>> u.tolist()
    [-0.5, -1.0]
    """
    if not isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(grad, state, params)
    extra = {"value": value, "grad": grad, "value_fn": value_fn}
    return tx.update(grad, state, params, **{k: extra[k] for k in _extra_args(tx.update)})


def _extra_args(fn: Callable) -> tuple[str, ...]:
    """The extra arguments ``fn`` accepts: optax's take ``**extra_args``; a hand-written
    update may name only some (and would reject the others)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return EXTRA_ARGS
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return EXTRA_ARGS
    return tuple(k for k in EXTRA_ARGS if k in params)
