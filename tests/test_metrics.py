"""Metrics inside the sweep, against NumPy on quadratics whose Hessian is known."""

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import checkpoint
from bpjax.metrics import sharpness

Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
EIGS = np.array([4.0, 1.0, 0.25])
A = (Q * EIGS) @ Q.T  # symmetric, eigenvalues EIGS


def loss(p, config):  # 0.5 x^T (c A) x: the Hessian is c A everywhere
    return 0.5 * config["c"] * p["x"] @ jnp.asarray(A, jnp.float32) @ p["x"]


def init(config, key):
    return {"x": jnp.asarray([1.0, -2.0, 0.5], jnp.float32)}


GRID = bpjax.Grid(lr=[0.01, 0.1], c=[0.5, 2.0])
METRICS = {"sharp": sharpness(iters=40), "gn": "grad_norm", "pn": "param_norm",
           "curv": "grad_curvature", "twice": lambda p, f: 2 * p["x"]}


@pytest.fixture(scope="module")
def res():
    return bpjax.sweep(loss, init, "sgd", GRID, 40, record_every=5, metrics=METRICS,
                       progress=False)


def test_sharpness_is_the_top_eigenvalue_at_every_record(res):
    assert res.metrics["sharp"].shape == (2, 2, 9)
    for j, c in enumerate([0.5, 2.0]):
        np.testing.assert_allclose(res.metrics["sharp"][:, j], 4.0 * c, rtol=1e-5)


def test_norms_and_a_shaped_metric_equal_numpy_on_the_recorded_params(res):
    x = res.params["x"].astype(np.float64)  # (lr, c, step, 3)
    c = np.array([0.5, 2.0])[None, :, None, None]
    grad = c * np.einsum("ij,...j->...i", A, x)
    np.testing.assert_allclose(res.metrics["gn"], np.linalg.norm(grad, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(res.metrics["pn"], np.linalg.norm(x, axis=-1), rtol=1e-6)
    # the curvature along the gradient, g.Hg / g.g with H = c A: between A's extreme
    # eigenvalues (times c), and not the sharpness
    hg = c * np.einsum("ij,...j->...i", A, grad)
    curv = np.sum(grad * hg, -1) / np.sum(grad * grad, -1)
    np.testing.assert_allclose(res.metrics["curv"], curv, rtol=1e-4)
    assert (curv < 4.0 * c[..., 0]).all() and (curv > 0.25 * c[..., 0]).all()
    np.testing.assert_array_equal(res.metrics["twice"], 2 * res.params["x"])
    assert res.dims_of("metrics/twice") == res.dims_of("metrics") == ("lr", "c", "step")
    assert res.metrics["twice"].shape == (2, 2, 9, 3)  # then the metric's own shape


def test_metrics_are_saved_loaded_and_resumed(res, tmp_path, monkeypatch):
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz")
    for name in METRICS:
        np.testing.assert_array_equal(back.metrics[name], res.metrics[name])
    real = checkpoint.Store.save_progress
    calls = {"n": 0}

    def crash_on_the_third(self, *a, **k):
        real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    kw = dict(record_every=5, metrics=METRICS, progress=False, segments=8,
              checkpoint_seconds=0.0, out=tmp_path / "run")
    monkeypatch.setattr(checkpoint.Store, "save_progress", crash_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        bpjax.sweep(loss, init, "sgd", GRID, 40, **kw)
    monkeypatch.setattr(checkpoint.Store, "save_progress", real)
    resumed = bpjax.sweep(loss, init, "sgd", GRID, 40, **kw)
    for name in METRICS:
        np.testing.assert_array_equal(resumed.metrics[name], res.metrics[name])


@pytest.mark.parametrize("metrics, message", [
    ({"m": "hessian_trace"}, "unknown metric 'hessian_trace'"),
    ({"m": 3}, "metric 'm' must be callable"),
    ({"m": lambda p, f: {"a": f(p)}}, "metric 'm' must return an array"),
    ({"m": lambda p, f: "high"}, "metric 'm' failed"),
    ({"bad name": "grad_norm"}, "must be Python identifiers"),
    ("grad_norm", "metrics must be a dict"),
])
def test_bad_metrics_are_refused_before_compiling(metrics, message, compiles):
    with compiles, pytest.raises((ValueError, TypeError), match=message):
        bpjax.sweep(loss, init, "sgd", GRID, 10, metrics=metrics, progress=False)
    assert compiles.count == 0


def test_metrics_need_trajectories():
    with pytest.raises(ValueError, match="need record='full'"):
        bpjax.sweep(loss, init, "sgd", GRID, 10, metrics=["grad_norm"], record="summary",
                    target=0.1, progress=False)
