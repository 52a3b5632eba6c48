"""Seed 001 (Sontag): critical points against a NumPy scan, basins, and the log-rate limit."""

import jax.numpy as jnp
import numpy as np

from experiments import log_rule, sontag_minima


def numpy_dE(x, a):
    t1, t2 = np.tanh(x), np.tanh(a * x)
    return 2 * (t1 - 1) * (1 - t1**2) + 2 * a * (t2 - 1) * (1 - t2**2)


def test_critical_points_match_a_float64_numpy_scan():
    a = np.array([-10.0, -5.0, -3.0, -2.5])
    x_min, x_max = (np.asarray(v) for v in sontag_minima.critical_points(jnp.asarray(a)))
    xs = np.linspace(-3, 8, 2_000_001)
    for i, av in enumerate(a):
        g = numpy_dE(xs, av)
        roots = xs[:-1][np.sign(g[:-1]) != np.sign(g[1:])]
        assert len(roots) == 2  # a finite minimum and a local maximum, for a < -2
        np.testing.assert_allclose([x_min[i], x_max[i]], roots, atol=2e-5)
    # Sontag: the cost at the maximum exceeds its limit 4 at infinity
    e_max = (np.tanh(x_max) - 1) ** 2 + (np.tanh(a * x_max) - 1) ** 2
    assert np.all(e_max > 4)


def test_above_minus_two_there_is_no_second_minimum():
    xs = np.linspace(-3, 8, 2_000_001)  # beyond ~9.7, tanh(1.9 x) rounds to 1 in float64
    for av in (-1.9, -1.5, -1.0):
        g = numpy_dE(xs, av)
        assert np.sum(np.sign(g[:-1]) != np.sign(g[1:])) == 1


def test_basin_boundary_is_within_one_cell_of_the_maximum(tmp_path):
    numbers = sontag_minima.run(str(tmp_path), quick=True)
    assert numbers["rows_within_one_cell"] == 1.0
    assert numbers["fraction_of_those_arrived_within_the_steps"] > 0.9
    assert 0 < numbers["fraction_of_starts_to_finite_minimum"] < 1


def test_t_dx_tends_to_one_quarter(tmp_path):
    numbers = log_rule.run(str(tmp_path))
    assert numbers["max_relative_error_vs_limit"] < 0.02
    np.testing.assert_allclose(numbers["final_x"], numbers["predicted_final_x"], atol=5e-3)


def test_separable_sets_diverge_and_paired_ones_stay_bounded(tmp_path):
    from experiments import diverging_weights

    numbers = diverging_weights.run(str(tmp_path), quick=True)
    lemma = numbers["lemma"]
    assert lemma["separable"]["fraction_growing"] == 1.0
    assert lemma["separable"]["norm_slope_in_log_t_min"] > 0.1
    assert lemma["paired"]["fraction_growing"] == 0.0
    assert lemma["paired"]["final_norm_max"] < 2.0
    # Figure 5: on the solved XOR runs the weights keep growing, at a rate in log t
    # that changes little between the last two windows.
    assert numbers["xor"]["solved_fraction"] > 0
    assert numbers["xor"]["growing_weights_fraction"] > 0.5


def test_lemma_rows_against_a_numpy_gradient_descent():
    from experiments import diverging_weights

    sets, family = diverging_weights.data_sets(4)
    a = sets[family == 1][0]
    x = np.zeros(3)
    for _ in range(3000):
        th = np.tanh(a @ x)
        x -= 0.01 * a.T @ (-2 * (1 - th) * (1 - th**2))
    # The paired set's minimum is where each z = a x solves its own 1-D problem; a
    # tiny gradient there confirms a finite minimum (no escape to infinity).
    th = np.tanh(a @ x)
    assert np.linalg.norm(a.T @ (-2 * (1 - th) * (1 - th**2))) < 1e-6
