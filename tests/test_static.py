"""Static axes: each static slice of one sweep equals that combination's own sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import initializers, losses, nets, problems


def net(config):
    return nets.mlp([2, config["width"], 1], activation=config["activation"])


def loss(params, batch, config):
    return losses.supervised(net(config).apply, "mse")(params, batch)


def init(config, key):
    assert isinstance(config["activation"], str) and isinstance(config["width"], int)
    return net(config).init(key, w_init=initializers.uniform(config["scale"]))


KW = dict(record_every=25, data=problems.xor(), progress=False)
AXES = dict(lr=[0.05, 0.5], activation=["tanh", "relu"], width=bpjax.static([2, 4]),
            scale=[0.5, 1.0], seed=[0, 1])


@pytest.fixture(scope="module")
def res():
    return bpjax.sweep(loss, init, ["sgd", "adam"], bpjax.Grid(**AXES), 100, **KW)


def test_one_result_holds_every_axis_in_the_grids_order(res):
    assert res.dims == ("optimizer", "lr", "activation", "width", "scale", "seed")
    assert res.loss.shape == (2, 2, 2, 2, 2, 2, 5)
    assert res.coords["activation"].tolist() == ["tanh", "relu"]
    assert res.coords["width"].tolist() == [2, 4]
    assert res.meta["params_by"] == ["activation", "width"]  # widths differ: per combination


@pytest.mark.parametrize("activation, width", [("tanh", 2), ("relu", 4)])
def test_each_static_slice_equals_its_own_sweep(res, activation, width):
    fixed = {"activation": activation, "width": width}
    alone = bpjax.sweep(lambda p, b, config: loss(p, b, config | fixed),
                        lambda c, k: init(c | fixed, k), ["sgd", "adam"],
                        bpjax.Grid(lr=AXES["lr"], scale=AXES["scale"], seed=AXES["seed"]),
                        100, **KW)
    part = res.sel(activation=activation, width=width)
    assert part.dims == alone.dims
    for name in ("loss", "final_loss", "diverged_at", "min_loss"):
        np.testing.assert_array_equal(getattr(part, name), getattr(alone, name))
    for a, b in zip(jax.tree.leaves(part.final_params), jax.tree.leaves(alone.final_params)):
        np.testing.assert_array_equal(a, b)
    assert part.final_params["layers"][0]["w"].shape == (2, 2, 2, 2, 2, width)


def test_params_stack_when_every_combination_has_the_same_shapes():
    grid = bpjax.Grid(lr=[0.1], activation=["tanh", "sigmoid", "relu"], seed=[0, 1])
    res = bpjax.sweep(lambda p, b, config: loss(p, b, config | {"width": 3}),
                      lambda c, k: init(c | {"width": 3, "scale": 1.0}, k), "sgd", grid, 50,
                      **KW)
    assert "params_by" not in res.meta
    assert res.final_params["layers"][0]["w"].shape == (1, 3, 2, 2, 3)
    np.testing.assert_array_equal(res.sel(activation="relu").final_params["layers"][1]["b"],
                                  res.final_params["layers"][1]["b"][:, 2])


def test_a_grid_needs_a_traced_axis():
    with pytest.raises(ValueError, match="also needs a traced axis"):
        bpjax.sweep(loss, init, "sgd", bpjax.Grid(activation=["tanh"]), 10, **KW)


def test_a_static_sweep_saves_loads_and_reloads_from_its_folder(res, tmp_path, capsys):
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz")
    part, again = res.sel(activation="relu", width=4), back.sel(activation="relu", width=4)
    np.testing.assert_array_equal(again.loss, part.loss)
    np.testing.assert_array_equal(again.final_params["layers"][0]["w"],
                                  part.final_params["layers"][0]["w"])
    grid = bpjax.Grid(lr=[0.1], activation=["tanh", "relu"], width=bpjax.static([2, 3]),
                      scale=[1.0], seed=[0])
    first = bpjax.sweep(loss, init, "sgd", grid, 50, out=tmp_path / "o", **KW)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "activation=relu,width=2", "activation=relu,width=3", "activation=tanh,width=2",
        "activation=tanh,width=3", "result.npz"]
    second = bpjax.sweep(loss, init, "sgd", grid, 50, out=tmp_path / "o", **KW)
    assert capsys.readouterr().err.count("holds this finished sweep") == 4
    np.testing.assert_array_equal(second.loss, first.loss)
    np.testing.assert_array_equal(bpjax.load(tmp_path / "o" / "result.npz").loss, first.loss)


def test_initial_params_take_static_axes_in_the_grids_order():
    from bpjax.sweep import config_keys, initial_params

    def init(config, key):
        factor = {"tanh": 1.0, "relu": 2.0}[config["act"]]  # a Python value, as in a sweep
        return {"w": jax.random.normal(key, (3,)) * config["lr"] * factor}

    grid = bpjax.Grid(lr=[0.1, 1.0], act=["tanh", "relu"], seed=[0, 1])
    p = initial_params(init, grid, seed=5)
    assert p["w"].shape == (2, 2, 2, 3)
    for i, lr in enumerate([0.1, 1.0]):
        for j, factor in enumerate([1.0, 2.0]):
            for s in range(2):
                key = config_keys({"seed": np.int32(s)}, np.uint32(5))[0]
                np.testing.assert_allclose(p["w"][i, j, s],
                                           np.asarray(jax.random.normal(key, (3,))) * lr * factor,
                                           rtol=1e-6)
    res = bpjax.sweep(lambda q: jnp.sum(q["w"] ** 2), init, "sgd", grid, 2, seed=5,
                      progress=False)
    np.testing.assert_array_equal(res.params["w"][..., 0, :], p["w"])  # the sweep's step 0
    with pytest.raises(ValueError, match="different shapes for the static combinations"):
        initial_params(lambda c, k: {"w": jnp.zeros(c["n"])},
                       bpjax.Grid(n=bpjax.static([1, 2]), seed=[0]))
