"""Issue 7's experiments: numbers against analytic results and independent loops."""

import json

import numpy as np
import pytest

import bpjax
from bpjax.experiments import edge_of_stability, quartic, relu_init_map, relu_scaling


def test_quartic_map_agrees_with_the_exact_boundary(tmp_path):
    numbers = quartic.run(str(tmp_path), quick=True)
    assert numbers["agreement_with_exact_boundary_away_from_it"] >= 0.99
    assert numbers["cells_away_from_boundary"] > 0.9 * numbers["cells"]
    # Analytic: nothing with lr x0^2 >= 1/2 converges; the quadratic rule (1/6) is 3x too
    # strict, so it wrongly rejects a positive share of the convergent cells.
    assert numbers["largest_stable_lr_x0sq_measured"] < 0.5
    assert numbers["convergent_cells_rejected_by_quadratic_rule"] > 0.05
    assert (tmp_path / "quartic_map.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "summary.json").read_text()) == numbers


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_relu_output_scales_as_c_to_the_depth_exactly(depth):
    e_out, e_grad = relu_scaling.homogeneity(depth)
    assert e_out < 5e-6 and e_grad < 1e-6


def test_saturation_at_init_matches_a_numpy_forward_pass(tmp_path):
    numbers = relu_init_map.run(str(tmp_path), quick=True)
    (x, _), _ = bpjax.problems.digits()
    grid = bpjax.Grid(init=[0], lr=[0.1], seed=np.arange(relu_init_map.SIZES["quick"]["seeds"]))
    start = bpjax.initial_params(relu_init_map.init, grid)  # U[-1, 1]
    fractions = []
    for s in range(len(grid.axes["seed"])):
        a = x[:512]
        for i, layer in enumerate(start["layers"]):
            a = a @ layer["w"][0, 0, s] + layer["b"][0, 0, s]
            a = np.maximum(a, 0) if i < 2 else a
        p = np.exp(a - a.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        fractions.append(np.mean(p.max(1) > 0.99))
    got = numbers["softmax+MSE"]["softmax_saturation_at_init"]
    np.testing.assert_allclose(got[0], np.mean(fractions), atol=1e-6)
    assert got[0] > 0.2 and got[relu_init_map.list_inits().index("Xavier")] == 0
    assert len(numbers["softmax+MSE"]["seed_cases"]) == len(relu_init_map.SEED_CASES)


def test_sharpness_hovers_at_two_over_lr(tmp_path):
    numbers = edge_of_stability.run(str(tmp_path))
    for lr, row in numbers["per_lr"].items():
        assert row["sharpness_at_init"] < row["two_over_lr"]  # starts below the edge
        assert 0.9 < row["late_sharpness_times_lr_over_2"] < 1.1, (lr, row)
        assert row["loss_end"] < row["loss_start"] / 3
        assert row["late_fraction_of_steps_where_loss_rose"] > 0.05  # not monotone
    assert not any(np.ravel(numbers["diverged"]))
