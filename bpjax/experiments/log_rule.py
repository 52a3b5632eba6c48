"""Weights that diverge at a logarithmic rate (seed 001, Sontag section 3).

Gradient descent x <- x - lr f'(x) on f(x) = (tanh(x) - 1)^2, with
f'(x) = -2 (1 - tanh x)^2 (1 + tanh x). Writing u = exp(-2x), 1 - tanh x = 2u / (1 + u)
and 1 + tanh x = 2 / (1 + u), so the step is exactly
  x_{t+1} - x_t = 16 lr u^2 / (1 + u)^3 = 16 lr exp(-4x) (1 - 3 exp(-2x) + O(exp(-4x))).
To leading order dx/dt = 16 lr exp(-4x), so exp(4x) ~ 64 lr t: a log rate. The
correction is not small: the ODE dx/dt = 16 lr u^2 / (1 + u)^3 separates exactly,
since (1 + u)^3 exp(4x) = exp(4x) + 3 exp(2x) + 3 + exp(-2x) integrates to
  F(x) := exp(4x) + 6 exp(2x) + 12 x - 2 exp(-2x) = 64 lr t + F(x0).
With T = 64 lr t, exp(2x) = sqrt(9 + T + F(x0) - 12x + 2 exp(-2x)) - 3 solves the
quadratic in exp(2x), and expanding the log,
  x(t) = (1/4) log T - 3 / (2 sqrt T) + (F(x0) - 3 log T) / (4T) + O(T^-3/2),
  t dx/dt = (1/4) (1 + 3 / sqrt T) + O(log T / T).
The leading correction is of order 1/sqrt(lr t) (from the 6 exp(2x) beside
exp(4x)), not 1/(lr t): Sontag's product t [x(t+1) - x(t)] tends to exactly 1/4,
whatever the learning rate and the start, but from above and slowly. Gradient
descent differs from the ODE by F(x_t) - 64 lr t - F(x0) ~ 32 lr log t (second-order
Taylor of F along a step), which moves x by about log(t) / (8t): 1.4e-5 at t = 1e5.

Measured over one sweep of learning rates x starts, in float64 (in float32 a
step of 1/(4t) falls below the rounding of x ~ 4 near t ~ 5e5, and x stalls):
t dx/dt = dx / d(log t) is read as the slope of x against log t over the second
half of the run. Default size (1e6 steps): the slope is 0.2493 to 0.2512, within
0.5% of 1/4 in every run, and matches the same secant of the ODE solution to 1e-5
(relative); it sits above 1/4 by about 3 / sqrt(T) (+0.46% at lr 0.01, +0.08% at
lr 0.3) except from x0 = 2, where the start constant F(2) = 3,333 still pulls it
below (-0.30% at lr 0.01). The final x agrees with the ODE solution to 2e-6; the uncorrected
(1/4) log(64 lr t + exp(4 x0)) is off by up to 1.9e-3, the size of the 1/sqrt(lr t)
term (-3 / (2 sqrt T) = -1.9e-3 at lr 0.01).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

import bpjax
from bpjax.experiments import script

SEED = "001"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does a single tanh neuron's weight diverge at a log rate, and what does "
            "t [x(t+1) - x(t)] tend to? (seed 001)")
SIZES = {"default": dict(steps=1_000_000, record_every=1000),
         "quick": dict(steps=100_000, record_every=1000)}
LRS = [0.01, 0.03, 0.1, 0.3]
STARTS = [-1.0, 0.0, 1.0, 2.0]
LIMIT = 0.25


def loss(params):
    return (jnp.tanh(params["x"]) - 1.0) ** 2


def ode_x(lr, t, x0):
    """x(t) of the ODE dx/dt = -lr f'(x): the root of F(x) = 64 lr t + F(x0) (float64).

    The 12x and exp(-2x) terms of F are weak (they move x by O(log T / T)), so a
    fixed-point iteration on the quadratic in exp(2x) converges in a few rounds.
    """
    lr, t, x0 = (np.asarray(a, np.float64) for a in (lr, t, x0))
    rhs = 64 * lr * t + np.exp(4 * x0) + 6 * np.exp(2 * x0) + 12 * x0 - 2 * np.exp(-2 * x0)
    x = np.broadcast_to(x0, rhs.shape).astype(np.float64)
    for _ in range(60):
        x = 0.5 * np.log(np.sqrt(9 + rhs - 12 * x + 2 * np.exp(-2 * x)) - 3)
    return x


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
    lr, x0 = np.array(LRS)[:, None], np.array(STARTS)[None, :]
    big_t = 64 * lr * t[-1]
    numbers = {
        "derived_limit": LIMIT, "steps": size["steps"], "lr": LRS, "x0": STARTS,
        "t_dx_dt_over_second_half": slope,
        "ode_t_dx_dt_over_second_half": (ode_x(lr, t[-1], x0) - ode_x(lr, t[half], x0))
        / np.log(t[-1] / t[half]),
        "max_relative_error_vs_limit": float(np.max(np.abs(slope / LIMIT - 1))),
        "final_x": x[..., -1],
        "predicted_final_x": ode_x(lr, t[-1], x0),
        "max_abs_error_final_x_vs_ode": float(np.max(np.abs(x[..., -1] - ode_x(lr, t[-1], x0)))),
        "uncorrected_log_law_final_x": 0.25 * np.log(big_t + np.exp(4 * x0)),
        "leading_correction_minus_3_over_2_sqrt_T": -1.5 / np.sqrt(big_t[:, 0]),
    }
    numbers.update(finding(numbers))
    _figure(t, x, os.path.join(out, "log_rule.png"))
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Reproduced when every run's t dx/dt follows the exact ODE solution, whose limit is
    1/4, to 0.1% (and is within 10% of 1/4 already); partly within 1%. The approach is
    slow, so the distance to 1/4 itself does not decide: after 10^5 steps t dx/dt is 1.4%
    above it at lr 0.01, and from x0 = 2 still 6% below."""
    slope = np.asarray(numbers["t_dx_dt_over_second_half"])
    ode = np.asarray(numbers["ode_t_dx_dt_over_second_half"])
    err = numbers["max_relative_error_vs_limit"]
    off_ode = float(np.max(np.abs(slope / ode - 1)))
    verdict = ("reproduced" if off_ode < 1e-3 and err < 0.1 else "partly" if off_ode < 1e-2
               else "refuted")
    return script.stated(verdict, (
        f"x grows like (1/4) log t and t [x(t+1) - x(t)] -> {numbers['derived_limit']:g}: "
        f"measured {slope.min():.4f} to {slope.max():.4f} over the second half of "
        f"{numbers['steps']:,} steps ({slope.size} runs, lr {min(numbers['lr']):g} to "
        f"{max(numbers['lr']):g}, float64), within {100 * err:.2g}% of 1/4 and within "
        f"{100 * off_ode:.1g}% of the same secant of the ODE solution. Exactly, "
        "e^(4x) + 6e^(2x) + 12x - 2e^(-2x) = 64 lr t + const, so the approach is "
        "(1/4)(1 + 3/sqrt(64 lr t)), from above, not 1 + O(1/(lr t)); the final x matches that "
        f"ODE solution to {numbers['max_abs_error_final_x_vs_ode']:.1e}."))


