"""A census of local minima in small tanh nets (seed 001, Sontag's closing question).

Sontag asks how many local minima realistic nets have. We count them in 2-h-1
nets (tanh hidden units, linear output, biases, mean half squared error) for
h = 1..8 on XOR (4 points, targets +-1) and on a fixed set of 12 random points
with random +-1 labels. For each h, one sweep trains many random starts
(weights and biases ~ N(0, 1)) by gradient descent in float32; each end point is
then polished in float64 by damped saddle-free Newton (``bpjax.critical``) and
classified by its gradient and full Hessian:

- minimum: |grad| < 1e-9 and no Hessian eigenvalue below -1e-7 * max(1, top);
  isolated when every eigenvalue exceeds that tolerance, degenerate (a valley of
  minima, its dimension the number of near-zero eigenvalues) otherwise;
- saddle: |grad| < 1e-9 with a clearly negative eigenvalue;
- at infinity: some parameter beyond 20 in magnitude, or the polish grew the
  parameter norm by more than 10 (Newton runs off along a direction in which
  the loss keeps falling towards a limit it only reaches at infinity: Sontag's
  minima "at infinity"; a saturated tanh unit looks stationary in float64 there);
- unfinished: none of these after the polish.

Distinct minima are counted two ways: by loss level (losses within 1e-7 are one
level) and, for isolated minima, by parameters modulo the net's symmetries
(permuting hidden units, flipping the sign of a unit's in- and out-weights;
``critical.canonical_one_hidden``), within 1e-4.

What we find (default size, 256 starts per h; exact counts in summary.json):
finite local minima above the global one are rare. XOR: at h = 1 (which cannot
fit XOR) 5% of starts end at a finite minimum (loss 1/2) and 95% run off to
infinity towards loss 1/3; at h = 2 there are two finite levels, 0 (97% of the
minima) and 1/4 (3%); from h = 3 on every start reaches loss 0. Random labels:
one isolated minimum at h = 1 (loss 0.416); at h = 2 and 3 no start ends at a
finite minimum at all: every one runs off to infinity, towards 14 and 36
distinct limits (clustered within 1e-3; those runs are still moving, so these
counts are upper bounds); from h = 4 (17 parameters > 12 points) loss 0 is
reached, by 10% of starts at h = 4 and 84% at h = 8, the rest escaping. Every
minimum found once parameters outnumber points is degenerate (a valley whose
dimension grows with h: 5 to 29 flat directions), so counting minima by
parameters has no finite answer there; the only isolated minimum found is the
h = 1 one. Sontag's minima at infinity, not finite local minima, are what stops
gradient descent short in these nets.
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import critical, experiment, losses, nets  # noqa: E402

QUESTION = ("How many distinct local minima do small 2-h-1 tanh nets have on XOR and on "
            "random labels, and how does the count grow with h? (seed 001)")
SIZES = {"default": dict(widths=8, starts=256, steps=3000, polish=100),
         "quick": dict(widths=3, starts=48, steps=1500, polish=60)}
LR = 0.2
GRAD_TOL, EIG_TOL, LEVEL_TOL, PARAM_TOL, FAR, GROWTH = 1e-9, 1e-7, 1e-7, 1e-4, 20.0, 10.0


def datasets():
    """XOR on {-1, 1}^2 with targets +-1, and 12 random points with random +-1 labels."""
    x = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float64)
    y = -(x[:, :1] * x[:, 1:])
    rng = np.random.default_rng(1)
    xr = rng.normal(size=(12, 2))
    yr = rng.choice([-1.0, 1.0], size=(12, 1))
    return {"xor": (x, y), "random_labels": (xr, yr)}


def census(data, h: int, starts: int, steps: int, polish_iters: int) -> dict:
    net = nets.mlp([2, h, 1], activation="tanh")
    loss = losses.supervised(net.apply, "half_mse")
    x32 = tuple(a.astype(np.float32) for a in data)

    def init(config, key):
        del config
        n = bpjax.init.normal(1.0)
        return net.init(key, w_init=n, b_init=n)

    res = bpjax.sweep(loss, init, "sgd", bpjax.Grid(lr=[LR], seed=np.arange(starts)), steps,
                      record_every=steps, data=x32, record_params=False)
    end = jax.tree.map(lambda a: np.asarray(a[0], np.float64), res.final_params)
    with jax.enable_x64(True):
        x64 = tuple(jnp.asarray(a, jnp.float64) for a in data)
        polished, grad, eig = jax.jit(jax.vmap(
            lambda p: critical.polish(lambda q: loss(q, x64), p, iters=polish_iters)))(
            jax.tree.map(jnp.asarray, end))
        final = np.asarray(jax.jit(jax.vmap(lambda p: loss(p, x64)))(polished))
    polished = jax.tree.map(np.asarray, polished)
    grad, eig = np.asarray(grad), np.asarray(eig)
    n_params = eig.shape[-1]
    scale = np.maximum(1.0, np.abs(eig).max(axis=-1))
    flat = lambda p: np.concatenate([a.reshape(starts, -1) for a in jax.tree.leaves(p)], 1)  # noqa: E731
    grew = np.linalg.norm(flat(polished), axis=1) - np.linalg.norm(flat(end), axis=1)
    far = (np.max(np.abs(flat(polished)), axis=1) > FAR) | (grew > GROWTH)
    stationary = (grad < GRAD_TOL) & ~far
    minimum = stationary & (eig[:, 0] > -EIG_TOL * scale)
    saddle = stationary & ~minimum
    flat_dims = np.sum(np.abs(eig) <= EIG_TOL * scale[:, None], axis=1)
    isolated = minimum & (flat_dims == 0)
    n_far, far_of = (critical.count_distinct(final[far][:, None], 1e-3) if far.any()
                     else (0, np.zeros(0, int)))
    far_levels = sorted((float(final[far][far_of == i].mean()), float(np.mean(far_of == i)))
                        for i in range(n_far))
    n_levels, level_of = (critical.count_distinct(final[minimum][:, None], LEVEL_TOL)
                          if minimum.any() else (0, np.zeros(0, int)))
    levels = [float(final[minimum][level_of == i].mean()) for i in range(n_levels)]
    basin = [float(np.mean(level_of == i)) for i in range(n_levels)]
    order = np.argsort(levels)
    canon = critical.canonical_one_hidden(jax.tree.map(lambda a: a[isolated], polished))
    n_points = critical.count_distinct(canon, PARAM_TOL)[0] if isolated.any() else 0
    return {
        "h": h, "parameters": n_params, "starts": starts,
        "fraction_minimum": float(minimum.mean()), "fraction_saddle": float(saddle.mean()),
        "fraction_at_infinity": float(far.mean()),
        "fraction_unfinished": float(1 - minimum.mean() - saddle.mean() - far.mean()),
        "fraction_of_minima_degenerate": float(1 - isolated[minimum].mean())
        if minimum.any() else None,
        "median_valley_dimension": float(np.median(flat_dims[minimum])) if minimum.any() else None,
        "distinct_loss_levels": n_levels,
        "loss_levels": [levels[i] for i in order],
        "basin_fractions_of_minima": [basin[i] for i in order],
        "distinct_isolated_minima_mod_symmetry": int(n_points),
        "distinct_loss_levels_approached_at_infinity_within_1e-3": n_far,
        "levels_at_infinity": [lv for lv, _ in far_levels],
        "basin_fractions_at_infinity": [b for _, b in far_levels],
        "global_level_fraction": float(basin[order[0]]) if n_levels else None,
        "_minimum_params": jax.tree.map(lambda a: a[minimum], polished),
        "_minimum_loss": final[minimum],
    }


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    numbers = {"lr": LR, "steps": size["steps"], "polish_iterations": size["polish"],
                     "tolerances": dict(grad=GRAD_TOL, eig=EIG_TOL, level=LEVEL_TOL,
                                        params=PARAM_TOL, at_infinity=FAR, growth=GROWTH)}
    for name, data in datasets().items():
        rows = [census(data, h, size["starts"], size["steps"], size["polish"])
                for h in range(1, size["widths"] + 1)]
        numbers[name] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    _figure(numbers, os.path.join(out, "census.png"))
    return experiment.save_summary(out, numbers)


def _figure(numbers, path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), constrained_layout=True)
    for col, name in enumerate(["xor", "random_labels"]):
        rows = numbers[name]
        hs = [r["h"] for r in rows]
        ax = axes[0, col]
        for r in rows:
            sizes = 10 + 400 * np.asarray(r["basin_fractions_of_minima"])
            sc = ax.scatter([r["h"]] * len(r["loss_levels"]), np.maximum(r["loss_levels"], 1e-16),
                            s=sizes, c=np.log10(np.maximum(r["loss_levels"], 1e-16)),
                            cmap="viridis", vmin=-16, vmax=0, edgecolor="k", linewidth=0.3)
            ax.scatter([r["h"] + 0.25] * len(r["levels_at_infinity"]),
                       np.maximum(r["levels_at_infinity"], 1e-16), marker="x", color="crimson",
                       s=12, label="approached at infinity" if r["h"] == 1 else None)
            ax.annotate(f'{r["distinct_loss_levels"]} | {len(r["levels_at_infinity"])}',
                        (r["h"], 2.0), ha="center", fontsize=7)
        ax.set(yscale="log", ylim=(1e-17, 5), xlabel="hidden units h",
               ylabel="loss at the end point (mean half squared error)",
               title=f"{name}: loss levels of the minima (loss 0 drawn at 1e-16)\n"
                     "dots: finite (area = share), x: at infinity; top: count of each")
        ax.legend(fontsize=7, loc="lower right")
        fig.colorbar(sc, ax=ax, label="log10 loss level")
        ax = axes[1, col]
        bottom = np.zeros(len(rows))
        parts = [("fraction_minimum", "minimum"), ("fraction_saddle", "saddle"),
                 ("fraction_at_infinity", "at infinity (|param| > 20 or norm grew > 10)"),
                 ("fraction_unfinished", "unfinished")]
        for key, label in parts:
            v = np.array([r[key] for r in rows])
            ax.bar(hs, v, bottom=bottom, label=label)
            bottom += v
        degenerate = [np.nan if r["fraction_of_minima_degenerate"] is None
                      else r["fraction_of_minima_degenerate"] for r in rows]
        ax.plot(hs, degenerate, "k*--", label="share of minima that are degenerate (valleys)")
        ax.set(xlabel="hidden units h", ylabel="fraction of starts", ylim=(0, 1.05),
               title=f"{name}: where the {rows[0]['starts']} starts end, per h")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Census of local minima of 2-h-1 tanh nets (GD in float32, then float64 "
                 "saddle-free Newton polish)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "minima_census")
