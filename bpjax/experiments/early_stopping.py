"""Early stopping on a validation set, inside the compiled sweep (seed 003).

Seed 003 prefers validation-based stopping: watch the error on held-out data,
stop when it rises, return the best weights seen. ``bpjax.sweep(...,
val_data=...)`` does this for every configuration at once: at every record step
each run evaluates its validation loss and keeps the best value, the step and
the params there. Here a 64-64-10 tanh net learns the 8x8 digits from only 100
training images (overfitting is then quick and visible), with the 449 images of
the validation split held out to choose the best step, over learning rates 0.03
to 1 and 8 seeds, full-batch SGD for 4000 steps. The validation set both chooses
each run's best step and, if it also scored it, would flatter it; so the chosen
and the final params are also scored on a test split no run or choice sees: the
other 1248 images of the training split.

Reported per learning rate: the validation and test loss and accuracy at the best
step against those at the end, and where the best step falls.

What we measure (default size; numbers in summary.json): the training loss keeps
falling (median 0.02 at lr 0.03 down to 3e-4 at lr 1) while the validation loss
has a minimum and turns up; the best step falls in inverse proportion to the
learning rate (medians 3300, 988, 338, 113 steps for lr 0.03, 0.1, 0.3, 1: a
fixed "distance" lr x steps of ~100), and the final validation loss exceeds the
best by up to 1.35x (median 0.43 against 0.33 at lr 1). On the untouched test
split, early stopping gains as much: median test loss lower by 0.0003, 0.022,
0.054, 0.096 (lr 0.03 to 1; on the validation set that chose the step: 0.0007,
0.023, 0.056, 0.095), so the selection bias is negligible here. Accuracy barely
notices: +0.0 to +0.7 points on the test split (90.7-90.9% against 90.2-90.7%),
+0.0 to +0.3 on the validation set, so on this problem the overfitting is in the
confidence, not in the decisions.
"""

import os

import jax
import matplotlib
import matplotlib.ticker
import numpy as np

import bpjax
from bpjax import losses, nets
from bpjax.compilation_cache import jit_once
from bpjax.experiments import script
from bpjax.problems import digits

SEED = "003"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does validation-based early stopping, run inside the sweep, return weights that "
            "do better on unseen test data than training to the end, on a small data set? "
            "(seed 003)")
SIZES = {"default": dict(lrs=[0.03, 0.1, 0.3, 1.0], seeds=8, steps=4000, record=25),
         "quick": dict(lrs=[0.1, 1.0], seeds=2, steps=600, record=20)}
N_TRAIN, N_VAL = 100, 450  # the validation split has 449 images: all of them


def evaluate(net, params, x, y):
    """(mean cross-entropy, accuracy) of one run's params on (x, y)."""
    logits = jax.vmap(net.apply, (None, 0))(params, x)
    return losses.softmax_cross_entropy(logits, y).mean(), (logits.argmax(-1) == y).mean()


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    (x, y), (xv, yv) = digits()
    train = (x[:N_TRAIN].astype(np.float32), y[:N_TRAIN].astype(np.int32))
    val = (xv[:N_VAL].astype(np.float32), yv[:N_VAL].astype(np.int32))
    # Test: the training split's images after the first N_TRAIN, used by no run and no
    # choice; the validation set picks each run's best step, so its gain is biased up.
    test = (x[N_TRAIN:].astype(np.float32), y[N_TRAIN:].astype(np.int32))
    net = nets.mlp([64, 64, 10], activation="tanh")
    loss = losses.supervised(net.apply, "cross_entropy")
    res = bpjax.sweep(loss, lambda c, k: net.init(k), "sgd",
                      bpjax.Grid(lr=size["lrs"], seed=np.arange(size["seeds"])), size["steps"],
                      record_every=size["record"], data=train, val_data=val,
                      record_params=False)
    scores = jit_once(jax.vmap(jax.vmap(lambda p, xs, ys: evaluate(net, p, xs, ys),
                                       (0, None, None)), (0, None, None)))
    acc_best = np.asarray(scores(res.best_params, *val)[1])
    acc_final = np.asarray(scores(res.final_params, *val)[1])
    test_best = [np.asarray(a) for a in scores(res.best_params, *test)]
    test_final = [np.asarray(a) for a in scores(res.final_params, *test)]
    final_val = res.val_loss[..., -1]
    numbers = {"n_train": N_TRAIN, "n_val": len(val[1]), "n_test": len(test[1]),
               "steps": size["steps"], "per_lr": {}}
    for i, lr in enumerate(size["lrs"]):
        numbers["per_lr"][str(lr)] = {
            "median_best_step": float(np.median(res.best_step[i])),
            "median_best_val_loss": float(np.median(res.best_val_loss[i])),
            "median_final_val_loss": float(np.median(final_val[i])),
            "median_final_train_loss": float(np.median(res.final_loss[i])),
            "fraction_stopped_before_the_end": float(np.mean(res.best_step[i] < size["steps"])),
            "median_val_accuracy_best": float(np.median(acc_best[i])),
            "median_val_accuracy_final": float(np.median(acc_final[i])),
            "median_val_accuracy_gain": float(np.median(acc_best[i] - acc_final[i])),
            "median_test_loss_best": float(np.median(test_best[0][i])),
            "median_test_loss_final": float(np.median(test_final[0][i])),
            "median_test_accuracy_best": float(np.median(test_best[1][i])),
            "median_test_accuracy_final": float(np.median(test_final[1][i])),
            "median_test_accuracy_gain": float(np.median(test_best[1][i] - test_final[1][i])),
            "median_val_loss_gain": float(np.median(final_val[i] - res.best_val_loss[i])),
            "median_test_loss_gain": float(np.median(test_final[0][i] - test_best[0][i])),
        }
    numbers["final_over_best_val_loss"] = {"min": float((final_val / res.best_val_loss).min()),
                                           "max": float((final_val / res.best_val_loss).max())}
    numbers = {**finding(numbers), **numbers}
    _figure(res, size, numbers, os.path.join(out, "early_stopping.png"))
    return script.save_summary(out, numbers)


