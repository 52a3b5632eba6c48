"""Weights that diverge at a logarithmic rate (seed 001, Sontag section 3).

Gradient descent with learning rate lr on E(x) = (tanh(x) - 1)^2:
  dE/dx = -2 (1 - tanh x)^2 (1 + tanh x), so x_{t+1} = x_t + 2 lr (1 - th)^2 (1 + th).
For large x, 1 - tanh x ~ 2 exp(-2x) and 1 + tanh x ~ 2, so
  x_{t+1} - x_t ~ 16 lr exp(-4 x_t).
As an ODE, dx/dt = 16 lr exp(-4x) gives exp(4x) = 64 lr t + c, that is
  x(t) = (1/4) log(64 lr t + c),
a log rate, and
  t [x(t+1) - x(t)] ~ t dx/dt = 16 lr t / (64 lr t + c) -> 1/4,
whatever the learning rate and the start: the product Sontag proposes to watch
tends to exactly 1/4 here (the difference of iterates goes to 0 like 1/(4t)
while x itself grows without bound).

Measured over one sweep of learning rates x starts, in float64 (in float32 a
step of 1/(4t) falls below the rounding of x ~ 4 near t ~ 5e5, and x stalls):
t dx/dt = dx / d(log t) is read as the slope of x against log t over the second
half of the run, which also removes the start-up constant c to first order.
The remaining bias is c / (64 lr t), at most 0.6% here (lr 0.01, x0 = 2).
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import experiment  # noqa: E402

QUESTION = ("Does a single tanh neuron's weight diverge at a log rate, and what does "
            "t [x(t+1) - x(t)] tend to? (seed 001)")
SIZES = {"default": dict(steps=1_000_000, record_every=1000),
         "quick": dict(steps=100_000, record_every=1000)}
LRS = [0.01, 0.03, 0.1, 0.3]
STARTS = [-1.0, 0.0, 1.0, 2.0]
LIMIT = 0.25


def loss(params):
    return (jnp.tanh(params["x"]) - 1.0) ** 2


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    with jax.enable_x64(True):
        res = bpjax.sweep(loss, lambda c, k: {"x": c["x0"].astype(jnp.float64)}, "sgd",
                          bpjax.Grid(lr=LRS, x0=STARTS), size["steps"],
                          record_every=size["record_every"])
    t = res.coords["step"].astype(np.float64)
    x = res.params["x"]
    assert x.dtype == np.float64, x.dtype
    half = len(t) // 2
    slope = (x[..., -1] - x[..., half]) / np.log(t[-1] / t[half])  # t dx/dt, second half
    numbers = {
        "derived_limit": LIMIT, "steps": size["steps"], "lr": LRS, "x0": STARTS,
        "t_dx_dt_over_second_half": slope,
        "max_relative_error_vs_limit": float(np.max(np.abs(slope / LIMIT - 1))),
        "final_x": x[..., -1],
        "predicted_final_x": 0.25 * np.log(64 * np.array(LRS)[:, None] * t[-1]
                                           + np.exp(4 * np.array(STARTS))[None, :]),
    }
    _figure(t, x, os.path.join(out, "log_rule.png"))
    return experiment.save_summary(out, numbers)


def _figure(t, x, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(LRS)))
    for i, lr in enumerate(LRS):
        a.plot(t[1:], x[i, 1, 1:], color=colors[i], label=f"lr {lr:g}, x0 = 0")
        a.plot(t[1:], 0.25 * np.log(64 * lr * t[1:] + 1), ":", color=colors[i])
        # the product over a window of 10 records
        k = 10
        prod = t[1:-k] * (x[i, 1, 1 + k:] - x[i, 1, 1:-k]) / (t[1 + k:] - t[1:-k])
        b.plot(t[1:-k], prod, color=colors[i], label=f"lr {lr:g}")
    a.set(xscale="log", xlabel="step t (log)", ylabel="x(t)",
          title="x(t) grows like (1/4) log(64 lr t + 1) (dotted)")
    b.axhline(LIMIT, color="k", ls="--", label="derived limit 1/4")
    b.set(xscale="log", xlabel="step t (log)", ylabel="t [x(t+k) - x(t)] / k",
          title="Sontag's product tends to 1/4 for every learning rate", ylim=(0, 0.5))
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle("Gradient descent on (tanh(x) - 1)^2: divergence at a log rate")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "log_rule")
