"""Census of minima (seed 001): polished end points checked against a NumPy float64
gradient and finite-difference Hessian, and the symmetry canonical form against
explicit permutations and sign flips."""

import numpy as np
import pytest

from bpjax import critical
from bpjax.experiments import minima_census


def numpy_loss_and_grad(theta, x, y, h):
    """Mean half squared error of a 2-h-1 tanh net and its gradient, by hand."""
    w1, b1 = theta[: 2 * h].reshape(2, h), theta[2 * h: 3 * h]
    w2, b2 = theta[3 * h: 4 * h].reshape(h, 1), theta[4 * h:]
    a = np.tanh(x @ w1 + b1)
    r = a @ w2 + b2 - y
    n = len(x)
    d_out = r / n
    d_hidden = (d_out @ w2.T) * (1 - a**2)
    grad = np.concatenate([(x.T @ d_hidden).ravel(), d_hidden.sum(0), (a.T @ d_out).ravel(),
                           d_out.sum(0)])
    return 0.5 * np.mean(np.sum(r**2, axis=1)), grad


def flat(params, i):
    first, second = params["layers"]
    return np.concatenate([first["w"][i].ravel(), first["b"][i], second["w"][i].ravel(),
                           second["b"][i]])


@pytest.fixture(scope="module")
def xor_rows():
    x, y = minima_census.datasets()["xor"]
    return x, y, {h: minima_census.census((x, y), h, starts=48, steps=1500, polish_iters=60)
                  for h in (1, 2, 3)}


def test_minima_are_stationary_with_no_descent_direction_in_numpy(xor_rows):
    x, y, rows = xor_rows
    checked = 0
    for h, row in rows.items():
        params, losses = row["_minimum_params"], row["_minimum_loss"]
        for i in range(len(losses)):
            theta = flat(params, i)
            loss, grad = numpy_loss_and_grad(theta, x, y, h)
            assert abs(loss - losses[i]) < 1e-12
            assert np.linalg.norm(grad) < 1e-8
            eps = 1e-5  # central differences of the hand-written gradient
            hess = np.stack([(numpy_loss_and_grad(theta + eps * e, x, y, h)[1]
                              - numpy_loss_and_grad(theta - eps * e, x, y, h)[1]) / (2 * eps)
                             for e in np.eye(len(theta))])
            assert np.linalg.eigvalsh((hess + hess.T) / 2)[0] > -1e-6
            checked += 1
    assert checked > 50


def test_one_hidden_unit_cannot_fit_xor_and_three_always_do(xor_rows):
    _, _, rows = xor_rows
    # v tanh(w.x + b) + c is monotone in one linear feature; XOR is not separable by
    # one, so the loss stays away from 0 at every minimum of the h = 1 net.
    assert min(rows[1]["loss_levels"]) > 0.2
    assert rows[3]["loss_levels"][0] < 1e-20 and rows[3]["global_level_fraction"] > 0.9
    assert rows[2]["fraction_of_minima_degenerate"] == 1.0  # 9 params, 4 points: valleys


def test_canonical_form_is_the_same_on_the_whole_symmetry_orbit(xor_rows):
    x, y, rows = xor_rows
    params = rows[3]["_minimum_params"]
    rng = np.random.default_rng(0)
    base = critical.canonical_one_hidden(params)
    for _ in range(5):
        perm = rng.permutation(3)
        sign = rng.choice([-1.0, 1.0], size=3)
        first, second = params["layers"]
        moved = {"layers": [{"w": first["w"][..., perm] * sign, "b": first["b"][..., perm] * sign},
                            {"w": second["w"][:, perm] * sign[:, None], "b": second["b"]}]}
        np.testing.assert_array_equal(critical.canonical_one_hidden(moved), base)
        for i in range(3):  # the same function: equal loss
            assert abs(numpy_loss_and_grad(flat(moved, i), x, y, 3)[0]
                       - numpy_loss_and_grad(flat(params, i), x, y, 3)[0]) < 1e-14


def test_count_distinct():
    n, labels = critical.count_distinct(np.array([[0.0], [1e-9], [1.0], [0.5], [1.0]]), 1e-6)
    assert n == 3 and labels.tolist() == [0, 0, 1, 2, 1]


# The scale-and-refit ray test, on hand-built points whose fate is known analytically.
XOR = minima_census.datasets()["xor"]


def refit_theta(w, b, x, y):
    """Params (flat, as numpy_loss_and_grad reads them) with the output layer refitted by
    np.linalg.lstsq: the independent reference for the ray's pinv refit."""
    design = np.concatenate([np.tanh(x @ w + b), np.ones((len(x), 1))], 1)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return np.concatenate([w.ravel(), b, coef[:-1, 0], coef[-1:, 0]])


def fd_hessian_min_eig(theta, x, y, h, eps=1e-5):
    hess = np.stack([(numpy_loss_and_grad(theta + eps * e, x, y, h)[1]
                      - numpy_loss_and_grad(theta - eps * e, x, y, h)[1]) / (2 * eps)
                     for e in np.eye(len(theta))])
    return np.linalg.eigvalsh((hess + hess.T) / 2)[0]


