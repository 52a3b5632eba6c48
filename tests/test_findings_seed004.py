"""Seed 004's findings (relu_scaling, relu_init_map) against independent references: a
NumPy gradient descent of the bias-free ReLU net, brute force over grid errors, a NumPy
per-sample SGD loop, and recounts from the reported maps."""

import itertools

import jax
import numpy as np
import pytest

from bpjax import losses, nets
from bpjax.experiments import relu_init_map, relu_scaling


def numpy_relu_gd(ws, x, y, lr, steps):
    """Full-batch GD on the mean half squared error of a bias-free ReLU net, by hand."""
    ws = [w.copy() for w in ws]
    for _ in range(steps):
        acts = [x]
        for w in ws[:-1]:
            acts.append(np.maximum(acts[-1] @ w, 0.0))
        delta = (acts[-1] @ ws[-1] - y) / len(x)
        grads = []
        for i in range(len(ws) - 1, -1, -1):
            grads.append(acts[i].T @ delta)
            delta = (delta @ ws[i].T) * (acts[i] > 0)
        ws = [w - lr * g for w, g in zip(ws, grads[::-1])]
    return ws


def test_scaled_start_is_the_same_descent_at_a_rescaled_lr_and_targets():
    # L(s W; y) = s^(2d) L(W; y / s^d): GD from 2 W at lr eta with targets y is GD from W
    # at lr 16 eta with targets y / 8 (d = 3), weights times 2, step for step.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)), rng.normal(size=(64, 1))
    ws = [rng.normal(size=s) * np.sqrt(2 / s[0]) for s in ((8, 16), (16, 16), (16, 1))]
    big = numpy_relu_gd([2 * w for w in ws], x, y, 0.01, 40)
    small = numpy_relu_gd(ws, x, y / 8, 0.16, 40)
    for a, b in zip(big, small):
        np.testing.assert_allclose(a, 2 * b, rtol=1e-12, atol=1e-14)
    # With the targets, the descent at scale 2 is NOT the one at scale 1 with lr x 16.
    other = numpy_relu_gd(ws, x, y, 0.16, 40)
    assert max(np.abs(2 * o - a).max() for o, a in zip(other, big)) > 1e-3


def test_the_grids_are_exact_powers_of_two_apart():
    scales = relu_scaling.scale_grid(7)
    assert set(scales.tolist()) >= {0.5, 1.0, 2.0, 4.0}
    for per_octave in (1, 2):
        lrs = relu_scaling.lr_grid(per_octave).astype(np.float32)
        step = 4 * per_octave  # x16 = 4 octaves
        np.testing.assert_array_equal(lrs[:-step] * np.float32(16), lrs[step:])


def test_slope_resolution_is_the_worst_case_over_one_cell_errors():
    scales = relu_scaling.scale_grid(7)
    scales = scales[scales >= 1]
    lrs = relu_scaling.lr_grid(2)
    u, cell = np.log(scales), np.log(lrs[1] / lrs[0])
    worst = max(abs(np.polyfit(u, cell * np.array(e), 1)[0])
                for e in itertools.product([0, 1], repeat=len(u)))
    assert relu_scaling.slope_resolution(scales, lrs) == pytest.approx(worst, rel=1e-9)


@pytest.fixture(scope="module")
def scaling_quick(tmp_path_factory):
    return relu_scaling.run(str(tmp_path_factory.mktemp("scaling")), quick=True)


