"""Seed 001 (Sontag): critical points against a NumPy scan, basins, and the log-rate limit."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from bpjax.experiments import log_rule, sontag_minima


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


def numpy_dE_terms(x, a):
    """Sontag's two terms of E', by hand: the first < 0, the second <= 0 for a >= 0. Written
    without cancellation (tanh z - 1 = -2 / (1 + e^(2z)), tanh' = 1 / cosh^2), so that near
    |x| = 15 it is more accurate than the experiment's 1 - tanh^2 (good to ~1e-3 there)."""
    term = lambda z: -2 / (1 + np.exp(2 * z)) / np.cosh(z) ** 2  # noqa: E731
    return 2 * term(x), 2 * a * term(a * x)


def test_cases_1_and_2_have_no_finite_critical_point():
    a = np.array([0.0, 0.5, 2.0, 10.0])
    n = 300_001
    changes, largest = sontag_minima.critical_point_count(a, n)
    xs = np.linspace(*sontag_minima.FINE_X, n)
    for i, av in enumerate(a):
        first, second = numpy_dE_terms(xs, av)
        assert np.all(first < 0) and np.all(second <= 0)  # his argument, term by term
        g = first + second
        assert changes[i] == np.sum(np.sign(g[:-1]) != np.sign(g[1:])) == 0
        np.testing.assert_allclose(largest[i], g.max(), rtol=1e-2)
        assert largest[i] < 0
    # The same count sees case 3's minimum and maximum. (Not for -2 < a < 0 on this range:
    # there tanh(a x) rounds to -1 beyond |a x| ~ 19 and E' gains a spurious sign change.)
    changes, _ = sontag_minima.critical_point_count(np.array([-10.0, -5.0, -2.5]), n)
    assert changes.tolist() == [2, 2, 2]


def test_basin_boundary_is_within_one_cell_of_the_maximum(tmp_path):
    numbers = sontag_minima.run(str(tmp_path), quick=True)
    c12 = numbers["cases_1_and_2"]
    a = np.asarray(c12["a"])
    assert a.min() == 0 and a.max() == 10
    xs = np.linspace(*c12["x_range"], c12["grid_points"])
    g = np.array([sum(numpy_dE_terms(xs, av)) for av in a])
    assert c12["critical_points_found"] == 0
    np.testing.assert_allclose(c12["largest_dE_over_the_grid"], g.max(), rtol=1e-2)
    assert c12["critical_points_per_a_in_case_3_same_count"] == [2] * len(numbers["a"])
    assert numbers["verdict"] == "reproduced"
    assert numbers["rows_within_one_cell"] == 1.0
    assert numbers["fraction_of_those_arrived_within_the_steps"] > 0.9
    assert 0 < numbers["fraction_of_starts_to_finite_minimum"] < 1


def test_t_dx_tends_to_one_quarter(tmp_path):
    numbers = log_rule.run(str(tmp_path))
    assert numbers["max_relative_error_vs_limit"] < 0.02
    np.testing.assert_allclose(numbers["final_x"], numbers["predicted_final_x"], atol=5e-3)


@pytest.fixture(scope="module")
def diverging_quick(tmp_path_factory):
    from bpjax.experiments import diverging_weights

    return diverging_weights.run(str(tmp_path_factory.mktemp("diverging")), quick=True)


def test_separable_sets_diverge_and_paired_ones_stay_bounded(diverging_quick):
    numbers = diverging_quick
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
    from bpjax.experiments import diverging_weights

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


def stiemke_certificate(rows) -> bool:
    """The other side of Stiemke's alternative, by its own LP: is there a p > 0 (scaled to
    p >= 1) with A^T p = 0? Exactly one of this and "some v has A v >= 0, A v != 0"
    holds, so it checks escape_direction independently."""
    n, dim = rows.shape
    lp = linprog(np.zeros(n), A_eq=rows.T, b_eq=np.zeros(dim), bounds=[(1, None)] * n,
                 method="highs")
    return lp.status == 0


def test_escape_direction_on_hand_made_sets():
    from bpjax.experiments.diverging_weights import escape_direction

    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    with_bias = np.concatenate([x, np.ones((4, 1))], 1)
    signs = lambda labels: np.where(np.asarray(labels) > 0, 1.0, -1.0)[:, None]  # noqa: E731
    separable = signs([0, 0, 0, 1]) * with_bias  # AND: rows y_i [x_i, 1]
    xor = signs([0, 1, 1, 0]) * with_bias  # the rows sum to 0: p = (1, 1, 1, 1)
    e = np.eye(3)
    conflict_with_v = np.stack([e[0], e[1], e[2], -e[2]])  # v = e0 + e1, orthogonal to e2
    around = [np.cos(a) * e[0] + np.sin(a) * e[1] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]
    conflict_without_v = np.stack(around + [e[2], -e[2]])  # the plane's rows surround 0
    for rows, expected in ((separable, True), (xor, False), (conflict_with_v, True),
                           (conflict_without_v, False)):
        v = escape_direction(rows)
        assert (v is not None) == expected
        assert stiemke_certificate(rows) == (not expected)
        if expected:
            assert np.all(rows @ v >= -1e-9) and np.sum(rows @ v) >= 1 - 1e-9


def test_reported_counts_match_an_independent_recount(diverging_quick):
    from bpjax.experiments import diverging_weights

    lemma = diverging_quick["lemma"]
    sets, family = diverging_weights.data_sets(lemma["sets_per_family"])
    no_v = np.array([stiemke_certificate(a) for a in sets])
    # Gradient descent from 0 in NumPy, float64: |x| grows by more than 0.01 per unit of
    # log t from half the steps to the end...
    steps = diverging_weights.SIZES["quick"]["steps"]

    def descend(a, x, t0, t1):
        norms = {}
        for t in range(t0 + 1, t1 + 1):
            th = np.tanh(np.einsum("snd,sd->sn", a, x))
            x = x - lemma["lr"] * np.einsum("snd,sn->sd", a, -2 * (1 - th) * (1 - th**2))
            if t in ((t1 - t0) // 2 + t0, t1):
                norms[t] = np.linalg.norm(x, axis=1)
        return x, (norms[t1] - norms[(t1 - t0) // 2 + t0]) / np.log(t1 / ((t1 - t0) // 2 + t0))

    x, slope = descend(sets, np.zeros((len(sets), 3)), 0, steps)
    rising = slope > 0.01
    # ...and still does over ten times as many steps (where the experiment asks Newton
    # whether a rising run is only settling slowly into a finite minimum).
    _, later = descend(sets[rising], x[rising], steps, 10 * steps)
    growing = rising.copy()
    growing[rising] = later > 0.01
    for f, name in enumerate(diverging_weights.FAMILIES):
        mine = family == f
        row = lemma[name]
        assert row["sets_with_v"] == np.sum(mine & ~no_v)
        assert row["growing_with_v"] == np.sum(mine & ~no_v & growing)
        assert row["sets_without_v"] == np.sum(mine & no_v)
        assert row["growing_without_v"] == np.sum(mine & no_v & growing)
        assert row["fraction_growing"] == pytest.approx(np.mean(growing[mine]), abs=1e-12)
    assert lemma["lp_finds_v"]["sets"] == np.sum(~no_v)
    assert lemma["lp_finds_v"]["growing"] == np.sum(~no_v & growing) == np.sum(~no_v)
    assert lemma["no_v"]["growing"] == np.sum(no_v & growing)
    one = lemma["one-conflict"]
    assert 0 < one["sets_with_v"] < one["sets"]  # both groups are populated at this size
    assert one["rising_at_the_end_but_settling"] == np.sum((family == 2) & rising & ~growing)
    assert str(one["growing_with_v"]) in diverging_quick["finding"]
