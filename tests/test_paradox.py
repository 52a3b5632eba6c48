"""Seed 000: the turn of w1, against the sign of w2, and the sweep's numbers and its oracles
against a float32 NumPy reimplementation of every optimizer."""

import os
import sys

import numpy as np
import pytest

from bpjax import trajectories
from bpjax.experiments import paradox

sys.path.insert(0, os.path.dirname(__file__))
from test_seed000 import numpy_gd  # noqa: E402

f = np.float32


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("paradox")
    return paradox.run(str(out), quick=True), out


def numpy_steps_to_threshold(w1, w2, method, steps, record_every, lr=0.1):
    """Steps until 0.5 (y - 0.9)^2 < paradox.THRESHOLD at a record (-1: never), float32,
    vectorized over starts; backprop by hand as in test_seed000, the optimizers from their
    textbook formulas (optax's momentum and Adam, eps 1e-8)."""
    x, t, lr = f(0.9), f(0.9), f(lr)
    w1, w2 = np.array(w1, f), np.array(w2, f)
    m1, m2, v1, v2 = (np.zeros_like(w1) for _ in range(4))
    out = np.full(w1.shape, -1)
    for k in range(steps + 1):
        h = f(1) / (f(1) + np.exp(-w1 * x))
        y = f(1) / (f(1) + np.exp(-w2 * h))
        if k % record_every == 0:
            out[(f(0.5) * (y - t) ** 2 < paradox.THRESHOLD) & (out < 0)] = k
        dy = (y - t) * y * (f(1) - y)
        g1, g2 = dy * w2 * h * (f(1) - h) * x, dy * h
        if method == "sgd":
            u1, u2 = -lr * g1, -lr * g2
        elif method == "oracle: w1 never decreases":
            u1, u2 = np.maximum(-lr * g1, f(0)), -lr * g2
        elif method == "oracle: w2's final sign known":
            u1, u2 = -lr * g1 * np.sign(w2), -lr * g2
        elif method == "momentum":
            m1, m2 = g1 + f(0.9) * m1, g2 + f(0.9) * m2
            u1, u2 = -lr * m1, -lr * m2
        elif method == "adam":
            b1, b2 = f(0.9), f(0.999)
            m1, m2 = b1 * m1 + (1 - b1) * g1, b1 * m2 + (1 - b1) * g2
            v1, v2 = b2 * v1 + (1 - b2) * g1**2, b2 * v2 + (1 - b2) * g2**2
            c1, c2 = f(1 - 0.9 ** (k + 1)), f(1 - 0.999 ** (k + 1))
            u1 = -lr * (m1 / c1) / (np.sqrt(v1 / c2) + f(1e-8))
            u2 = -lr * (m2 / c1) / (np.sqrt(v2 / c2) + f(1e-8))
        w1, w2 = w1 + u1, w2 + u2
    return out


def test_w1_turns_exactly_when_w2_changes_sign():
    runs = paradox.seed_runs(400)
    r = runs[-0.5]
    w1, w2 = r.params["w1"], r.params["w2"]
    # Analytic: while y < 0.9 the step of w1 has the sign of w2.
    moves = np.sign(np.diff(w1))
    assert np.all(moves[w2[:-1] < 0] < 0) and np.all(moves[w2[:-1] > 0] > 0)
    _, w2_numpy, _ = numpy_gd(0.1, -0.5, 400)  # the hand-written NumPy loop
    first_positive = int(np.argmax(w2_numpy > 0))
    assert int(trajectories.first_turn(w1)) == first_positive == int(np.argmax(w2 > 0))
    assert np.all(np.diff(r.loss) <= 0)  # the output approaches the target monotonically
    assert trajectories.is_monotone(runs[0.1].params["w1"])


def test_sweep_numbers(quick):
    numbers, out = quick
    sgd = numbers["per_optimizer"]["sgd"]
    # In SGD only w1 can turn (w2's step has the sign of 0.9 - y), and the loss never rises.
    assert sgd["fraction_w2_non_monotone"] == 0
    assert sgd["fraction_loss_non_monotone"] == 0
    assert 0.2 < sgd["fraction_w1_non_monotone"] <= 0.5  # w2 < 0 is half the grid
    turn = numbers["seed_runs"]["w2=-0.5"]
    assert turn["w1_first_turn_step"] == turn["w2_first_positive_step"]
    assert (out / "grid.png").exists() and (out / "seed_runs.png").exists()


def _median_steps(s):
    return float(np.median(np.where(s >= 0, s, np.inf)))


def test_steps_and_medians_match_numpy(quick):
    """Every start of the quick grid, every optimizer and oracle, against the NumPy loop."""
    numbers, out = quick
    size = paradox.SIZES["quick"]
    table = np.loadtxt(out / "steps_to_threshold.csv", delimiter=",", skiprows=1)
    w1, w2 = table[:, 0], table[:, 1]
    methods = [(m, size["steps"]) for m in paradox.OPTIMIZERS] + [
        (m, size["oracle_steps"]) for m in paradox.ORACLES]
    ref = {}
    for col, (method, steps) in enumerate(methods, start=2):
        ref[method, steps] = numpy_steps_to_threshold(w1, w2, method, steps,
                                                      size["record_every"])
        got = table[:, col]
        # float32 in both, but XLA may round differently: allow 1% of starts one record off
        off = got != ref[method, steps]
        assert off.mean() <= 0.01, (method, off.sum())
        assert np.all(np.abs(got - ref[method, steps])[off] <= size["record_every"]), method
    for method in paradox.OPTIMIZERS:
        s = ref[method, size["steps"]]
        row = numbers["per_optimizer"][method]
        assert row["fraction_reaching_threshold"] == pytest.approx(np.mean(s >= 0), abs=0.01)
        assert abs(row["median_steps_to_threshold"] - np.median(s[s >= 0])) <= 10, method
    gd = ref["sgd", size["oracle_steps"]]
    for method in list(paradox.ORACLES)[1:]:
        s = ref[method, size["oracle_steps"]]
        for region, mask in (("all starts", np.ones_like(w2, bool)),
                             ("starts with w2 < 0", w2 < 0)):
            row = numbers["oracles"][method][region]
            assert abs(row["gd_median_steps"] - _median_steps(gd[mask])) <= 10
            assert abs(row["oracle_median_steps"] - _median_steps(s[mask])) <= 10
            assert row["starts_only_oracle_reaches"] == pytest.approx(
                np.sum(mask & (s >= 0) & (gd < 0)), abs=0.01 * mask.sum())


def test_anticipating_w2s_sign_saves_more_than_the_detour(quick):
    """Knowing w2's final sign moves w1 up from the start; GD's detour shrinks
    h = s(0.9 w1), and w2's gradient is proportional to h: from the most negative starts GD
    does not reach the threshold within the budget, the oracle always does."""
    numbers, _ = quick
    row = numbers["oracles"]["oracle: w2's final sign known"]["starts with w2 < 0"]
    assert row["oracle_fraction_reaching"] == 1.0 and row["gd_fraction_reaching"] < 0.9
    assert row["starts_only_gd_reaches"] == 0
    assert row["oracle_median_steps"] < row["gd_median_steps"]
    # from the corner (-3, -3) GD takes 151,100 steps (this NumPy loop with a 1e6-step
    # budget: too slow for a test); the oracle 3,700, as the docstring says
    corner = numpy_steps_to_threshold([-3.0], [-3.0], "oracle: w2's final sign known", 6000,
                                      10)[0]
    assert corner == 3700
    assert numpy_steps_to_threshold([-3.0], [-3.0], "sgd", 6000, 10)[0] == -1
