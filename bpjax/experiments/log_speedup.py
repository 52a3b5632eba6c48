"""Could the log rule speed learning? (seed 001, Sontag's closing suggestion)

Sontag: "Once diverging weights are in logarithmic growth mode, it is possible to
extrapolate their limiting values ... to improve network performance." We wrap
gradient descent in ``bpjax.log_rule.log_extrapolate`` (jump a weight ahead along
a + b log t once b = t dw/dt is steady) and count steps to a target loss against
plain GD, in one sweep per problem over learning rates and seeds:
  the single neuron (tanh(x) - 1)^2 (pure log growth), target 1e-4, one start
  x0 ~ U[-1, 1] per seed (a fixed start made every seed the same run);
  XOR with a 2-2-1 sigmoid net (Sontag's figure 5), target 1e-3.
A run that never reaches the target counts as not reaching it; no run is dropped.

What we measure (default size, 3 learning rates x 8 seeds per problem): on the
single neuron, where growth is exactly logarithmic, the extrapolation reaches the
target a median 10.7 times sooner over the 24 runs. The learning rate, not the
start, decides it: 58x at lr 0.01 (63,800 -> 1,100 steps), 10.7x at lr 0.1
(6,400 -> 600), 2.0x at lr 1 (700 -> 300-400); the 8 starts move a run by at
most two 100-step records, because log growth forgets its start (F(x0) <= 111
against 64 lr t ~ 4.1e4 at the target, in log_rule's notation), so the 24 runs
give only 10 distinct (GD, extrapolated) pairs of step counts. On XOR the median
gain is 1.2x (2.4x at lr 0.5, 1.2x at lr 2, none at the best lr 8: 500 steps
either way), and one run of 24 that plain GD finishes (15,600 steps) is lost. A
modest, honest result: the rule pays where the log law holds exactly, little
where the net is still far from it.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import bpjax
from bpjax import losses, nets, problems, trajectories
from bpjax.experiments import script
from bpjax.extrapolate import log_extrapolate

SEED = "001"  # the seed document it answers (../shared/seeds/)
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
    # one start per seed: x0 ~ U[-1, 1] (a fixed start would make every seed the same run)
    neuron = dict(loss=lambda p: (jnp.tanh(p["x"]) - 1.0) ** 2,
                  init=lambda c, k: {"x": jax.random.uniform(k, (), jnp.float32, -1.0, 1.0)},
                  lrs=[0.01, 0.1, 1.0], target=1e-4, data=None)
    xor = dict(loss=losses.supervised(NET.apply, "mse"),
               init=lambda c, k: NET.init(k, w_init=bpjax.initializers.uniform(1.0)),
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
        starts = bpjax.initial_params(p["init"], grid)
        numbers["problems"][name] = {
            "target": p["target"], "runs": per,
            "distinct_starts_per_lr": _distinct_starts(starts, size["seeds"]),
            "steps_to_target_per_run": {opt: steps_to[o] for o, opt in enumerate(OPTIMIZERS)},
            "median_speedup_where_both_reach": float(np.median(gd_steps[both] / np.maximum(
                log_steps[both], 1))) if both.any() else None,
            "median_speedup_per_lr": {
                f"lr {lr:g}": float(np.median(gd_steps[i][both[i]] / np.maximum(
                    log_steps[i][both[i]], 1))) if both[i].any() else None
                for i, lr in enumerate(p["lrs"])},
            # runs are distinct starts; how many different (GD, extrapolated) step counts
            "distinct_outcomes": len({(int(a), int(b)) for a, b in zip(
                np.ravel(gd_steps), np.ravel(log_steps))}),
            "runs_only_plain_gd_reaches": int(np.sum((gd_steps >= 0) & (log_steps < 0))),
            "runs_only_log_reaches": int(np.sum((gd_steps < 0) & (log_steps >= 0))),
        }
        curves[name] = (res.coords["step"], res.loss, p["lrs"])
    numbers.update(finding(numbers))
    _figure(curves, os.path.join(out, "log_speedup.png"))
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Sontag's suggestion, per problem: reproduced where the median speedup is at least 2x
    on every problem, partly where on some, refuted where on none."""
    parts, fast = [], []
    for name, row in numbers["problems"].items():
        per = ", ".join(f"{v:.1f}x at {k}" if v is not None else f"not reached by both at {k}"
                        for k, v in row["median_speedup_per_lr"].items())
        med = row["median_speedup_where_both_reach"]
        fast.append(med is not None and med >= 2)
        runs = sum(len(np.ravel(v)) for v in row["steps_to_target_per_run"].values()) // 2
        med = f"{med:.1f}x" if med is not None else "no gain measurable"
        parts.append(f"{name}: median {med} fewer steps to loss {row['target']:g} over {runs} "
                     f"runs ({per}; {row['distinct_starts_per_lr']} distinct starts per lr), "
                     f"lost runs that plain GD finishes: {row['runs_only_plain_gd_reaches']}")
    verdict = "reproduced" if all(fast) else "partly" if any(fast) else "refuted"
    return script.stated(verdict, "extrapolating along a + b log t pays where growth is exactly "
                         "logarithmic, little where the net is still far from it. "
                         + "; ".join(parts) + ".")


def _distinct_starts(starts, seeds: int) -> int:
    """How many different initial params the seeds give (at the first lr)."""
    leaves = jax.tree.leaves(starts)  # each (lr, seed, ...)
    return len({tuple(np.concatenate([np.ravel(np.asarray(a)[0, s]) for a in leaves]))
                for s in range(seeds)})


def _figure(curves, path):
    fig, axes = script.subplots(1, len(curves), figsize=(13, 4.8), constrained_layout=True)
    for ax, (name, (steps, loss, lrs)) in zip(axes, curves.items()):
        colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(lrs)))
        for o, (opt, style) in enumerate(zip(OPTIMIZERS, ("-", "--"))):
            for i, lr in enumerate(lrs):
                ax.plot(steps[1:], np.median(loss[o, i], axis=0)[1:], style, color=colors[i],
                        label=f"{opt}, lr {lr:g}")
        ax.set(xscale="log", yscale="log", xlabel="step (log)",
               ylabel="loss (median over seeds)", title=name)
        # below the axes: inside, the curves fill every corner of one panel or the other
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.suptitle("Plain GD (solid) against GD with log-rule extrapolation (dashed)")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "log_speedup")
