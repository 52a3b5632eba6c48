"""Census of minima (seed 001): polished end points checked against a NumPy float64
gradient and finite-difference Hessian, and the symmetry canonical form against
explicit permutations and sign flips."""

import numpy as np
import pytest

from bpjax import critical
from experiments import minima_census


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
