"""Every optimizer, through train and through sweep (traced hyperparameters), against optax."""

import jax
import numpy as np
import optax
import pytest

import bpjax
from bpjax import losses, nets, problems

# name -> (bpjax hyperparameters, the optax optimizer they must equal)
OPTIMIZERS_UNDER_TEST = {
    "sgd": ({"lr": 0.5}, optax.sgd(0.5)),
    "momentum": ({"lr": 0.2, "momentum": 0.8}, optax.sgd(0.2, momentum=0.8)),
    "nesterov": ({"lr": 0.2, "momentum": 0.7}, optax.sgd(0.2, momentum=0.7, nesterov=True)),
    "adam": ({"lr": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-6},
             optax.adam(0.05, b1=0.8, b2=0.99, eps=1e-6)),
    # (eps well above the gradient's smallest entries: with eps = 1e-6 the first steps are
    # sign-like, lr g / sqrt((1 - decay) g^2), and amplify float rounding of tiny g to 1%)
    "rmsprop": ({"lr": 0.01, "decay": 0.8, "eps": 1e-2}, optax.rmsprop(0.01, decay=0.8, eps=1e-2)),
}

NET = nets.mlp([2, 4, 1], activation="tanh")
LOSS = losses.supervised(NET.apply, "half_mse")
DATA = problems.xor()
STEPS = 60


def optax_loop(tx, params):
    """The plain optax training loop, step by step."""
    state = tx.init(params)
    grad = jax.jit(jax.value_and_grad(LOSS))
    out = []
    for _ in range(STEPS + 1):
        value, g = grad(params, DATA)
        out.append(float(value))
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return np.array(out)


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_train_equals_optax(name):
    hp, reference = OPTIMIZERS_UNDER_TEST[name]
    params = NET.init(jax.random.key(0))
    run = bpjax.train(LOSS, params, bpjax.optim.BUILTIN[name](**hp), STEPS, data=DATA)
    ref = optax_loop(reference, params)
    np.testing.assert_allclose(run.loss, ref, rtol=1e-6, atol=1e-7)
    assert run.loss[-1] < run.loss[0]


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_sweep_with_traced_hyperparameters_equals_optax(name):
    hp, reference = OPTIMIZERS_UNDER_TEST[name]
    # Each hyperparameter is a grid axis holding the tested value and another one.
    axes = {k: [v, v * 0.5] for k, v in hp.items()}
    res = bpjax.sweep(LOSS, lambda c, k: NET.init(jax.random.key(0)), name, axes, STEPS,
                      data=DATA)
    first = res.sel(**{k: v for k, v in hp.items()})
    ref = optax_loop(reference, NET.init(jax.random.key(0)))
    np.testing.assert_allclose(first.loss, ref, rtol=1e-5, atol=1e-7)


def test_a_users_optax_transformation_works():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.3))
    params = NET.init(jax.random.key(0))
    res = bpjax.sweep(LOSS, lambda c, k: params, tx, {"seed": [0, 1]}, STEPS, data=DATA)
    ref = optax_loop(tx, params)
    np.testing.assert_allclose(res.loss[0], ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(res.loss[0], res.loss[1])  # init ignores the key here


def test_a_users_factory_gets_its_hyperparameters_by_name():
    def rmsprop(lr, eps=1e-8):
        return optax.rmsprop(lr, eps=eps)

    params = NET.init(jax.random.key(0))
    res = bpjax.sweep(LOSS, lambda c, k: params, rmsprop, {"lr": [0.01, 0.02]}, STEPS, data=DATA)
    np.testing.assert_allclose(res.sel(lr=0.02).loss, optax_loop(optax.rmsprop(0.02), params),
                               rtol=1e-5, atol=1e-7)