def _figure(t, x, path):
    fig, (a, b) = script.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(LRS)))
    for i, lr in enumerate(LRS):
        a.plot(t[1:], x[i, 1, 1:], color=colors[i], label=f"lr {lr:g}, x0 = 0")
        a.plot(t[1:], ode_x(lr, t[1:], 0.0), ":", color="k", lw=1)
        # t dx/dt as the secant [x(2t) - x(t)] / log 2 (records are at t = i * record_every,
        # so record 2i is at 2t), drawn at the geometric middle sqrt(2) t
        i2 = np.arange(1, (len(t) - 1) // 2 + 1)
        mid = np.sqrt(2) * t[i2]
        b.plot(mid, (x[i, 1, 2 * i2] - x[i, 1, i2]) / np.log(2), color=colors[i],
               label=f"lr {lr:g}")
        ode = ode_x(lr, t, 0.0)
        b.plot(mid, (ode[2 * i2] - ode[i2]) / np.log(2), ":", color="k", lw=1)
    a.set(xscale="log", xlabel="step t (log)", ylabel="x(t)",
          title="x(t) against the ODE solution (dotted):\n"
                "exp(4x) + 6 exp(2x) + 12x - 2 exp(-2x) = 64 lr t + const")
    b.axhline(LIMIT, color="k", ls="--", label="derived limit 1/4")
    b.set(xscale="log", xlabel="step t (log)", ylabel="[x(2t) - x(t)] / log 2  (~ t dx/dt)",
          title="Sontag's product -> 1/4 from above, as (1/4)(1 + 3 / sqrt(64 lr t))\n"
                "(dotted: the same secant of the ODE solution)")
    b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle("Gradient descent on (tanh(x) - 1)^2 from x0 = 0: divergence at a log rate")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "log_rule")
