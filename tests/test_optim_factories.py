"""Every hyperparameter a factory names is swept: ``optim.hyperparams`` and ``optim.update``
inside ``jax.vmap`` over traced configurations, against optax's own loop (no bpjax)."""

import itertools
import warnings
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bpjax import checks, optim

STEPS = 25


def rosenbrock(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def start(x0=-1.2):
    return jnp.stack([jnp.float32(x0), jnp.float32(1.0)])


def sgd_plateau(lr, min_scale):
    return optax.chain(optax.sgd(lr),
                       optax.contrib.reduce_on_plateau(patience=2, factor=0.5, min_scale=min_scale))


# name -> (what the user passes as the optimizer, the grid's configurations (one entry
# per run), the optax optimizer each configuration must equal, built from its values)
FACTORIES_UNDER_TEST = {
    "adamw(learning_rate, wd)": (
        lambda learning_rate, wd: optax.adamw(learning_rate, weight_decay=wd),
        {"lr": [1e-2, 1e-2, 3e-2], "wd": [0.0, 3.0, 0.1]},
        lambda lr, wd: optax.adamw(lr, weight_decay=wd)),
    "optax.adamw itself": (
        optax.adamw,
        {"learning_rate": [1e-2, 3e-2], "weight_decay": [0.0, 3.0]},
        lambda learning_rate, weight_decay: optax.adamw(learning_rate,
                                                        weight_decay=weight_decay)),
    "sgd then reduce_on_plateau (value)": (
        sgd_plateau, {"lr": [1e-3, 4e-3, 4e-3], "min_scale": [0.0, 0.0, 0.75]}, sgd_plateau),
    "optax.polyak_sgd (value)": (
        optax.polyak_sgd,
        {"max_learning_rate": [1e-3, 1e-2], "f_min": [0.0, -1.0]},
        lambda max_learning_rate, f_min: optax.polyak_sgd(max_learning_rate, f_min=f_min)),
    "lbfgs(learning_rate) (value, grad, value_fn)": (
        lambda learning_rate: optax.lbfgs(learning_rate),
        {"lr": [1.0, 0.5]},
        lambda lr: optax.lbfgs(lr)),
    "a polyak_sgd transformation, starts swept": (
        optax.polyak_sgd(1e-2), {"x0": [-1.2, 0.5]}, lambda: optax.polyak_sgd(1e-2)),
    "**kwargs gets every axis": (
        lambda **hp: optax.sgd(hp["lr"], momentum=hp["beta"]),
        {"lr": [1e-3, 2e-3], "beta": [0.5, 0.9], "x0": [-1.2, 0.5]},
        lambda lr, beta: optax.sgd(lr, momentum=beta)),
    "config gets the configuration": (
        lambda config: optax.adam(config["lr"], b1=config["b1"]),
        {"lr": [1e-2, 3e-2], "b1": [0.5, 0.9]},
        lambda lr, b1: optax.adam(lr, b1=b1)),
}


def optax_step(make):
    """One optax step, by hand: the optimizer built from this run's hyperparameters."""

    def step(params, state, hp):
        tx = make(**hp)
        value, grad = jax.value_and_grad(rosenbrock)(params)
        if isinstance(tx, optax.GradientTransformationExtraArgs):
            updates, state = tx.update(grad, state, params, value=value, grad=grad,
                                       value_fn=rosenbrock)
        else:
            updates, state = tx.update(grad, state, params)
        return optax.apply_updates(params, updates), state

    return step


_jitted_step = cache(lambda make: jax.jit(optax_step(make)))  # one compile per optimizer


def optax_loop(make, hp, x0=-1.2, concrete=False):
    """The optax loop, a jitted step at a time. The hyperparameters are passed into the
    step as float32 arrays, as in a sweep; with ``concrete`` they are Python floats,
    which XLA folds into its constants."""
    if concrete:
        step = jax.jit(partial(optax_step(make), hp={k: float(v) for k, v in hp.items()}))
    else:
        step = partial(_jitted_step(make), hp={k: jnp.float32(v) for k, v in hp.items()})
    params = start(x0)
    state = make(**hp).init(params)
    out = []
    for _ in range(STEPS):
        params, state = step(params, state)
        out.append(np.asarray(params))
    return np.array(out), state


def swept(opt: optim.Optimizer, configs: dict):
    """The same loop for one configuration (a dict of traced values), vmapped over all."""

    def one(config):
        tx = opt.factory(**optim.hyperparams(opt, config))
        params = start(config.get("x0", -1.2))

        def body(carry, _):
            params, state = carry
            value, grad = jax.value_and_grad(rosenbrock)(params)
            updates, state = optim.update(tx, grad, state, params, value=value,
                                          value_fn=rosenbrock)
            params = optax.apply_updates(params, updates)
            return (params, state), params

        (_, state), params_T = jax.lax.scan(body, (params, tx.init(params)), None, STEPS)
        return params_T, state

    flat = {k: jnp.asarray(v, jnp.float32) for k, v in configs.items()}
    params_GxT, state_G = jax.jit(jax.vmap(one))(flat)
    return np.asarray(params_GxT), state_G


@cache
def swept_case(name):
    """``swept`` of a case in the table, computed once (lbfgs compiles for seconds)."""
    given, configs, _ = FACTORIES_UNDER_TEST[name]
    opt = optim.resolve_one(given)
    optim.check_grid([opt], configs)
    return swept(opt, configs)


def runs(configs):
    n = len(next(iter(configs.values())))
    for i in range(n):
        hp = {k: v[i] for k, v in configs.items()}
        yield i, hp.pop("x0", -1.2), hp


@pytest.mark.parametrize("name", FACTORIES_UNDER_TEST)
def test_swept_factory_equals_optax(name):
    _, configs, make = FACTORIES_UNDER_TEST[name]
    got, _ = swept_case(name)
    for i, x0, hp in runs(configs):
        ref, _ = optax_loop(make, hp, x0)
        # Same ops on the same float32 values: the same bits, vmapped or not.
        np.testing.assert_array_equal(got[i], ref, err_msg=f"{name}, run {i}: {hp}")
    # With Python-float hyperparameters XLA folds them into constants and compiles
    # another program, which may differ by an ulp (sgd then reduce_on_plateau at lr=2e-3
    # did, from the first step). One run: a compile each (lbfgs: 10 s on a 2-core CPU,
    # so none for it).
    i, x0, hp = next(runs(configs))
    if hp and "lbfgs" not in name:
        const, _ = optax_loop(make, hp, x0, concrete=True)
        np.testing.assert_allclose(got[i], const, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(got))


def test_weight_decay_axis_is_swept():
    name = "adamw(learning_rate, wd)"
    configs = FACTORIES_UNDER_TEST[name][1]
    got, _ = swept_case(name)
    assert configs["lr"][0] == configs["lr"][1] and configs["wd"][:2] == [0.0, 3.0]
    assert np.abs(got[0, -1] - got[1, -1]).max() > 1e-2  # wd=0 vs wd=3
    direct, _ = optax_loop(lambda: optax.adamw(1e-2, weight_decay=3.0), {}, concrete=True)
    np.testing.assert_allclose(got[1], direct, rtol=1e-5, atol=1e-6)


def test_reduce_on_plateau_sees_the_loss():
    _, state = swept_case("sgd then reduce_on_plateau (value)")
    scale = np.asarray(state[1].scale)
    assert scale[1] <= 0.5  # it saw a plateau, so it got the values
    assert scale[2] == 0.75  # and min_scale was swept: the same run stopped there


def test_lbfgs_line_search_runs():
    got, state = swept_case("lbfgs(learning_rate) (value, grad, value_fn)")
    assert rosenbrock(got[0, -1]) < 1e-2 * rosenbrock(start())
    assert np.asarray(state[-1].info.num_linesearch_steps).max() > 0  # value_fn was called


# -- what a factory is given ----------------------------------------------------------


def test_hyperparams_by_name_alias_kwargs_and_config():
    config = {"lr": 0.1, "wd": 0.5, "seed": 3}
    opt = optim.resolve_one(lambda learning_rate, wd, b1=0.9: None)
    assert opt.takes == ("learning_rate", "wd", "b1")
    assert optim.hyperparams(opt, config) == {"learning_rate": 0.1, "wd": 0.5}
    opt = optim.resolve_one(lambda lr: None)
    assert optim.hyperparams(opt, {"learning_rate": 0.2}) == {"lr": 0.2}
    opt = optim.resolve_one(lambda **kw: None)
    assert opt.takes_all and optim.hyperparams(opt, config) == config
    # Under **kwargs an axis that feeds a named parameter via its alias is passed once.
    opt = optim.resolve_one(lambda learning_rate, **kw: None)
    assert optim.hyperparams(opt, config) == {"learning_rate": 0.1, "wd": 0.5, "seed": 3}
    opt = optim.resolve_one(lambda config, lr: None)
    assert opt.takes == ("lr",) and opt.takes_config
    assert optim.hyperparams(opt, config) == {"lr": 0.1, "config": config}
    opt = optim.resolve_one(optax.sgd(0.1))
    assert optim.hyperparams(opt, config) == {} and opt.factory() is opt.source


def test_builtins_take_what_they_took():
    takes = {n: optim.resolve_one(n).takes for n in optim.BUILTIN}
    assert takes == {"sgd": ("lr",), "momentum": ("lr", "momentum"),
                     "nesterov": ("lr", "momentum"), "adam": ("lr", "b1", "b2", "eps"),
                     "rmsprop": ("lr", "decay", "eps")}
    assert optim.required(optim.resolve_one("adam")) == ("lr",)
    opt = optim.resolve_one("sgd")
    assert optim.hyperparams(opt, {"learning_rate": 0.1, "x0": 1.0}) == {"lr": 0.1}


# -- errors before any compile ------------------------------------------------------

ADAMW = optim.resolve_one(lambda lr, wd: optax.adamw(lr, weight_decay=wd), "adamw")

GRID_ERRORS = [
    ([ADAMW], {"lr": [0.1], "seed": [0]},
     r"optimizer 'adamw' needs \['wd'\]: add a grid axis for it, e\.g\. Grid\(wd=\[\.\.\.\]\); "
     r"the grid's axes: lr, seed"),
    ([ADAMW], {"wd": [0.1]}, r"needs \['lr'\]: .* \('learning_rate' also works\)"),
    ([optim.resolve_one(lambda a, b: None, "f")], {"x0": [1.0]},
     r"needs \['a', 'b'\]: add a grid axis for each, e\.g\. Grid\(a=\[\.\.\.\], b=\[\.\.\.\]\)"),
    ([ADAMW], {"lr": [0.1], "learning_rate": [0.1], "wd": [0.0]},
     r"optimizer 'adamw' takes 'lr', and the grid has both 'lr' and 'learning_rate' axes"),
    ([optim.resolve_one("sgd")], {"lr": [0.1], "momentum": [0.9]},
     r"grid axis 'momentum' is an optimizer hyperparameter, but no optimizer takes it"),
    ([optim.resolve_one(optax.sgd(0.1))], {"learning_rate": [0.1]},
     r"grid axis 'learning_rate' is an optimizer hyperparameter, but no optimizer takes it"),
    ([optim.resolve_one("sgd")], {"learning_rate": [0.1, -0.1]}, r"lr must be > 0, got \[-0\.1"),
]


@pytest.mark.parametrize("opts,axes,message", GRID_ERRORS, ids=[m[:40] for *_, m in GRID_ERRORS])
def test_check_grid_errors(opts, axes, message):
    with pytest.raises(ValueError, match=message):
        optim.check_grid(opts, axes)


def test_check_grid_accepts():
    optim.check_grid([ADAMW], ["lr", "wd", "seed", "x0"])  # names alone: no range check
    optim.check_grid([optim.resolve_one("sgd"), ADAMW], {"lr": [0.1], "wd": [0.0]})
    optim.check_grid([optim.resolve_one(optax.adam)], {"lr": [0.1]})  # as learning_rate
    optim.check_grid([optim.resolve_one(lambda **kw: None)], {"momentum": [0.9]})
    optim.check_grid([optim.resolve_one(lambda config: None)], {"b1": [0.9]})


def test_hyperparams_raises_too():
    with pytest.raises(ValueError, match=r"needs \['wd'\]"):
        optim.hyperparams(ADAMW, {"lr": 0.1})
    with pytest.raises(ValueError, match="has both 'lr' and 'learning_rate'"):
        optim.hyperparams(ADAMW, {"lr": 0.1, "learning_rate": 0.1, "wd": 0.0})


# -- update: extra args only where they are taken ----------------------------------------


def test_update_passes_extra_args_only_to_those_that_take_them():
    params = jnp.array([1.0, 2.0])
    grad = jnp.array([0.5, -1.0])
    seen = {}

    def plain_update(updates, state, params=None):  # extra args would be a TypeError
        return updates, state

    def value_only(updates, state, params=None, *, value):
        seen["value"] = value
        return updates, state

    def init(params):
        return optax.EmptyState()

    fn = lambda p: jnp.sum(p)
    for tx in (optax.GradientTransformation(init, plain_update),
               optax.GradientTransformationExtraArgs(init, value_only)):
        updates, _ = optim.update(tx, grad, tx.init(params), params, value=7.0, value_fn=fn)
        assert updates is grad
    assert seen == {"value": 7.0}
    tx = optax.sgd(0.1)
    np.testing.assert_array_equal(
        optim.update(tx, grad, tx.init(params), params, value=0.0, value_fn=fn)[0],
        tx.update(grad, tx.init(params), params)[0])


# -- unused axes --------------------------------------------------------------------------

F32 = jax.ShapeDtypeStruct((), jnp.float32)
PARAMS = jax.ShapeDtypeStruct((2,), jnp.float32)


def one_step(make):
    """init + one optimizer step + loss, for one configuration: what a sweep would trace."""

    def fn(config, params):
        tx = make(config)
        state = tx.init(params)
        value, grad = jax.value_and_grad(rosenbrock)(params)
        updates, state = optim.update(tx, grad, state, params, value=value,
                                      value_fn=rosenbrock)
        params = optax.apply_updates(params, updates)
        return params, state, rosenbrock(params)

    return fn


def test_unused_inputs_finds_an_axis_that_changes_nothing():
    config = {"lr": F32, "wd": F32}
    ignored = one_step(lambda c: optax.adamw(c["lr"], weight_decay=0.0))
    assert checks.unused_inputs(ignored, config, PARAMS) == {"wd"}
    used = one_step(lambda c: optax.adamw(c["lr"], weight_decay=c["wd"]))
    assert checks.unused_inputs(used, config, PARAMS) == set()
    lbfgs = one_step(lambda c: optax.lbfgs(c["lr"]))
    assert checks.unused_inputs(lbfgs, config, PARAMS) == {"wd"}


def test_unused_inputs_sees_a_seed_through_the_key():
    def init(config):
        key = jax.random.fold_in(jax.random.key(0), config["seed"])
        return jax.random.normal(key, (2,)) * config["scale"]

    config = {"seed": jax.ShapeDtypeStruct((), jnp.int32), "scale": F32, "lr": F32}
    assert checks.unused_inputs(init, config) == {"lr"}


def test_unused_inputs_without_jax_dce_warns_of_nothing(monkeypatch):
    from jax._src.interpreters import partial_eval

    monkeypatch.delattr(partial_eval, "dce_jaxpr")
    assert checks.unused_inputs(lambda c: c["a"], {"a": F32, "b": F32}) == set()


# -- end to end, through bpjax.sweep ----------------------------------------------------


def sweep_equals_optax(optimizer, grid, make):
    """``bpjax.sweep`` over ``grid`` (a product of axes) against the optax loop per run."""
    import bpjax

    res = bpjax.sweep(lambda p: rosenbrock(p["p"]), lambda c, k: {"p": start()}, optimizer,
                      grid, STEPS)
    for values in itertools.product(*grid.values()):
        hp = dict(zip(grid, values))
        params_T, _ = optax_loop(make, hp)
        ref = [float(rosenbrock(start()))] + [float(rosenbrock(p)) for p in params_T]
        # Another compiled program (segments, the divergence guard): not the same bits.
        np.testing.assert_allclose(res.sel(**hp).loss, ref, rtol=1e-5, atol=1e-6)
    return res


def test_sweep_gets_every_hyperparameter_the_factory_names():
    res = sweep_equals_optax(lambda learning_rate, wd: optax.adamw(learning_rate, weight_decay=wd),
                             {"lr": [1e-2, 3e-2], "wd": [0.0, 3.0]},
                             lambda lr, wd: optax.adamw(lr, weight_decay=wd))
    assert res.sel(lr=1e-2, wd=0.0).loss[-1] != res.sel(lr=1e-2, wd=3.0).loss[-1]


def test_sweep_passes_the_loss_to_polyak_sgd():
    sweep_equals_optax(optax.polyak_sgd, {"max_learning_rate": [1e-3, 1e-2]},
                       lambda max_learning_rate: optax.polyak_sgd(max_learning_rate))


def test_a_grid_axis_nothing_reads_is_a_warning_that_names_it():
    import bpjax
    from bpjax.sweep.plan import UnusedAxisWarning

    loss = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    init = lambda c, k: {"w": jnp.ones(2)}  # noqa: E731
    ignores_wd = lambda lr, wd: optax.adamw(lr, weight_decay=0.0)  # noqa: E731
    grid = bpjax.Grid(lr=[0.1], wd=[0.0, 3.0])
    with pytest.warns(UnusedAxisWarning, match=r"grid axes \['wd'\] reach neither"):
        res = bpjax.sweep(loss, init, ignores_wd, grid, steps=3, progress=False)
    np.testing.assert_array_equal(res.final_loss[0, 0], res.final_loss[0, 1])  # as it warned
    uses_wd = lambda lr, wd: optax.adamw(lr, weight_decay=wd)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = bpjax.sweep(loss, init, uses_wd, grid, steps=3, progress=False)
    assert res.final_loss[0, 0] != res.final_loss[0, 1]
