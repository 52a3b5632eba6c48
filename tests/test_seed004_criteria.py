"""Seed 004's general criterion |lr f'(x0)| < 1 on the x^4 map, against the exact boundary
lr x0^2 < 1/2 (analytic) and the area between the two boundaries (integrated)."""

import numpy as np
import pytest

from bpjax.experiments import quartic


@pytest.fixture(scope="module")
def quartic_quick(tmp_path_factory):
    return quartic.run(str(tmp_path_factory.mktemp("quartic")), quick=True)


def test_gradient_criterion_against_the_exact_boundary(quartic_quick):
    n = quartic.SIZES["quick"]["n"]
    lr = np.geomspace(1e-4, 1e2, n)[:, None]
    x0 = np.geomspace(1e-2, 1e2, n)[None, :]
    exact = lr * x0**2 < 0.5  # converges (analytic)
    crit = 4 * lr * x0**3 < 1
    got = quartic_quick["gradient_criterion"]
    assert got["fraction_of_cells_classified_correctly"] == pytest.approx(
        np.mean(crit == exact), abs=1e-12)
    assert got["fraction_of_divergent_cells_accepted"] == pytest.approx(
        np.mean(crit[~exact]), abs=1e-12)
    assert got["fraction_of_convergent_cells_rejected"] == pytest.approx(
        np.mean(~crit[exact]), abs=1e-12)
    # It errs on both sides of |x0| = 1/2: too lax below, too strict above.
    x = np.broadcast_to(x0, exact.shape)
    assert np.all(x[crit & ~exact] < 0.5) and np.all(x[~crit & exact] > 0.5)
    assert got["fraction_of_divergent_cells_accepted"] > 0.01
    assert got["fraction_of_convergent_cells_rejected"] > 0.05
    # The share of the log-log rectangle between the two boundary lines, integrated: the
    # grid's fraction is not an artefact of the grid.
    u = np.linspace(-2, 2, 400_001)  # log10 x0
    v_exact, v_crit = np.log10(0.5) - 2 * u, np.log10(0.25) - 3 * u  # log10 lr on each
    lo, hi = np.clip(np.minimum(v_exact, v_crit), -4, 2), np.clip(np.maximum(v_exact, v_crit),
                                                                   -4, 2)
    wrong_area = np.trapezoid(hi - lo, u) / (4 * 6)
    assert got["fraction_of_cells_classified_correctly"] == pytest.approx(1 - wrong_area,
                                                                          abs=0.01)
    assert "partly" == quartic_quick["verdict"]


def test_largest_stable_lr_falls_as_x0_to_the_minus_two(quartic_quick):
    # Exact: lr_max = 1 / (2 x0^2); the criterion would give 1 / (4 x0^3), slope -3.
    assert quartic_quick["lr_max_slope_in_x0_measured"] == pytest.approx(-2.0, abs=0.02)
    lr = np.geomspace(1e-4, 1e2, 300)
    x0 = np.geomspace(1e-2, 1e2, 300)
    crit = 4 * lr[:, None] * x0[None, :] ** 3 < 1
    assert quartic.largest_stable_lr_slope(lr, x0, crit) == pytest.approx(-3.0, abs=0.02)
