"""float64 when asked: under jax_enable_x64 nothing is cast to float32."""

import jax
import jax.numpy as jnp
import numpy as np

import bpjax


def numpy_gd(x0, lr, steps):
    """GD on (x - 1/3)^2 in float64, the reference."""
    x = np.float64(x0)
    for _ in range(steps):
        x = x - np.float64(lr) * 2 * (x - 1 / 3)
    return x


def test_train_keeps_float64_params_and_matches_a_float64_numpy_loop():
    with jax.enable_x64(True):
        run = bpjax.train(lambda p: (p["x"] - 1 / 3) ** 2, {"x": np.float64(2.0)},
                          bpjax.optim.sgd(0.1), steps=40)
        assert run.final_params["x"].dtype == np.float64 and run.loss.dtype == np.float64
        ref = numpy_gd(2.0, 0.1, 40)
        # float32 would be ~1e-8 off; float64 agrees to a few ulps
        assert abs(float(run.final_params["x"]) - ref) < 1e-15


def test_float_params_keep_their_dtype_without_x64():
    run = bpjax.train(lambda p: jnp.sum(p["x"].astype(jnp.float32) ** 2),
                      {"x": np.ones(2, np.float16)}, bpjax.optim.sgd(0.25), steps=2)
    assert run.final_params["x"].dtype == np.float16
    np.testing.assert_array_equal(run.final_params["x"], np.full(2, 0.25, np.float16))


def test_a_sweep_under_x64_keeps_float64_axes_params_and_losses():
    with jax.enable_x64(True):
        grid = bpjax.Grid(lr=[0.1, 0.3], x0=[2.0, -1.0])
        assert grid.axes["lr"].dtype == np.float64
        res = bpjax.sweep(lambda p: (p["x"] - 1 / 3) ** 2, lambda c, k: {"x": c["x0"]}, "sgd",
                          grid, steps=30, progress=False)
    assert res.final_params["x"].dtype == np.float64 and res.loss.dtype == np.float64
    for i, lr in enumerate([0.1, 0.3]):
        for j, x0 in enumerate([2.0, -1.0]):
            assert abs(res.final_params["x"][i, j] - numpy_gd(x0, lr, 30)) < 1e-15
    # and without x64 the same grid is float32
    assert bpjax.Grid(lr=[0.1]).axes["lr"].dtype == np.float32
