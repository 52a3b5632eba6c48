"""``Options.fast_compile``: XLA's faster-compiling CPU emitters for sweeps whose arithmetic
is short, chosen from the grid's size, kept on a resume, and within float32 rounding of
XLA's default emitters and of a NumPy loop."""

import numpy as np
import pytest

import bpjax
from bpjax import problems
from bpjax.compilation_cache import FAST_COMPILE_SECONDS
from bpjax.sweep import plan as plan_lib

X0 = np.float32([0.3, 0.7, 1.1, 1.4])
LR = np.float32([0.01, 0.05, 0.1])
STEPS = 200


def quartic_sweep(**options):
    return bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, "sgd",
                       bpjax.Grid(x0=X0, lr=LR), STEPS, record_every=STEPS // 4, **options)


def numpy_quartic():
    """Gradient descent on x^4 by hand, in float32: x <- x - lr * 4 x^3."""
    x = np.broadcast_to(X0[:, None], (X0.size, LR.size)).copy()
    for _ in range(STEPS):
        x = (x - LR[None, :] * (np.float32(4) * x**3)).astype(np.float32)
    return x


def test_a_small_sweep_compiles_fast_and_agrees_with_the_default_emitters_and_numpy():
    auto, default = quartic_sweep(), quartic_sweep(fast_compile=False)
    assert auto.meta["fast_compile"] is True  # 12 runs x 200 steps: milliseconds of arithmetic
    assert default.meta["fast_compile"] is False
    x_auto, x_default = (np.asarray(r.final_params["x"]) for r in (auto, default))
    reference = numpy_quartic()
    np.testing.assert_allclose(x_auto, reference, rtol=2e-6)
    np.testing.assert_allclose(x_default, reference, rtol=2e-6)
    np.testing.assert_allclose(x_auto, x_default, rtol=2e-6)
    assert np.all(np.abs(reference - X0[:, None]) > 1e-3)  # (the runs moved)


def test_the_choice_weighs_the_run_time_the_older_emitters_are_expected_to_add():
    pays = plan_lib.fast_compile_pays
    assert pays(4096, 1000, 2, 1)  # W1: ~10 ms, all loop floor
    assert pays(3 * 1024, 2000, 33, 4)  # W2: ~0.5 s estimated, mostly arithmetic
    assert not pays(64, 500, 9610, 1797)  # W3 at full size: minutes of arithmetic
    assert not pays(1, 200_000, 2, 1)  # one long run of a tiny net: all per-step floor
    floor, arithmetic = plan_lib._estimate(64, 500, 9610, 1797)
    assert plan_lib.estimated_seconds(64, 500, 9610, 1797) == floor + arithmetic
    assert plan_lib._estimate(128, 500, 9610, 1797)[1] == pytest.approx(2 * arithmetic)
    assert FAST_COMPILE_SECONDS < 1.0  # under what one compile saves


def test_a_resumed_sweep_keeps_the_emitters_it_started_with(tmp_path):
    res = quartic_sweep(out=str(tmp_path / "run"))
    assert res.meta["fast_compile"] is True
    base = plan_lib.Plan(*([None] * 13))._replace(chunk=4, n=12)
    assert plan_lib.relayout(base, {"chunk": 4, "seg_records": 1}).fast_compile is False  # older
    assert plan_lib.relayout(base, {"chunk": 4, "seg_records": 1,
                                "fast_compile": True}).fast_compile is True
    again = quartic_sweep(out=str(tmp_path / "run"))  # a finished folder: loaded, the same
    np.testing.assert_array_equal(np.asarray(again.final_params["x"]),
                                  np.asarray(res.final_params["x"]))


def test_train_agrees_with_a_sweep_of_the_same_run():
    run = bpjax.train(problems.quartic, {"x": X0[2]}, bpjax.optim.sgd(LR[1]), STEPS)
    np.testing.assert_allclose(float(run.final_params["x"]), numpy_quartic()[2, 1], rtol=2e-6)


def test_a_fast_compile_that_is_not_a_bool_is_refused_before_anything_compiles():
    with pytest.raises(TypeError, match=r"fast_compile must be True, False or None .*'yes'"):
        quartic_sweep(fast_compile="yes")
