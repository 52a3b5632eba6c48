"""The log-rule wrapper against plain optax and against the log law by hand; log_speedup's
single-neuron numbers against a NumPy loop of the same GD and the same extrapolation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax
from bpjax.experiments import log_speedup
from bpjax.extrapolate import log_extrapolate


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


@pytest.fixture(scope="module")
def speedup(tmp_path_factory):
    return log_speedup.run(str(tmp_path_factory.mktemp("log_speedup")), quick=True)


NEURON = "neuron (tanh(x) - 1)^2"


def test_it_speeds_up_pure_log_growth(speedup):
    neuron = speedup["problems"][NEURON]
    assert neuron["median_speedup_where_both_reach"] > 2
    assert neuron["runs_only_plain_gd_reaches"] == 0
    # the seeds are different starts, not copies of one run
    assert neuron["distinct_starts_per_lr"] == log_speedup.SIZES["quick"]["seeds"]


def numpy_steps_to_target(x0, lr, steps, record_every, extrapolate, every=100, jump=1.0,
                          rtol=0.05, target=1e-4):
    """Float64 GD on (tanh x - 1)^2, optionally with the log rule written out by hand: every
    ``every`` steps, where b = tau * step kept its sign and moved by <= rtol |b| since the last
    check, add b log(1 + jump) and multiply tau by (1 + jump)."""
    x, tau, rate = float(x0), 0.0, 0.0
    for k in range(steps + 1):
        if k % record_every == 0 and (math.tanh(x) - 1) ** 2 < target:
            return k
        th = math.tanh(x)
        u = 2 * lr * (1 - th) ** 2 * (1 + th)  # -lr f'(x)
        if extrapolate:
            tau += 1
            b = tau * u
            if (k + 1) % every == 0:
                if b != 0 and np.sign(b) == np.sign(rate) and abs(b - rate) <= rtol * abs(b):
                    u += b * math.log1p(jump)
                    tau *= 1 + jump
                rate = b
        x += u
    return -1


def test_neuron_speedup_matches_a_numpy_loop(speedup):
    size = log_speedup.SIZES["quick"]
    p = log_speedup.problems_to_run()[NEURON]
    x0 = bpjax.initial_params(p["init"], bpjax.Grid(lr=p["lrs"], seed=np.arange(size["seeds"])))
    runs = speedup["problems"][NEURON]["steps_to_target_per_run"]
    ref = {}
    for name, extrapolate in (("GD", False), ("GD + log extrapolation", True)):
        ref[name] = np.array([[numpy_steps_to_target(x0["x"][i, s], lr, size["steps"],
                                                     size["record_every"], extrapolate)
                               for s in range(size["seeds"])] for i, lr in enumerate(p["lrs"])])
        # float32 against float64: a crossing may land one record later or earlier
        np.testing.assert_allclose(np.asarray(runs[name]), ref[name], atol=size["record_every"])
    gd, log = ref["GD"], ref["GD + log extrapolation"]
    both = (gd >= 0) & (log >= 0)
    assert both.sum() >= 4  # lr 0.1 and 1 reach the target at this size, lr 0.01 does not
    np.testing.assert_allclose(speedup["problems"][NEURON]["median_speedup_where_both_reach"],
                               np.median(gd[both] / np.maximum(log[both], 1)), rtol=0.05)


def test_headline_at_default_size_by_numpy_alone():
    """The docstring's 10.7x (median over 3 lrs x 8 starts, 1e5 steps), from the NumPy loop
    alone: 58x at lr 0.01, 10.7x at lr 0.1, 2.0x at lr 1 (medians over the starts)."""
    size = log_speedup.SIZES["default"]
    p = log_speedup.problems_to_run()[NEURON]
    x0 = bpjax.initial_params(p["init"], bpjax.Grid(lr=p["lrs"], seed=np.arange(size["seeds"])))
    ratio = np.array([[numpy_steps_to_target(x0["x"][i, s], lr, size["steps"], 100, False)
                       / numpy_steps_to_target(x0["x"][i, s], lr, size["steps"], 100, True)
                       for s in range(size["seeds"])] for i, lr in enumerate(p["lrs"])])
    assert np.all(ratio > 0)  # every run of both reaches the target
    np.testing.assert_allclose(np.median(ratio), 10.67, rtol=0.01)
    np.testing.assert_allclose(np.median(ratio, axis=1), [58, 10.67, 2.04], rtol=0.03)
