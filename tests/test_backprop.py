"""The delta rule (seed 003) against jax.grad on random architectures, and training
with it against training with jax.grad."""

import jax
import numpy as np
import pytest

import bpjax
from bpjax import backprop, losses, nets


def random_case(i):
    rng = np.random.default_rng(i)
    depth = int(rng.integers(1, 6))
    sizes = [int(s) for s in rng.integers(1, 9, size=depth + 1)]
    activation = ["sigmoid", "tanh", "relu"][i % 3]
    bias = bool(rng.integers(0, 2))
    loss = ["mse", "half_mse", "cross_entropy"][(i // 3) % 3]
    out_act = "identity" if loss == "cross_entropy" else ["identity", "sigmoid", "tanh"][i % 3]
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    n = int(rng.integers(1, 17))
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = (rng.integers(0, sizes[-1], size=n) if loss == "cross_entropy"
         else rng.normal(size=(n, sizes[-1]))).astype(np.int32 if loss == "cross_entropy"
                                                       else np.float32)
    net = nets.mlp(sizes, activation=activation, bias=bias, output_activation=out_act)
    params = net.init(jax.random.key(i), w_init=bpjax.initializers.normal(1.0),
                      b_init=bpjax.initializers.normal(0.5))
    per_example = {"mse": "mse", "half_mse": "half_mse", "cross_entropy": "cross_entropy"}[loss]
    return net, params, (x, y), activation, out_act, loss, per_example


@pytest.mark.parametrize("i", range(24))
def test_delta_rule_equals_jax_grad(i):
    net, params, batch, act, out_act, loss, per_example = random_case(i)
    ref = jax.jit(jax.grad(losses.supervised(net.apply, per_example)))(params, batch)
    got = jax.jit(backprop.gradient, static_argnums=(2, 3, 4))(params, batch, act, out_act, loss)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    r, g = (np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)]) for t in (ref, got))
    assert np.linalg.norm(g - r) <= 1e-5 * max(np.linalg.norm(r), 1e-30) + 1e-12
    # and the custom_vjp loss: same value, and its jax.grad is the delta rule
    f = jax.jit(backprop.loss(act, out_act, loss))
    np.testing.assert_allclose(f(params, batch),
                               losses.supervised(net.apply, per_example)(params, batch),
                               rtol=1e-6)
    via = jax.tree.leaves(jax.jit(jax.grad(f))(params, batch))
    via = np.concatenate([np.ravel(a) for a in via])
    np.testing.assert_allclose(via, g, rtol=1e-6, atol=1e-7)  # two compiled programs


def test_training_with_the_delta_rule_follows_jax_grad():
    x, y = bpjax.problems.xor()
    net = nets.mlp([2, 4, 1], activation="sigmoid", output_activation="sigmoid")
    init = lambda c, k: net.init(k, w_init=bpjax.initializers.normal(1.0))  # noqa: E731
    grid = bpjax.Grid(lr=[0.5, 2.0], seed=np.arange(4))
    kw = dict(record_every=100, data=(x, y))
    ours = bpjax.sweep(backprop.loss("sigmoid", "sigmoid", "mse"), init, "sgd", grid, 2000, **kw)
    ref = bpjax.sweep(losses.supervised(net.apply, "mse"), init, "sgd", grid, 2000, **kw)
    np.testing.assert_allclose(ours.loss, ref.loss, rtol=2e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(ours.final_params), jax.tree.leaves(ref.final_params)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    assert ours.final_loss.min() < 0.05  # it learns XOR


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="delta rule is written for"):
        backprop.loss("gelu")
    with pytest.raises(ValueError, match="cross_entropy takes logits"):
        backprop.loss("tanh", "sigmoid", "cross_entropy")
