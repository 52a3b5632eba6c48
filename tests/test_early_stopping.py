"""Early stopping inside the compiled sweep: the best validation record, its step and
exactly the params recorded there; checked against the recorded trajectory and a
NumPy evaluation of the validation loss."""

import jax
import numpy as np
import pytest

import bpjax
from bpjax import losses, nets


def overfitting_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (np.sin(2 * x[:, :1]) + 0.5 * rng.normal(size=(40, 1))).astype(np.float32)
    return (x[:10], y[:10]), (x[10:], y[10:])  # 10 noisy points to fit, 30 held out


def numpy_val_loss(p, x, y):
    (l1, l2) = p["layers"]
    out = np.tanh(x @ l1["w"] + l1["b"]) @ l2["w"] + l2["b"]
    return np.mean(np.sum((out - y) ** 2, axis=1))


def test_best_params_are_exactly_the_recorded_params_at_the_best_step(tmp_path):
    train, val = overfitting_problem()
    net = nets.mlp([3, 32, 1], activation="tanh")
    loss = losses.supervised(net.apply, "mse")
    res = bpjax.sweep(loss, lambda c, k: net.init(k), "sgd",
                      bpjax.Grid(lr=[0.03, 0.1, 0.3], seed=np.arange(4)), 2000,
                      record_every=50, data=train, val_data=val)
    assert res.val_loss.shape == res.loss.shape and res.best_step.shape == (3, 4)
    k = np.argmin(res.val_loss, axis=-1)  # first minimum, as the sweep keeps the first
    np.testing.assert_array_equal(res.best_step, res.steps[k])
    np.testing.assert_array_equal(res.best_val_loss, np.take_along_axis(
        res.val_loss, k[..., None], -1)[..., 0])
    for leaf_best, leaf_rec in zip(jax.tree.leaves(res.best_params), jax.tree.leaves(res.params)):
        index = k.reshape(k.shape + (1,) * (leaf_rec.ndim - 2))  # the step axis is axis 2
        np.testing.assert_array_equal(leaf_best, np.take_along_axis(leaf_rec, index, 2)[:, :, 0])
    # The validation loss is the loss on the held-out data, by an independent evaluation.
    one = res.sel(lr=0.1, seed=2)
    p = {"layers": [{n: np.asarray(v) for n, v in layer.items()}
                    for layer in one.best_params["layers"]]}
    np.testing.assert_allclose(numpy_val_loss(p, *val), one.best_val_loss, rtol=1e-5)
    # It overfits: for most runs the best validation step is before the end, and the
    # training loss is lower at the end than there (SGD's loss need not fall at every
    # step, and GPU matmuls round differently: most, not all).
    early = res.best_step < res.steps[-1]
    assert early.mean() > 0.5
    loss_at_best = np.take_along_axis(res.loss, k[..., None], -1)[..., 0]
    assert np.mean(res.final_loss[early] < loss_at_best[early]) > 0.8
    # Saved and loaded with the rest.
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.best_step, res.best_step)
    np.testing.assert_array_equal(back.best_params["layers"][0]["w"],
                                  res.best_params["layers"][0]["w"])


def test_early_stopping_survives_chunking_and_reloading(tmp_path):
    train, val = overfitting_problem()
    net = nets.mlp([3, 8, 1], activation="tanh")
    loss = losses.supervised(net.apply, "mse")
    kw = dict(record_every=20, data=train, val_data=val, record_params=False)
    grid = bpjax.Grid(lr=[0.1, 0.3], seed=np.arange(3))
    full = bpjax.sweep(loss, lambda c, k: net.init(k), "sgd", grid, 400, **kw)
    chunked = bpjax.sweep(loss, lambda c, k: net.init(k), "sgd", grid, 400, chunk_size=2,
                          out=tmp_path / "s", **kw)
    # Chunks of 2 and of 6 run different XLA code (see README, "Long sweeps"), and at
    # lr 0.3 this net amplifies the rounding, so the two are not compared value by
    # value; each must hold its own best record exactly, and agree at the start.
    for res in (full, chunked):
        k = np.argmin(res.val_loss, axis=-1)
        np.testing.assert_array_equal(res.best_step, res.steps[k])
        np.testing.assert_array_equal(res.best_val_loss, res.val_loss.min(axis=-1))
    np.testing.assert_allclose(full.val_loss[..., :2], chunked.val_loss[..., :2], rtol=1e-5)
    again = bpjax.sweep(loss, lambda c, k: net.init(k), "sgd", grid, 400, chunk_size=2,
                        out=tmp_path / "s", **kw)  # loaded from the finished folder
    np.testing.assert_array_equal(again.best_step, chunked.best_step)
    np.testing.assert_array_equal(again.best_params["layers"][1]["w"],
                                  chunked.best_params["layers"][1]["w"])


def test_val_data_without_data_is_refused():
    with pytest.raises(ValueError, match="val_data needs data"):
        bpjax.sweep(lambda p: p["x"] ** 2, lambda c, k: {"x": c["x0"]}, "sgd",
                    bpjax.Grid(lr=[0.1], x0=[1.0]), 10, val_data=(np.ones((3, 1)),))


def test_the_experiment_stops_earlier_at_larger_lr(tmp_path):
    from bpjax.experiments import early_stopping

    numbers = early_stopping.run(str(tmp_path), quick=True)
    rows = numbers["per_lr"]
    assert rows["1.0"]["median_best_step"] < rows["0.1"]["median_best_step"]
    for row in rows.values():
        assert row["median_best_val_loss"] <= row["median_final_val_loss"]
    # The test split is the training split's unused images: 1797 - 449 - 100.
    assert (numbers["n_val"], numbers["n_test"]) == (449, 1248)
    # Out of sample, stopping early at lr 1 still lowers the loss, by about what the
    # validation set that chose the step says (no large selection bias at this size).
    fast = rows["1.0"]
    assert fast["median_test_loss_gain"] > 0.5 * fast["median_val_loss_gain"] > 0
    assert fast["median_test_loss_best"] < fast["median_test_loss_final"]
    assert f"{fast['median_test_loss_gain']:.2g}" in numbers["finding"]


def test_test_split_is_disjoint_and_scored_like_numpy():
    from bpjax.experiments import early_stopping

    (x, y), (xv, yv) = bpjax.problems.digits()
    train, test = x[:early_stopping.N_TRAIN], x[early_stopping.N_TRAIN:]
    rows = lambda a: {r.tobytes() for r in a}  # noqa: E731
    assert not rows(test) & rows(train) and not rows(test) & rows(xv)  # not one image shared
    net = nets.mlp([64, 64, 10], activation="tanh")
    p = net.init(jax.random.key(3))
    loss, acc = early_stopping.evaluate(net, p, test, y[early_stopping.N_TRAIN:])
    (l1, l2) = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in p["layers"]]
    logits = np.tanh(test @ l1["w"] + l1["b"]) @ l2["w"] + l2["b"]
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    labels = y[early_stopping.N_TRAIN:]
    np.testing.assert_allclose(loss, -logp[np.arange(len(labels)), labels].mean(), rtol=1e-5)
    assert float(acc) == pytest.approx(np.mean(logits.argmax(1) == labels), abs=1e-6)
