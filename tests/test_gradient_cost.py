"""Cost of a gradient (seed 003), in XLA's deterministic FLOP counts."""

import pytest

from bpjax.experiments import gradient_cost


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    return gradient_cost.run(str(tmp_path_factory.mktemp("gc")), quick=True)


def test_reverse_mode_is_linear_and_finite_differences_quadratic(numbers):
    s = numbers["flops_slope"]
    assert 0.9 < s["reverse"] < 1.1 and 0.9 < s["delta_rule"] < 1.1
    assert 1.85 < s["finite_differences"] < 2.15 and 1.85 < s["forward_mode"] < 2.15


def test_a_gradient_costs_a_few_forward_passes(numbers):
    ratio = numbers["gradient_over_forward_flops"]
    assert 2.0 < ratio["reverse"]["min"] and ratio["reverse"]["max"] < 4.0
    assert ratio["delta_rule"]["max"] < 4.0


def test_forward_flops_match_the_analytic_count(numbers):
    # A batch of B through [n, n, n, 1]: 2 B (n^2 + n^2 + n) multiply-adds in the
    # matmuls, plus biases, tanh and the loss: within 10% of 2 B w once n >= 16.
    for row in numbers["rows"]:
        if row["width"] >= 16:
            assert abs(row["forward"]["flops"] / (2 * gradient_cost.BATCH * row["w"]) - 1) < 0.1
