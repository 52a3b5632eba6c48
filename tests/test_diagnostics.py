"""Diagnostics against full Hessians, NumPy loops and exact identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bpjax import diagnostics, losses, nets, problems


@pytest.mark.parametrize("sizes,act,seed", [([4, 6, 3], "tanh", 0), ([3, 5, 5, 2], "relu", 1),
                                            ([2, 8, 1], "sigmoid", 2)])
def test_sharpness_matches_the_full_hessian(sizes, act, seed):
    net = nets.mlp(sizes, activation=act)
    params = net.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, sizes[0])).astype(np.float32)
    y = rng.normal(size=(16, sizes[-1])).astype(np.float32)
    loss = lambda p: losses.supervised(net.apply, "mse")(p, (x, y))  # noqa: E731
    flat, unravel = ravel_pytree(params)
    hessian = jax.hessian(lambda f: loss(unravel(f)))(flat)
    eig = np.linalg.eigvalsh(np.asarray(hessian, np.float64))
    top = eig[np.argsort(-np.abs(eig))][:3]
    got = np.asarray(diagnostics.sharpness(loss, params, k=3, iters=300))
    np.testing.assert_allclose(got[0], top[0], rtol=1e-3)
    np.testing.assert_allclose(got, top, rtol=2e-2, atol=1e-3 * abs(top[0]))


def test_dead_units_and_saturation_against_numpy():
    net = nets.mlp([3, 5, 4, 2], activation="relu")
    params = net.init(jax.random.key(0))
    params["layers"][0]["b"] = jnp.array([-100.0, 0.0, 0.0, -100.0, 0.0])  # two dead
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    got = np.asarray(diagnostics.dead_units(params, x))
    w = [np.asarray(layer["w"]) for layer in params["layers"]]
    b = [np.asarray(layer["b"]) for layer in params["layers"]]
    z1 = x @ w[0] + b[0]
    z2 = np.maximum(z1, 0) @ w[1] + b[1]
    np.testing.assert_allclose(got, [np.mean(np.all(z1 <= 0, 0)), np.mean(np.all(z2 <= 0, 0))])
    assert got[0] >= 0.4
    logits = np.array([[9.0, 0, 0], [1, 0, 0], [0, 0, 20], [1, 1, 1]], np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(diagnostics.softmax_saturation(logits)) == np.mean(p.max(1) > 0.99)


def test_layer_grad_norms_and_plateaus():
    net = nets.mlp([2, 4, 1], activation="tanh")
    params = net.init(jax.random.key(0))
    loss = losses.supervised(net.apply, "mse")
    data = problems.xor()
    g = jax.grad(loss)(params, data)
    expect = [np.sqrt(np.sum(np.asarray(layer["w"]) ** 2) + np.sum(np.asarray(layer["b"]) ** 2))
              for layer in g["layers"]]
    np.testing.assert_allclose(diagnostics.layer_grad_norms(loss, params, data), expect,
                               rtol=1e-6)
    curve = np.array([[1.0, 0.5, 0.4999, 0.4999, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(diagnostics.plateau_fraction(curve), [0.5, 1.0])
