"""Gradient descent on f(x) = x^4: which (learning rate, start) pairs converge (seed 004).

The seed's answer: x_{k+1} = x_k (1 - 4 lr x_k^2). If |1 - 4 lr x0^2| < 1 then
|x1| < |x0|, so 4 lr x1^2 < 4 lr x0^2 and every later step shrinks |x| too: the
iterates converge to 0. If |1 - 4 lr x0^2| > 1 they grow, and grow faster: they
diverge. So the exact boundary is lr x0^2 = 1/2 (on it, x alternates +-x0 forever).

The local-quadratic rule lr < 2 / f''(x0) = 1 / (6 x0^2), which is exact for a
quadratic, is 3 times too conservative here: it rejects the convergent band
1/6 < lr x0^2 < 1/2. The answer's general criterion |lr f'(x0)| < 1 (a step shorter than
1) is not the boundary either: 4 lr |x0|^3 < 1 is lr x0^2 < 1 / (4 |x0|), a length compared
with the unit of x, so it is too lax for |x0| < 1/2 (it accepts divergent runs) and too strict
beyond (it rejects convergent ones); along a convergent path |x| only shrinks, so asking it
along the path rejects the same runs. The scale-free form |lr f'(x0)| < 2 |x0|, a step shorter
than twice the distance to the minimum, is the exact rule. Doubling x0 costs 4x in lr
(slope -2 of the largest stable lr against x0), the answer's 2^d for a depth-2 net
((w1 w2)^2 at w1 = w2 = x is x^4); the criterion would say 8x (slope -3).

Every cell is classified from one sweep over a log grid: diverged (non-finite),
oscillating (not diverged, still overshooting: 4 lr x_T^2 > 1, so each step flips the
sign), or converging (4 lr x_T^2 <= 1: monotone).
"""

import os

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

import bpjax
from bpjax import problems
from bpjax.experiments import script

SEED = "004"  # the seed document it answers (../shared/seeds/)
QUESTION = ("For gradient descent on x^4, which learning rates and starts converge, is the "
            "seed's |1 - 4 lr x0^2| < 1 rule the exact boundary, and does its general "
            "criterion |lr f'(x0)| < 1 predict it? (seed 004)")
SIZES = {"default": dict(n=256, steps=1000), "quick": dict(n=64, steps=200)}
CLASSES = ["converging", "oscillating", "diverged"]


def classify(res):
    """0 converging, 1 oscillating, 2 diverged, per (lr, x0) cell."""
    lr = res.coords["lr"][:, None]
    x_t = res.final_params["x"]
    overshooting = 4 * lr * x_t.astype(np.float64) ** 2 > 1
    return np.where(res.diverged, 2, np.where(overshooting, 1, 0))


