"""Vanishing gradients (seed 003): the depth-masked net is exactly an L-layer mlp, and
the measured decay rates sit where the analysis puts them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpjax import nets
from experiments import vanishing_gradients as vg


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_masked_net_equals_an_explicit_net_of_that_depth(act):
    p = vg.init_params(jax.random.key(3), jnp.int32(1), 6)
    x = jax.random.normal(jax.random.key(4), (5, 64))
    for depth in (1, 3, 6):
        layers = [p["first"]] + [{"w": p["hidden"]["w"][i], "b": p["hidden"]["b"][i]}
                                 for i in range(depth - 1)] + [p["out"]]
        net = nets.mlp([64] + [vg.WIDTH] * depth + [10], activation=act)
        ref = jax.vmap(net.apply, (None, 0))({"layers": layers}, x)
        np.testing.assert_allclose(vg.apply(p, x, depth, act), ref, rtol=1e-5, atol=1e-6)


def test_decay_rates(tmp_path):
    numbers = vg.run(str(tmp_path), quick=True)
    f = numbers["per_layer_factor"]
    # sigmoid with Xavier: about the 0.25 of g' <= 1/4; the textbook's tiny uniform
    # init far below it; relu with He about 1 (norm kept).
    assert 0.15 < f["sigmoid/xavier"] < 0.35
    assert f["sigmoid/uniform"] < 0.05 and f["relu/uniform"] < 0.05
    assert 0.85 < f["relu/he"] < 1.15
    # the sigmoid curve lies below the 0.25^L bound drawn from its own L = 1 value
    first = np.asarray(numbers["first_layer_grad_norm"]["sigmoid/xavier"])
    bound = first[0] * 0.25 ** np.arange(len(first)) * 4  # margin: seeds differ in scale
    assert np.all(first <= bound)
    assert numbers["trained_fraction"]["tanh/xavier"][0] == 1.0
    assert numbers["trained_fraction"]["sigmoid/uniform"][-1] == 0.0
