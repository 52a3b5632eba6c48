"""Does full-batch gradient descent drive sharpness up to 2/lr and hover there? (seed 004)

The threshold lr f'' = 2 is exact for a quadratic: there a step multiplies the
distance to the minimum by 1 - lr f''. It is not the quartic's threshold: for
f = x^4 (seed 004, bpjax/experiments/quartic.py) GD is x <- x - 4 lr x^3 = x (1 - 4 lr x^2),
and |1 - 4 lr x0^2| < 1 <=> lr x0^2 < 1/2 <=> lr f''(x0) = 12 lr x0^2 < 6: the
quadratic rule is 3x too strict there (in quartic's sweep of 65,536 (lr, x0)
cells, every cell away from lr f''(x0) = 6 falls on the side it predicts, and the
quadratic rule rejects 10% of the convergent ones). For a network the quadratic
model's threshold is the top Hessian eigenvalue, the sharpness: a quadratic with
sharpness S is unstable for lr > 2/S, and that is what is tested here, though a
network is not a quadratic either. Cohen et al. (2021) observed that GD
on a network first raises S ("progressive sharpening") until S reaches 2/lr,
then keeps it there ("edge of stability") while the loss still falls, though
no longer monotonically.

Here: a 64-32-32-10 tanh MLP on 512 digits, half-MSE on one-hot targets, init
Xavier x 0.5 (so S starts below every 2/lr), full-batch GD at several learning
rates in one sweep; sharpness by power iteration on Hessian-vector products,
evaluated inside the sweep at every recorded step (``metrics=``).
"""

import os

import jax
import matplotlib
import numpy as np

import bpjax
from bpjax import losses, nets, problems
from bpjax.experiments import script

SEED = "004"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does gradient descent raise the sharpness to 2/lr, the stability threshold of a "
            "quadratic model, and hover there while the loss keeps falling? (seed 004)")
SIZES = {"default": dict(n=512, steps=3000, record_every=50, iters=30),
         "quick": dict(n=128, steps=400, record_every=20, iters=20)}
LRS = [0.08, 0.12, 0.16, 0.24]
NET = nets.mlp([64, 32, 32, 10], activation="tanh")
LOSS = losses.supervised(NET.apply, "half_mse")


def init(config, key):
    return NET.init(jax.random.key(0), w_init=bpjax.initializers.xavier(0.5))


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    (x, y), _ = problems.digits()
    data = (x[: size["n"]], np.eye(10, dtype=np.float32)[y[: size["n"]]])
    grid = bpjax.Grid(lr=LRS)
    res = bpjax.sweep(LOSS, init, "sgd", grid, size["steps"], record_every=size["record_every"],
                      data=data, record_params=False,
                      metrics={"sharpness": bpjax.metrics.sharpness(iters=size["iters"])})
    every = bpjax.sweep(LOSS, init, "sgd", grid, size["steps"], data=data, record_params=False)
    sharp = res.metrics["sharpness"]  # (lr, record)
    steps = res.coords["step"]
    late = steps >= 0.7 * steps[-1]
    numbers = {"lr": LRS, "steps": size["steps"], "examples": size["n"],
               "diverged": res.diverged, "per_lr": {}}
    for i, lr in enumerate(LRS):
        curve = every.loss[i]
        tail = curve[int(0.7 * len(curve)):]
        numbers["per_lr"][f"{lr:g}"] = {
            "two_over_lr": 2 / lr,
            "sharpness_at_init": float(sharp[i, 0]),
            "sharpness_max": float(sharp[i].max()),
            "late_sharpness_times_lr_over_2": float(np.median(sharp[i, late]) * lr / 2),
            "late_fraction_of_steps_where_loss_rose": float(np.mean(np.diff(tail) > 0)),
            "loss_start": float(curve[0]), "loss_end": float(curve[-1]),
        }
    numbers.update(finding(numbers))
    _figure(steps, sharp, every, os.path.join(out, "sharpness.png"), numbers)
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Reproduced when late in training sharpness x lr / 2 is within 10% of 1 at every lr
    and the loss still falls overall; partly when at some lr; refuted when at none."""
    rows = numbers["per_lr"]
    ratio = [r["late_sharpness_times_lr_over_2"] for r in rows.values()]
    at_edge = [abs(v - 1) <= 0.1 for v in ratio]
    falls = all(r["loss_end"] < r["loss_start"] for r in rows.values())
    verdict = ("reproduced" if all(at_edge) and falls else "partly" if any(at_edge)
               else "refuted")
    rose = [r["late_fraction_of_steps_where_loss_rose"] for r in rows.values()]
    return script.stated(verdict, (
        f"late in training (the last 30% of {numbers['steps']:,} steps) sharpness x lr / 2 = "
        f"{', '.join(f'{v:.3f}' for v in ratio)} for lr {', '.join(rows)} "
        f"({sum(at_edge)} of {len(ratio)} within 10% of the edge 1), while the loss "
        + ("keeps falling" if falls else "does not fall at every lr")
        + f", not monotonically (rising on {100 * min(rose):.0f}-{100 * max(rose):.0f}% of "
        "late steps). lr S = 2 is the quadratic's threshold; the quartic's is lr f''(x0) = 6 "
        "(experiments/quartic)."))


def _figure(steps, sharp, every, path, numbers):
    fig, (a, b) = script.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(LRS)))
    for i, lr in enumerate(LRS):
        a.plot(steps, sharp[i], color=colors[i], label=f"lr {lr:g}")
        a.axhline(2 / lr, color=colors[i], ls="--", lw=1)
        b.plot(every.coords["step"], every.loss[i], color=colors[i], lw=0.8, label=f"lr {lr:g}")
    a.set(xlabel="step", ylabel="sharpness (top Hessian eigenvalue)",
          title="Sharpness rises to 2/lr (dashed) and hovers there")
    b.set(xlabel="step", ylabel="training loss (half-MSE)", yscale="log",
          title="...while the loss keeps falling, not monotonically")
    for ax in (a, b):  # below the axes: the curves and the 2/lr lines fill them
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(LRS), fontsize=8)
    fig.suptitle(f"Full-batch GD, tanh 64-32-32-10 on {numbers['examples']} digits")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "edge_of_stability")