def test_without_targets_the_stable_lr_follows_the_theory_exactly(scaling_quick):
    scales = np.asarray(scaling_quick["scales"])
    assert scales.tolist() == [0.5, 1.0, 2.0, 4.0]
    for d, row in scaling_quick["per_depth"].items():
        depth = int(d)
        control = np.asarray(row["lr_max_without_targets_per_scale"])
        # Exactly: each doubling of s divides lr_max by 2^(2(d-1)) (same float computation).
        np.testing.assert_allclose(control[2:] / control[1:-1], 2.0 ** (-2 * (depth - 1)),
                                   rtol=1e-12)
        assert row["lr_max_slope_without_targets_at_s_1_2_4"] == pytest.approx(
            -2.0 * (depth - 1), abs=1e-9)
        assert row["lr_max_at_the_grid_top_for_scales_at_least_1"] == 0
        # With targets: the reported slope is the fit of the reported lr_max values.
        lr_max = np.asarray(row["lr_max_per_scale"])
        fit = np.polyfit(np.log(scales[1:]), np.log(lr_max[1:]), 1)[0]
        assert row["lr_max_slope_for_scales_at_least_1"] == pytest.approx(fit, abs=1e-9)
    # d = 3: the targets move the slope by more than the grid can (the finding).
    three = scaling_quick["per_depth"]["3"]
    assert abs(three["lr_max_slope_for_scales_at_least_1"] + 4) > \
        scaling_quick["slope_resolution_of_the_lr_grid"]
    assert max(three["lr_max_over_targetless_max_for_scales_at_least_1"],
               1 / three["lr_max_over_targetless_min_for_scales_at_least_1"]) > 1.5
    assert f"{three['lr_max_slope_for_scales_at_least_1']:.1f}" in scaling_quick["finding"]


def recount_seed_rule(numbers):
    """Per depth, lr_max(s) / lr_max(2 s) for s >= 1, and how many are <= 2^d, by a loop."""
    scales = list(numbers["scales"])
    out = {}
    for d, row in numbers["per_depth"].items():
        factors = []
        for i, s in enumerate(scales):
            for j, t in enumerate(scales):
                if s >= 1 and abs(t - 2 * s) < 1e-9:
                    factors.append(row["lr_max_per_scale"][i] / row["lr_max_per_scale"][j])
        out[d] = (factors, sum(f <= 2 ** int(d) * (1 + 1e-9) for f in factors))
    return out


def test_the_2_to_the_d_rule_against_the_measured_lr_max(scaling_quick):
    rule = scaling_quick["seed_2_to_the_d_rule"]
    recount = recount_seed_rule(scaling_quick)
    assert rule["depths_where_lowering_by_2_to_the_d_kept_every_doubling_stable"] == [
        int(d) for d, (factors, safe) in recount.items() if safe == len(factors)]
    for d, (factors, safe) in recount.items():
        row = rule["per_depth"][d]
        np.testing.assert_allclose(row["factor_per_doubling_measured"], factors, rtol=1e-12)
        assert row["doublings_stable_after_lowering_by_2_to_the_d"] == safe
        # Without targets the factor is homogeneity's 4^(d-1) exactly; 2^d only at d = 2.
        assert row["factor_per_doubling_from_slope_without_targets"] == pytest.approx(
            4.0 ** (int(d) - 1), rel=1e-9)
    assert rule["log2_factor_per_unit_depth_without_targets"] == pytest.approx(2.0, abs=1e-9)
    assert rule["per_depth"]["2"]["factor_per_doubling_from_slope"] == pytest.approx(4.0)
    # At d = 3 the homogeneous control needs 16x per doubling: the rule's 8 is too lax.
    assert rule["per_depth"]["3"]["factor_per_doubling_from_slope_without_targets"] > 8 * 1.5


