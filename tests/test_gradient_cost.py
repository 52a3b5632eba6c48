"""Cost of a gradient (seed 003), in XLA's deterministic FLOP counts."""

import jax.numpy as jnp
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


def stored_activations_bytes(depth, batch, width):
    # A hand count: backprop keeps each hidden layer's tanh output a_l (batch x width
    # float32; tanh' = 1 - a_l^2 comes from it), to form dW_{l+1} = a_l^T delta_{l+1}.
    return sum(batch * width * 4 for _ in range(depth))


def test_gradient_temporaries_hold_every_layers_activations(numbers):
    mem = numbers["memory"]
    b, w = gradient_cost.MEMORY_BATCH, gradient_cost.MEMORY_WIDTH
    assert mem["batch"] == b and mem["width"] == w and len(mem["by_depth"]) >= 4
    for row in mem["by_depth"]:
        stored = stored_activations_bytes(row["depth"], b, w)
        assert row["reverse"]["temp_bytes"] >= stored, row
        # The forward pass keeps about two layers live at any depth, never all of them.
        assert row["forward"]["temp_bytes"] <= stored_activations_bytes(3, b, w), row
    # Each added layer adds one stored activation (not zero, as with rematerialization,
    # nor two): the fitted bytes per layer within 10% of batch x width x 4.
    per_layer = mem["reverse_temp_bytes_per_layer"]
    assert abs(per_layer / stored_activations_bytes(1, b, w) - 1) < 0.1
    deep = [r for r in mem["by_depth"] if r["depth"] >= 4]
    first, last = deep[0], deep[-1]
    grew = last["reverse"]["temp_bytes"] - first["reverse"]["temp_bytes"]
    assert grew == pytest.approx(stored_activations_bytes(last["depth"] - first["depth"], b, w),
                                 rel=0.1)
    assert last["forward"]["temp_bytes"] == first["forward"]["temp_bytes"]
    s = mem["temp_slope_in_depth"]
    assert 0.85 < s["reverse"] < 1.15 and abs(s["forward"]) < 0.1


def test_activation_memory_is_linear_in_width(numbers):
    # At depth 2 and batch 512 both passes hold batch x width floats per live layer.
    mem = numbers["memory"]
    for row in mem["by_width"]:
        stored = stored_activations_bytes(2, gradient_cost.MEMORY_BATCH, row["width"])
        assert row["reverse"]["temp_bytes"] >= stored, row
    s = mem["temp_slope_in_width"]
    assert 0.85 < s["reverse"] < 1.15 and 0.85 < s["forward"] < 1.15


def test_memory_analysis_is_read_from_the_compiled_program():
    # Independent of the experiment's bookkeeping: a jitted f(x) = sum(tanh(x) * 2), whose
    # arguments are one (512, 64) float32 array, reports exactly those argument bytes.
    got = gradient_cost.memory(lambda x: jnp.sum(jnp.tanh(x) * 2), jnp.ones((512, 64)))
    assert got["argument_bytes"] == 512 * 64 * 4 and got["output_bytes"] == 4
