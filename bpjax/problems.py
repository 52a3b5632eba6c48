"""The canonical problems of the seed documents, as plain functions and arrays.

>>> round(float(seed000_loss({"w1": 0.1, "w2": 0.1})), 4)
0.0749
"""

from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

# Seed 000: a 1-1-1 sigmoid net without biases, one data point, lr 0.1.
SEED000_X = 0.9
SEED000_TARGET = 0.9
SEED000_LR = 0.1


def seed000_net(params, x=SEED000_X):
    """y = sigmoid(w2 * sigmoid(w1 * x)); params {"w1": ., "w2": .}."""
    return jax.nn.sigmoid(params["w2"] * jax.nn.sigmoid(params["w1"] * x))


def seed000_loss(params):
    """0.5 * (y - 0.9)^2 at x = 0.9."""
    return 0.5 * (seed000_net(params) - SEED000_TARGET) ** 2


def quartic(params):
    """f(x) = x^4 (seed 004's toy example); params {"x": .}."""
    return params["x"] ** 4


def sontag_loss(x, a):
    """Seed 001, n = 2, m = 1: E(x) = (tanh(x) - 1)^2 + (tanh(a x) - 1)^2.

    The line is spanned by (1, a): a > 0 is his case 2 (no finite minimum), a < 0
    with |a| large is case 3 (a finite minimum, a local maximum, and a minimum at +inf).
    """
    return (jnp.tanh(x) - 1.0) ** 2 + (jnp.tanh(a * x) - 1.0) ** 2


def xor():
    """The four XOR points, targets in {0, 1}: x (4, 2), y (4, 1)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    return x, y


def digits(val_fraction: float = 0.25, seed: int = 0):
    """The 8x8 handwritten digits (1797 images, 10 classes; the UCI set bundled by
    scikit-learn, shipped inside bpjax so nothing is downloaded).

    Returns ``(x_train, y_train), (x_val, y_val)``: pixels scaled to [0, 1], shape
    (n, 64), integer labels; a fixed random split by ``seed``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    with resources.files("bpjax").joinpath("data/digits.npz").open("rb") as f:
        raw = np.load(f)
        x = raw["images"].reshape(-1, 64).astype(np.float32) / 16.0
        y = raw["target"].astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])
