"""The log-rule wrapper against plain optax and against the log law by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax.log_rule import log_extrapolate
from experiments import log_speedup


def loop(tx, steps, x0=0.0):
    loss = lambda p: (jnp.tanh(p["x"]) - 1.0) ** 2  # noqa: E731
    params = {"x": jnp.float32(x0)}
    state = tx.init(params)
    grad = jax.jit(jax.grad(loss))
    out = []
    for _ in range(steps):
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(float(params["x"]))
    return np.array(out)


def test_between_checks_it_is_the_inner_optimizer():
    plain = loop(optax.sgd(0.1), 99)
    wrapped = loop(log_extrapolate(optax.sgd(0.1), every=100), 99)
    np.testing.assert_array_equal(plain, wrapped)


def test_a_steady_coordinate_jumps_by_b_log_2():
    every = 1000
    plain = loop(optax.sgd(0.1), 2 * every)
    wrapped = loop(log_extrapolate(optax.sgd(0.1), every=every, rtol=0.5), 2 * every)
    np.testing.assert_array_equal(plain[: 2 * every - 1], wrapped[: 2 * every - 1])
    # At step 2*every, b = t * (x_t - x_{t-1}) is steady: the jump is b log(1 + 1).
    b = 2 * every * (plain[-1] - plain[-2])
    np.testing.assert_allclose(wrapped[-1] - plain[-1], b * np.log(2), rtol=1e-3)


def test_it_speeds_up_pure_log_growth(tmp_path):
    numbers = log_speedup.run(str(tmp_path), quick=True)
    neuron = numbers["problems"]["neuron (tanh(x) - 1)^2"]
    assert neuron["median_speedup_where_both_reach"] > 2
    assert neuron["runs_only_plain_gd_reaches"] == 0