def finding(numbers) -> dict:
    """The seed's preference for validation-based stopping, scored on the test split no run
    or choice saw: reproduced if the early-stopped params have the lower median test loss
    at every learning rate, partly if at some, refuted if at none."""
    rows = numbers["per_lr"]
    span = lambda key, k=1.0, f=".2g": "/".join(f"{k * r[key]:{f}}" for r in rows.values())  # noqa: E731
    gains = [r["median_test_loss_gain"] for r in rows.values()]
    verdict = ("reproduced" if all(g > 0 for g in gains) else "partly"
               if any(g > 0 for g in gains) else "refuted")
    return script.stated(verdict, (
        f"on a test split of {numbers['n_test']} images that no run or choice saw, the "
        f"early-stopped params (best step chosen on {numbers['n_val']} validation images, "
        f"{numbers['n_train']} training images) lower the median test loss by "
        f"{span('median_test_loss_gain')} (lr {'/'.join(rows)}; on the validation set that "
        f"chose them: {span('median_val_loss_gain')}), and change test accuracy by "
        f"{span('median_test_accuracy_gain', 100, '+.1f')} points (validation: "
        f"{span('median_val_accuracy_gain', 100, '+.1f')}); median best step "
        f"{span('median_best_step', 1, '.0f')}; the final validation loss is "
        f"up to {numbers['final_over_best_val_loss']['max']:.2f}x the best."))


def _figure(res, size, numbers, path):
    fig, axes = script.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(size["lrs"])))
    for i, (lr, color) in enumerate(zip(size["lrs"], colors)):
        axes[0].plot(res.steps, np.median(res.loss[i], 0), "--", color=color)
        axes[0].plot(res.steps, np.median(res.val_loss[i], 0), "-", color=color,
                     label=f"lr {lr}")
        axes[0].scatter(res.best_step[i], res.best_val_loss[i], color=color, marker="v", s=25)
        row = numbers["per_lr"][str(lr)]
        bars = [("median_val_accuracy_best", 1.0, None, "validation, at the best step"),
                ("median_val_accuracy_final", 0.4, "//", "validation, at the end"),
                ("median_test_accuracy_best", 1.0, "..", "test, at the best step"),
                ("median_test_accuracy_final", 0.4, "xx", "test, at the end")]
        for j, (key, alpha, hatch, label) in enumerate(bars):
            axes[1].bar(i + 0.2 * (j - 1.5), row[key], 0.2, color=color, alpha=alpha,
                        hatch=hatch, label=label if i == 0 else None)
    axes[0].set(xscale="log", yscale="log", xlabel="SGD step",
                ylabel="loss (cross-entropy), median over seeds",
                title=f"Training (dashed) and validation (solid) loss, {N_TRAIN} training "
                      f"images\n(triangles: each run's best validation step, kept by the sweep)")
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # they overlapped
    axes[0].legend(fontsize=8)
    accs = [r[k] for r in numbers["per_lr"].values() for k in
            ("median_val_accuracy_best", "median_val_accuracy_final",
             "median_test_accuracy_best", "median_test_accuracy_final")]
    axes[1].set(xticks=range(len(size["lrs"])), xticklabels=[f"lr {lr}" for lr in size["lrs"]],
                ylim=(min(accs) - 0.02, min(1.0, max(accs) + 0.012)),
                ylabel=f"accuracy, median ({numbers['n_val']} validation, "
                       f"{numbers['n_test']} test images)",
                title="Accuracy: early-stopped params against final params")
    axes[1].legend(fontsize=7, ncol=2, loc="upper center")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "early_stopping")