def test_the_stored_2_to_the_d_rule_matches_a_recount():
    from bpjax.experiments import findings

    numbers = findings.load().get("relu_scaling", {}).get("numbers")
    if not numbers or "seed_2_to_the_d_rule" not in numbers:
        pytest.skip("no default-size relu_scaling entry with the rule stored")
    rule = numbers["seed_2_to_the_d_rule"]
    for d, (factors, safe) in recount_seed_rule(numbers).items():
        np.testing.assert_allclose(rule["per_depth"][d]["factor_per_doubling_measured"],
                                   factors, rtol=1e-12)
        assert rule["per_depth"][d]["doublings_stable_after_lowering_by_2_to_the_d"] == safe
    depths = np.array([int(d) for d in numbers["per_depth"]], float)
    log2f = np.array([-r["lr_max_slope_for_scales_at_least_1"]
                      for r in numbers["per_depth"].values()])
    slope = np.sum((depths - depths.mean()) * (log2f - log2f.mean())) / np.sum(
        (depths - depths.mean()) ** 2)  # least squares by hand
    assert rule["log2_factor_per_unit_depth"] == pytest.approx(slope, abs=1e-9)
    assert abs(slope - rule["rule_log2_factor_per_unit_depth"]) > 0.5  # 2^d is refuted


def test_one_batch_mean_step_is_batch_per_sample_steps_at_lr_over_batch():
    # relu_init_map's lr conversion: bpjax's loss is the batch mean, so one step at lr
    # eta on 32 examples moves like 32 per-sample updates at eta / 32 (to first order).
    net = nets.mlp([4, 8, 3], activation="relu")
    loss = losses.supervised(net.apply, "softmax_mse")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(relu_init_map.BATCH, 4)).astype(np.float32)
    y = rng.integers(0, 3, relu_init_map.BATCH)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), net.init(jax.random.key(0)))
    eta = 1e-4
    with jax.enable_x64(True):
        grad = jax.grad(loss)(params, (x.astype(np.float64), y))
        batch_step = jax.tree.map(lambda p, g: p - eta * g, params, grad)
        per_sample = params
        for i in range(len(x)):  # one example at a time
            g = jax.grad(loss)(per_sample, (x[i:i + 1].astype(np.float64), y[i:i + 1]))
            per_sample = jax.tree.map(lambda p, gi: p - eta / len(x) * gi, per_sample, g)
        batch_step, per_sample = jax.tree.map(np.asarray, (batch_step, per_sample))
    moved = [np.abs(b - p).max() for b, p in zip(jax.tree.leaves(batch_step),
                                                 jax.tree.leaves(params))]
    gap = [np.abs(b - s).max() for b, s in zip(jax.tree.leaves(batch_step),
                                               jax.tree.leaves(per_sample))]
    assert max(gap) < 1e-3 * max(moved)  # same move, up to O(eta^2)
    # Our per-example MSE sums over the outputs: 3x (here) the mean over outputs.
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    onehot = np.eye(3)[[0, 1, 2, 0, 1]]
    np.testing.assert_allclose(losses.softmax_squared_error(logits, np.array([0, 1, 2, 0, 1])),
                               3 * np.mean((p - onehot) ** 2, axis=1), rtol=1e-6)


def test_relu_init_map_verdicts_recounted_from_its_maps(tmp_path):
    numbers = relu_init_map.run(str(tmp_path), quick=True)
    lrs, names = np.asarray(numbers["lr"]), numbers["inits"]
    for label in relu_init_map.LOSSES:
        conv = np.asarray(numbers[label]["fraction_converged"])  # (init, lr)
        assert numbers[label]["lrs_where_any_init_converges"] == pytest.approx(
            lrs[conv.max(0) > 0].tolist())
        for (name, lr), ok in relu_init_map.SEED_CASES.items():
            case = numbers[label]["seed_cases"][f"{name} lr={lr:g}"]
            for conversion, factor in relu_init_map.LR_CONVERSIONS.items():
                j = int(np.argmin(np.abs(np.log(lrs) - np.log(lr * factor))))
                if conv[:, j].max() == 0:
                    expected = "the step budget decides (no init converges at this lr)"
                else:
                    expected = "agrees" if (conv[names.index(name), j] >= 0.5) == ok \
                        else "disagrees"
                assert case[conversion]["verdict"] == expected
                assert case[conversion]["lr"] == pytest.approx(lrs[j])
    assert numbers["epochs"] == pytest.approx(
        relu_init_map.SIZES["quick"]["steps"] * 32 / 1348)
