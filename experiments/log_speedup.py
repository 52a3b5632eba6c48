"""Could the log rule speed learning? (seed 001, Sontag's closing suggestion)

Sontag: "Once diverging weights are in logarithmic growth mode, it is possible to
extrapolate their limiting values ... to improve network performance." We wrap
gradient descent in ``bpjax.log_rule.log_extrapolate`` (jump a weight ahead along
a + b log t once b = t dw/dt is steady) and count steps to a target loss against
plain GD, in one sweep per problem over learning rates and seeds:
  the single neuron (tanh(x) - 1)^2 (pure log growth), target 1e-4;
  XOR with a 2-2-1 sigmoid net (Sontag's figure 5), target 1e-3.
A run that never reaches the target counts as not reaching it; no run is dropped.

What we measure (default size): on the single neuron, where growth is exactly
logarithmic, the extrapolation reaches the target a median 10.7 times sooner
(63,800 -> 1,100 steps at lr 0.01). On XOR the median gain is 1.2x, none at the
best learning rate (500 steps either way), and one run of 24 that plain GD
finishes is lost. A modest, honest result: the rule pays where the log law holds
exactly, little where the net is still far from it.
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import bpjax  # noqa: E402
from bpjax import experiment, losses, nets, problems, trajectories  # noqa: E402
from bpjax.log_rule import log_extrapolate  # noqa: E402

QUESTION = ("Does extrapolating weights in log-growth mode, as Sontag suggests, reach a target "
            "loss in fewer steps than plain gradient descent? (seed 001)")
SIZES = {"default": dict(steps=100_000, record_every=100, seeds=8),
         "quick": dict(steps=10_000, record_every=100, seeds=2)}
NET = nets.mlp([2, 2, 1], activation="sigmoid", output_activation="sigmoid")


def gd(lr):
    return optax.sgd(lr)


def gd_log(lr):
    return log_extrapolate(optax.sgd(lr), every=100)


OPTIMIZERS = {"GD": gd, "GD + log extrapolation": gd_log}


def problems_to_run():
    x, y = problems.xor()
    neuron = dict(loss=lambda p: (jnp.tanh(p["x"]) - 1.0) ** 2,
                  init=lambda c, k: {"x": jnp.zeros(()) + 0.0 * c["seed"]},
                  lrs=[0.01, 0.1, 1.0], target=1e-4, data=None)
    xor = dict(loss=losses.supervised(NET.apply, "mse"),
               init=lambda c, k: NET.init(k, w_init=bpjax.init.uniform(1.0)),
               lrs=[0.5, 2.0, 8.0], target=1e-3, data=(x, y))
    return {"neuron (tanh(x) - 1)^2": neuron, "XOR 2-2-1 sigmoid": xor}


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    numbers = {"steps": size["steps"], "problems": {}}
    curves = {}
    for name, p in problems_to_run().items():
        grid = bpjax.Grid(lr=p["lrs"], seed=np.arange(size["seeds"]))
        res = bpjax.sweep(p["loss"], p["init"], OPTIMIZERS, grid, size["steps"],
                          record_every=size["record_every"], data=p["data"],
                          record_params=False)
        first = trajectories.analyze({}, res.loss, p["target"])["first_below"]
        steps_to = np.where(first >= 0, first * size["record_every"], -1)
        per = {}
        for o, opt in enumerate(OPTIMIZERS):
            for i, lr in enumerate(p["lrs"]):
                s = steps_to[o, i]
                per[f"{opt}, lr {lr:g}"] = {
                    "fraction_reaching_target": float(np.mean(s >= 0)),
                    "median_steps_to_target": float(np.median(s[s >= 0])) if (s >= 0).any()
                    else None,
                    "fraction_diverged": float(res.diverged[o, i].mean()),
                }
        gd_steps, log_steps = steps_to[0], steps_to[1]
        both = (gd_steps >= 0) & (log_steps >= 0)
        numbers["problems"][name] = {
            "target": p["target"], "runs": per,
            "median_speedup_where_both_reach": float(np.median(gd_steps[both] / np.maximum(
                log_steps[both], 1))) if both.any() else None,
            "runs_only_plain_gd_reaches": int(np.sum((gd_steps >= 0) & (log_steps < 0))),
            "runs_only_log_reaches": int(np.sum((gd_steps < 0) & (log_steps >= 0))),
        }
        curves[name] = (res.coords["step"], res.loss, p["lrs"])
    _figure(curves, os.path.join(out, "log_speedup.png"))
    return experiment.save_summary(out, numbers)


def _figure(curves, path):
    fig, axes = plt.subplots(1, len(curves), figsize=(13, 4.8), constrained_layout=True)
    for ax, (name, (steps, loss, lrs)) in zip(axes, curves.items()):
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(lrs)))
        for o, (opt, style) in enumerate(zip(OPTIMIZERS, ("-", "--"))):
            for i, lr in enumerate(lrs):
                ax.plot(steps[1:], np.median(loss[o, i], axis=0)[1:], style, color=colors[i],
                        label=f"{opt}, lr {lr:g}")
        ax.set(xscale="log", yscale="log", xlabel="step (log)",
               ylabel="loss (median over seeds)", title=name)
        ax.legend(fontsize=7)
    fig.suptitle("Plain GD (solid) against GD with log-rule extrapolation (dashed)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "log_speedup")
