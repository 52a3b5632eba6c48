"""Initialization (seed 003): a symmetric start keeps hidden units identical, exactly;
checked against a NumPy hand-written training loop as well."""

import numpy as np
import pytest

import bpjax
from experiments import initialization


def numpy_train_sigmoid_zero_init(x, y, steps, lr):
    """A 64-16-10 sigmoid net from zero weights, cross-entropy, full-batch GD, by hand."""
    w1, b1, w2, b2 = np.zeros((64, 16)), np.zeros(16), np.zeros((16, 10)), np.zeros(10)
    onehot = np.eye(10)[y]
    for _ in range(steps):
        a = 1 / (1 + np.exp(-(x @ w1 + b1)))
        z = a @ w2 + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d2 = (p - onehot) / len(x)
        d1 = (d2 @ w2.T) * a * (1 - a)
        w2, b2 = w2 - lr * a.T @ d2, b2 - lr * d2.sum(0)
        w1, b1 = w1 - lr * x.T @ d1, b1 - lr * d1.sum(0)
    return w1, w2


def test_symmetric_starts_keep_units_identical():
    (x, y), _ = bpjax.problems.digits()
    data = (x.astype(np.float32), y.astype(np.int32))
    for act in ("sigmoid", "tanh"):
        for w_init in (bpjax.init.zeros, bpjax.init.constant(0.1)):
            m = initialization.symmetry(act, w_init, 200, data)
            assert m["max_unit_difference_in"] == 0.0 and m["max_unit_difference_out"] == 0.0
    tanh_zero = initialization.symmetry("tanh", bpjax.init.zeros, 200, data)
    assert tanh_zero["max_abs_hidden_weight"] == 0.0  # tanh(0) = 0: nothing reaches W1
    w1, w2 = numpy_train_sigmoid_zero_init(x.astype(np.float64), y, 200, initialization.LR)
    assert np.ptp(w1, axis=1).max() == 0.0 and np.abs(w1).max() > 1e-4  # moved, together
    ours = initialization.symmetry("sigmoid", bpjax.init.zeros, 200, data)
    assert ours["max_abs_hidden_weight"] == pytest.approx(np.abs(w1).max(), rel=1e-3)


def test_success_rates(tmp_path):
    numbers = initialization.run(str(tmp_path), quick=True)
    assert numbers["success"]["tanh/zero"] == 0.0 and numbers["success"]["sigmoid/zero"] == 0.0
    assert numbers["success"]["tanh/xavier"] == 1.0