def test_a_saturated_xor_point_at_h2_is_at_infinity_with_limit_one_quarter():
    x, y = XOR
    k = 12.0  # unit 1 fires only at (-1, -1), unit 2 only at (-1, 1): (1, +-1) stay merged
    w, b = np.array([[-k, -k], [-k, k]]), np.array([-k, -k])
    theta = refit_theta(w, b, x, y)
    loss, grad = numpy_loss_and_grad(theta, x, y, 2)
    # What fooled the old rule: every |param| < 20, |grad| < 1e-9, Hessian >= 0, loss ~ 1/4.
    assert np.abs(theta).max() < minima_census.FAR and np.linalg.norm(grad) < 1e-9
    assert fd_hessian_min_eig(theta, x, y, 2) > -1e-7
    assert 0 < loss - 0.25 < 1e-9
    ray = minima_census.ray_losses(w, b, x, y)
    assert abs(ray[0] - loss) < 1e-15  # the s = 1 refit is the point itself
    verdict = minima_census.ray_test(ray)
    assert verdict["at_infinity"] and not verdict["lower_behind_a_barrier"]
    # Limit: the merged pair (1, -1), (1, 1) has targets +1, -1: residuals +-1, loss 1/4.
    assert abs(verdict["limit"] - 0.25) < 1e-15
    # Scaling the hidden layer by 2 and refitting with lstsq lowers the loss to 1/4.
    lower = numpy_loss_and_grad(refit_theta(2 * w, 2 * b, x, y), x, y, 2)[0]
    assert lower < loss - 1e-12 and abs(lower - 0.25) < 1e-15


def test_a_saturated_xor_point_at_h1_is_at_infinity_with_limit_one_third():
    x, y = XOR
    k = 5.0  # fires only at (-1, -1); the other three points (targets 1, 1, -1) merge
    w, b = np.array([[-k], [-k]]), np.array([-k])
    verdict = minima_census.ray_test(minima_census.ray_losses(w, b, x, y))
    assert verdict["at_infinity"] and abs(verdict["limit"] - 1 / 3) < 1e-15


def test_w_zero_is_a_genuine_minimum_at_one_half():
    x, y = XOR
    w, b = np.zeros((2, 2)), np.array([0.3, -0.7])
    ray = minima_census.ray_losses(w, b, x, y)
    np.testing.assert_allclose(ray, 0.5, rtol=0, atol=1e-15)  # constant features, mean 0
    verdict = minima_census.ray_test(ray)
    assert not (verdict["at_infinity"] or verdict["descends_then_rises"]
                or verdict["lower_behind_a_barrier"])
    # Rounding noise in a feature that is constant to 1e-14 is not a lower loss.
    tiny = minima_census.ray_test(minima_census.ray_losses(
        np.full((2, 1), 7e-15), np.array([0.17]), x, y))
    assert not tiny["at_infinity"] and not tiny["lower_behind_a_barrier"]


def test_a_global_minimum_stays_finite():
    x, y = XOR
    # Both units read x1 + x2, on which XOR is a function (-1, 1, -1 at -2, 0, 2): fitted.
    w, b = np.ones((2, 2)), np.array([0.5, -0.5])
    theta = refit_theta(w, b, x, y)
    assert numpy_loss_and_grad(theta, x, y, 2)[0] < 1e-28
    verdict = minima_census.ray_test(minima_census.ray_losses(w, b, x, y))
    assert not (verdict["at_infinity"] or verdict["lower_behind_a_barrier"])


def test_the_census_moves_the_quarter_and_third_levels_to_infinity(xor_rows):
    x, y, rows = xor_rows
    # Finite minima: loss 1/2 (h = 1) and the global minimum 0 (h = 2, 3), nothing else.
    assert np.allclose(rows[1]["loss_levels"], [0.5], atol=1e-12)
    assert rows[2]["loss_levels"][-1] < 1e-20 and rows[3]["loss_levels"][-1] < 1e-20
    # The stationary-looking 1/3 (h = 1) and 1/4 (h = 2) points are reported at infinity.
    assert np.allclose(rows[1]["limit_losses_of_the_saturated_ones"], [1 / 3], atol=1e-12)
    assert np.allclose(rows[2]["limit_losses_of_the_saturated_ones"], [0.25], atol=1e-12)
    for h in (1, 2):
        params, limits = rows[h]["_saturated_params"], rows[h]["_saturated_limit"]
        assert len(limits) > 0
        for i in range(len(limits)):
            first = params["layers"][0]
            w, b = first["w"][i], first["b"][i]
            theta = flat(params, i)
            loss, grad = numpy_loss_and_grad(theta, x, y, h)
            assert np.linalg.norm(grad) < 1e-8  # stationary-looking...
            lower = numpy_loss_and_grad(refit_theta(2 * w, 2 * b, x, y), x, y, h)[0]
            assert lower < loss - 1e-13  # ...but the ray goes down...
            assert abs(lower - limits[i]) < 1e-12  # ...to the reported limit


def test_ray_test_reads_falls_rises_and_barriers():
    rays = np.array([
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # flat: a valley, finite
        [0.3, 0.3 - 2e-14, 0.3 - 1e-13, 0.3 - 6e-13, 0.3 - 7e-13, 0.3 - 7e-13, 0.3 - 7e-13],
        [1.0, 1.1, 0.5, 0.4, 0.4, 0.4, 0.4],  # rises, then lower: finite, behind a barrier
        [1.0, 0.9, 1.2, 1.3, 1.3, 1.3, 1.3],  # falls, then rises: no minimum, no limit
        [1.0, 1.0 - 1e-15, 1.0, 1.0, 1.0, 1.0, 1.0],  # rounding only: finite
    ])
    verdict = minima_census.ray_test(rays)
    # A first step below the rounding margin does not hide a monotone descent.
    assert verdict["at_infinity"].tolist() == [False, True, False, False, False]
    assert verdict["lower_behind_a_barrier"].tolist() == [False, False, True, False, False]
    assert verdict["descends_then_rises"].tolist() == [False, False, False, True, False]
    assert verdict["limit"][1] == pytest.approx(0.3 - 7e-13, abs=1e-16)
