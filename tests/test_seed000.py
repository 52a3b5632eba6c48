"""bpjax.train on the seed-000 net against a hand-written NumPy gradient-descent loop."""

import numpy as np
import pytest

import bpjax
from bpjax import problems


def numpy_gd(w1, w2, steps, lr=0.1, x=0.9, target=0.9):
    """Backprop by hand for y = s(w2 * s(w1 * x)), loss 0.5 * (y - target)^2, float32."""
    f = np.float32
    w1, w2, lr, x, target = f(w1), f(w2), f(lr), f(x), f(target)
    s = lambda z: f(1) / (f(1) + np.exp(-z))  # noqa: E731
    w1s, w2s, losses = [w1], [w2], []
    for _ in range(steps + 1):
        h = s(w1 * x)
        y = s(w2 * h)
        losses.append(f(0.5) * (y - target) ** 2)
        dy = (y - target) * y * (f(1) - y)
        g2 = dy * h
        g1 = dy * w2 * h * (f(1) - h) * x
        w1, w2 = w1 - lr * g1, w2 - lr * g2
        w1s.append(w1)
        w2s.append(w2)
    return np.array(w1s[:-1]), np.array(w2s[:-1]), np.array(losses)


@pytest.mark.parametrize("w2", [0.1, -0.5])
def test_train_matches_numpy_loop(w2):
    steps = 2000
    run = bpjax.train(problems.seed000_loss, {"w1": 0.1, "w2": w2}, bpjax.optim.sgd(0.1), steps)
    w1_ref, w2_ref, loss_ref = numpy_gd(0.1, w2, steps)
    np.testing.assert_allclose(run.params["w1"], w1_ref, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(run.params["w2"], w2_ref, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(run.loss, loss_ref, rtol=1e-4, atol=1e-8)
    assert run.loss.shape == (steps + 1,) and run.diverged_at == -1
    # The seed's "paradox": with w2 < 0, w1 first falls, then rises.
    if w2 < 0:
        assert run.params["w1"][1] < 0.1 and run.params["w1"][-1] > run.params["w1"].min()


def test_record_every_takes_every_kth_step():
    run = bpjax.train(problems.seed000_loss, {"w1": 0.1, "w2": -0.5}, bpjax.optim.sgd(0.1), 100,
                      record_every=25)
    w1_ref, _, loss_ref = numpy_gd(0.1, -0.5, 100)
    assert run.steps.tolist() == [0, 25, 50, 75, 100]
    np.testing.assert_allclose(run.loss, loss_ref[::25], rtol=1e-5)
    np.testing.assert_allclose(run.params["w1"], w1_ref[::25], rtol=1e-5)