def away_from_boundary(predicted: np.ndarray) -> np.ndarray:
    """Cells whose 3x3 neighbourhood has the same predicted class (> one cell away)."""
    p = np.pad(predicted, 1, mode="edge")
    same = np.ones_like(predicted, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            same &= p[1 + di:p.shape[0] - 1 + di, 1 + dj:p.shape[1] - 1 + dj] == predicted
    return same


def largest_stable_lr_slope(lr, x0, converged) -> float:
    """Log-log slope of the largest convergent grid lr against x0 (``converged``: (lr, x0)),
    over the columns whose boundary lies inside the lr grid (some lr converges, some not)."""
    inside = converged.any(0) & ~converged.all(0)
    top = lr[converged.shape[0] - 1 - np.argmax(converged[::-1], axis=0)]
    return float(np.polyfit(np.log(x0[inside]), np.log(top[inside]), 1)[0])


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    lr = np.geomspace(1e-4, 1e2, size["n"])
    x0 = np.geomspace(1e-2, 1e2, size["n"])
    res = bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, "sgd",
                      bpjax.Grid(lr=lr, x0=x0), size["steps"], record_every=size["steps"])
    cls = classify(res)
    lr32, x32 = res.coords["lr"][:, None].astype(np.float64), res.coords["x0"][None, :]
    product = lr32 * x32.astype(np.float64) ** 2
    exact = product < 0.5  # predicted to converge
    quadratic = product < 1 / 6
    away = away_from_boundary(exact)
    agree = np.mean(exact[away] == (cls[away] != 2))
    converged = cls != 2
    criterion = lr32 * 4 * x32.astype(np.float64) ** 3 < 1  # the answer's |lr f'(x0)| < 1
    numbers = {
        "cells": int(cls.size),
        "steps": size["steps"],
        "fraction": {c: float(np.mean(cls == i)) for i, c in enumerate(CLASSES)},
        "agreement_with_exact_boundary_away_from_it": float(agree),
        "cells_away_from_boundary": int(away.sum()),
        "disagreeing_cells_anywhere": int(np.sum(exact != converged)),
        "quadratic_rule_lr_over_exact_lr": 1 / 3,
        "convergent_cells_rejected_by_quadratic_rule":
            float(np.mean(~quadratic[converged])),
        "largest_stable_lr_x0sq_measured": float(product[converged].max()),
        "gradient_criterion": {
            "fraction_of_cells_classified_correctly": float(np.mean(criterion == converged)),
            "fraction_of_cells_divergent_but_accepted": float(np.mean(criterion & ~converged)),
            "fraction_of_cells_convergent_but_rejected": float(np.mean(~criterion & converged)),
            "fraction_of_convergent_cells_rejected": float(np.mean(~criterion[converged])),
            "fraction_of_divergent_cells_accepted": float(np.mean(criterion[~converged])),
            "x0_where_it_equals_the_exact_rule": 0.5,
            "predicted_lr_max_slope_in_x0": -3.0,
        },
        "lr_max_slope_in_x0_measured": largest_stable_lr_slope(res.coords["lr"],
                                                               res.coords["x0"], converged),
        "lr_max_slope_in_x0_exact": -2.0,
    }
    numbers.update(finding(numbers))
    _figure(res, cls, os.path.join(out, "quartic_map.png"), numbers)
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Reproduced when every cell more than one cell from lr x0^2 = 1/2 falls on the side
    the rule predicts and the general criterion |lr f'(x0)| < 1 classifies at least 99% of
    the map; partly when only the rule holds (on at least 99% of those cells)."""
    agree = numbers["agreement_with_exact_boundary_away_from_it"]
    crit = numbers["gradient_criterion"]
    right = crit["fraction_of_cells_classified_correctly"]
    verdict = ("refuted" if agree < 0.99 else "reproduced" if agree == 1.0 and right >= 0.99
               else "partly")
    return script.stated(verdict, (
        f"|1 - 4 lr x0^2| < 1, i.e. lr x0^2 < 1/2, is the exact boundary: over "
        f"{numbers['cells']:,} runs of {numbers['steps']:,} steps, "
        f"{100 * agree:.2f}% of the {numbers['cells_away_from_boundary']:,} cells more than "
        f"one cell from it fall on the side it predicts, "
        f"{numbers['disagreeing_cells_anywhere']} cells disagree anywhere, and the largest "
        f"convergent lr x0^2 is {numbers['largest_stable_lr_x0sq_measured']:.4g}. The "
        f"quadratic rule lr < 2/f''(x0) is 3x too strict: it rejects "
        f"{100 * numbers['convergent_cells_rejected_by_quadratic_rule']:.0f}% of the "
        "convergent cells. The answer's general criterion |lr f'(x0)| < 1 is not the boundary: "
        f"it classifies {100 * right:.1f}% of the map correctly, accepting "
        f"{100 * crit['fraction_of_divergent_cells_accepted']:.1f}% of the divergent runs "
        f"(|x0| < {crit['x0_where_it_equals_the_exact_rule']:g}) and rejecting "
        f"{100 * crit['fraction_of_convergent_cells_rejected']:.1f}% of the convergent ones "
        "(larger |x0|), since it compares a step with the unit of x; the scale-free "
        "|lr f'(x0)| < 2 |x0| is exact. The largest stable lr falls as x0 to the "
        f"{numbers['lr_max_slope_in_x0_measured']:.2f} (exact "
        f"{numbers['lr_max_slope_in_x0_exact']:g}, the criterion "
        f"{crit['predicted_lr_max_slope_in_x0']:g}): doubling x0 costs 4x in lr, the "
        "answer's 2^d at d = 2."))


def _figure(res, cls, path, numbers):
    lr, x0 = res.coords["lr"], res.coords["x0"]
    fig, ax = script.subplots(figsize=(7.5, 6), constrained_layout=True)
    cmap = ListedColormap(["#4c9a5f", "#e3b23c", "#b03a2e"])
    ax.pcolormesh(x0, lr, cls, cmap=cmap, vmin=-0.5, vmax=2.5, shading="nearest")
    xs = np.geomspace(x0[0], x0[-1], 200)
    ax.plot(xs, 0.5 / xs**2, "k-", lw=2, label="exact boundary lr x0² = 1/2")
    ax.plot(xs, 1 / (6 * xs**2), "w--", lw=2, label="quadratic rule lr = 2/f''(x0)")
    ax.set(xscale="log", yscale="log", xlim=(x0[0], x0[-1]), ylim=(lr[0], lr[-1]),
           xlabel="start x0", ylabel="learning rate lr",
           title=f"Gradient descent on x^4, {numbers['steps']} steps, {numbers['cells']} runs\n"
                 f"agreement with the exact boundary (away from it): "
                 f"{100 * numbers['agreement_with_exact_boundary_away_from_it']:.2f}%")
    handles = [Patch(color=cmap(i), label=c) for i, c in enumerate(CLASSES)]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], loc="lower left",
              framealpha=0.9)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "quartic")
