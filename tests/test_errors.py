"""Bad input gets a clear error naming the problem, raised before anything compiles."""

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import losses, nets, problems

NET = nets.mlp([2, 3, 1])
LOSS = losses.supervised(NET.apply)


def quartic_init(config, key):
    return {"x": config["x0"]}


def call(grid=None, optimizer="sgd", steps=10, loss=problems.quartic, init=quartic_init, **kw):
    grid = {"lr": [0.1], "x0": [1.0]} if grid is None else grid
    return bpjax.sweep(loss, init, optimizer, grid, steps, **kw)


CASES = [
    (dict(grid={"lr": [], "x0": [1.0]}), "axis 'lr' is empty"),
    (dict(grid={"lr": [[0.1, 0.2]], "x0": [1.0]}), "axis 'lr' must be 1-D"),
    (dict(grid={"lr": [0.1, np.nan], "x0": [1.0]}), "non-finite"),
    (dict(grid={"lr": [None], "x0": [1.0]}), "must hold numbers"),  # (strings: static)
    (dict(grid={"lr": [0.1], "x0": [1.0], "act": ["tanh", "tanh"]}),
     "static axis 'act' repeats the values \\['tanh'\\]"),
    (dict(grid={"lr": [0.1], "x0": [1.0], "width": bpjax.static([4, 4.5])}),
     "static axis 'width' must hold strings or integers"),
    (dict(grid={"lr": [0.1], "x0": [1.0], "step": [1]}), "reserved"),
    (dict(grid={"lr": [0.1], "x0": [1.0], "seed": [0.5]}), "'seed' must hold integers"),
    (dict(optimizer="adamw"), "unknown optimizer 'adamw'; valid names: sgd, momentum"),
    (dict(optimizer=42), "optimizer must be a name"),
    (dict(optimizer=[]), "optimizer list is empty"),
    (dict(grid={"lr": [0.1], "x0": [1.0], "momentum": [0.9]}),
     "axis 'momentum' is an optimizer hyperparameter, but no optimizer takes it"),
    (dict(grid={"x0": [1.0]}), "optimizer 'sgd' needs \\['lr'\\]"),
    (dict(grid={"lr": [0.1, -0.1], "x0": [1.0]}), "lr must be > 0, got \\[-0.1"),
    (dict(grid={"lr": [0.0], "x0": [1.0]}), "lr must be > 0"),
    (dict(grid={"lr": [0.1], "x0": [1.0], "momentum": [1.5]}, optimizer="momentum"),
     "momentum must be in \\[0, 1\\)"),
    (dict(steps=0), "steps must be a positive integer, got 0"),
    (dict(steps=2.5), "steps must be a positive integer"),
    (dict(steps=10, record_every=3), "record_every=3 does not divide steps=10"),
    (dict(record_every=0), "record_every must be a positive integer"),
    (dict(loss=lambda p: jnp.stack([p["x"], p["x"]])), "loss_fn must return a scalar"),
    (dict(loss=lambda p: p["y"]), "failed on one configuration.*KeyError"),
    (dict(init=lambda c, k: {"x": jnp.int32(1)}), "float params"),
    (dict(grid=[1, 2]), "grid must be a bpjax.Grid or a dict"),
    (dict(batch_size=2), "batch_size needs data"),
    (dict(seed=-1), "seed must be an integer"),
    (dict(init=lambda c, k: {"x": c["x0"] / 0.0 * 0.0}), "not finite at the initial params"),
]


@pytest.mark.parametrize("kwargs,message", CASES, ids=[m[:30] for _, m in CASES])
def test_bad_sweep_input(kwargs, message, compiles):
    with compiles, pytest.raises((ValueError, TypeError), match=message):
        call(**kwargs)
    # Every check but the initial-loss one (which must evaluate the loss) runs before XLA.
    if "initial" not in message:
        assert compiles.count == 0


def test_mismatched_data_and_net():
    x, y = problems.xor()
    with pytest.raises(ValueError, match="data shapes"):
        bpjax.sweep(LOSS, lambda c, k: nets.mlp([3, 3, 1]).init(k), "sgd", {"lr": [0.1]}, 10,
                    data=(x, y))
    with pytest.raises(ValueError, match="disagree on the number of examples"):
        bpjax.sweep(LOSS, lambda c, k: NET.init(k), "sgd", {"lr": [0.1]}, 10, data=(x, y[:3]))
    with pytest.raises(ValueError, match="batch_size=9 exceeds the 4 examples"):
        bpjax.sweep(LOSS, lambda c, k: NET.init(k), "sgd", {"lr": [0.1]}, 10, data=(x, y),
                    batch_size=9)


def test_initial_non_finite_loss_names_the_configurations():
    message = r"for 1 configuration\(s\), e.g. \[\{'lr': 0.1, 'x0': 0.0"
    with pytest.raises(ValueError, match=message):
        bpjax.sweep(lambda p: jnp.log(p["x"]), quartic_init, "sgd",
                    {"lr": [0.1], "x0": [0.0, 1.0]}, 5)


def test_bad_train_input():
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        bpjax.train(problems.quartic, {"x": 1.0}, "sgd", 10)
    with pytest.raises(ValueError, match="must divide"):
        bpjax.train(problems.quartic, {"x": 1.0}, bpjax.optim.sgd(0.1), 10, record_every=4)
    with pytest.raises(ValueError, match="scalar"):
        bpjax.train(lambda p: p["x"] * jnp.ones(2), {"x": 1.0}, bpjax.optim.sgd(0.1), 10)


def test_unknown_names_elsewhere():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nets.mlp([1, 1], activation="swish")
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        bpjax.initializers.by_name("glorot")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.supervised(NET.apply, "hinge")
    with pytest.raises(KeyError, match="lr=0.3 is not on the axis"):
        call().sel(lr=0.3)
