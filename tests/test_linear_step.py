"""Seed 002: Newton on a quadratic, the Taylor exponents, and the tangent's failure
point against its quadratic prediction."""

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import second_order
from bpjax.experiments import linear_step


def test_newton_solves_a_quadratic_in_one_step():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    a, b = m @ m.T + 6 * np.eye(6), rng.normal(size=6)
    with jax.enable_x64(True):
        q = lambda p: 0.5 * p @ jnp.asarray(a) @ p - jnp.asarray(b) @ p  # noqa: E731
        p1 = second_order.newton_step(q, jnp.asarray(rng.normal(size=6) * 10))
        np.testing.assert_allclose(np.asarray(p1), np.linalg.solve(a, b), atol=1e-10)
        f_min = -0.5 * b @ np.linalg.solve(a, b)
        assert abs(float(q(p1)) - f_min) < 1e-10
        # Gauss-Newton on linear least squares: also one step
        r = lambda p: jnp.asarray(m) @ p - jnp.asarray(b)  # noqa: E731
        p2 = second_order.gauss_newton_step(r, jnp.zeros(6), damping=0.0)
        np.testing.assert_allclose(np.asarray(p2), np.linalg.solve(m, b), atol=1e-9)


def test_taylor_exponents_and_the_ten_percent_step(tmp_path):
    numbers = linear_step.run(str(tmp_path), quick=True)
    for name, row in numbers["tangent"].items():
        assert abs(row["first_order_exponent"] - 2) < 0.05, name
        assert abs(row["second_order_exponent"] - 3) < 0.3, name
        # relative error of the tangent on a quadratic is eta c / 2: 10% at eta c = 0.2
        assert 0.1 < row["median_eta_10pct_times_curvature"] < 0.4, name
    single = numbers["single_step"]["seed000"]
    assert single["newton"]["one_step"] < 0.5 and single["momentum"]["reached"] > 0.8
