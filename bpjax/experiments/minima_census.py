"""A census of local minima in small tanh nets (seed 001, Sontag's closing question).

Sontag asks how many local minima realistic nets have. We count them in 2-h-1
nets (tanh hidden units, linear output, biases, mean half squared error) for
h = 1..8 on XOR (4 points, targets +-1) and on a fixed set of 12 random points
with random +-1 labels. For each h, one sweep trains many random starts
(weights and biases ~ N(0, 1)) by gradient descent in float32; each end point is
then polished in float64 by damped saddle-free Newton (``bpjax.critical``) and
classified by its gradient and full Hessian:

- minimum: |grad| < 1e-9, no Hessian eigenvalue below -1e-7 * max(1, top), and it
  survives the ray test below; isolated when every eigenvalue exceeds that
  tolerance, degenerate (a valley of minima, its dimension the number of near-zero
  eigenvalues) otherwise;
- saddle: |grad| < 1e-9 with a clearly negative eigenvalue;
- at infinity, escaping: some parameter beyond 20 in magnitude, or the polish grew
  the parameter norm by more than 10 (Newton runs off along a direction in which
  the loss keeps falling towards a limit it only reaches at infinity: Sontag's
  minima "at infinity");
- at infinity, saturated: it passes the gradient and Hessian tests, but the
  scale-and-refit ray goes down. Nearly saturated tanh units make the gradient
  tiny and the Hessian look positive, yet the point is no minimum: multiply the
  hidden weights and biases by s in (1.001, 1.01, 1.1, 2, 10), refit the output
  layer by least squares (float64), and the loss falls, never rising, to a limit
  reached only at s = infinity (``ray_test``). Minima at infinity are reported by
  that limit loss;
- unfinished: none of these after the polish.

Distinct minima are counted two ways: by loss level (losses within 1e-7 are one
level) and, for isolated minima, by parameters modulo the net's symmetries
(permuting hidden units, flipping the sign of a unit's in- and out-weights;
``critical.canonical_one_hidden``), within 1e-4.

What we find (default size, 256 starts per h; exact counts in summary.json):
finite local minima above the global one are rarer than the gradient and Hessian
alone suggest. XOR: at h = 1 (which cannot fit XOR) the only finite minimum is the
flat valley at loss 1/2 where the hidden weights vanish (5% of starts); 95% run
off to infinity towards loss 1/3. At h = 2 the gradient and Hessian alone report a
second finite level, 1/4 (5 of the 234 starts, 91.4%, that look like minima; the
earlier census said 3% of minima); every one of those 5 points is a minimum at
infinity: along the ray the loss falls without rising (by 2e-14 to 3e-13 already
at s = 1.001) to its limit 1/4, within 1e-12 by s = 2. So the finite minima at
h = 2 are all global (loss 0, 89.5% of starts; 2% at infinity with limit 1/4);
from h = 3 on every start reaches loss 0. At the quick size the same test also
moves the stationary-looking loss-1/3 points of h = 1 to infinity, leaving loss
1/2 as the one finite level there.

Random labels: one isolated minimum at h = 1 (loss 0.416, 21% of starts); at
h = 2 and 3 no start ends at a finite minimum at all: every one runs
off to infinity, towards 14 and 36 distinct limits (clustered within 1e-3; those
runs are still moving, so these counts are upper bounds); from h = 4 (17
parameters > 12 points) loss 0 is reached, by 9% of starts at h = 4 and 83% at
h = 8, the rest escaping. Every minimum found once parameters outnumber points is
degenerate (a valley whose dimension grows with h: 5 to 29 flat directions), so
counting minima by parameters has no finite answer there; the only isolated
minimum found is the h = 1 one. Sontag's minima at infinity, not finite local
minima, are what stops gradient descent short in these nets.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib.ticker
import numpy as np

import bpjax
from bpjax import critical, losses, nets
from bpjax.compilation_cache import jit_fast
from bpjax.experiments import script

SEED = "001"  # the seed document it answers (../shared/seeds/)
QUESTION = ("How many distinct local minima, finite or at infinity, do small 2-h-1 tanh nets "
            "have on XOR and on random labels, and how does the count grow with h? (seed 001)")
SIZES = {"default": dict(widths=8, starts=256, steps=3000, polish=100),
         "quick": dict(widths=3, starts=48, steps=1500, polish=60)}
LR = 0.2
GRAD_TOL, EIG_TOL, LEVEL_TOL, PARAM_TOL, FAR, GROWTH = 1e-9, 1e-7, 1e-7, 1e-4, 20.0, 10.0
RAY_SCALES = (1.001, 1.01, 1.1, 2.0, 10.0)
RAY_TOL = 1e-13  # relative: float64 least squares on these sizes rounds at ~1e-16
# A hidden unit whose feature varies by less than 1e-10 over the data (w ~ 1e-14 at the
# loss-1/2 point) is a constant: fitting its rounding noise is not a lower loss.
RCOND = 1e-10


def ray_losses(w, b, x, y, scales=RAY_SCALES) -> np.ndarray:
    """The scale-and-refit ray of 2-h-1 tanh nets, in float64 NumPy.

    For each hidden layer (w: (..., n_in, h), b: (..., h)) and each s in (1, *scales,
    inf), the hidden pre-activations are multiplied by s and the linear output layer
    is refitted by least squares; returns the mean half squared errors, shape
    (..., len(scales) + 2). At s = inf tanh is replaced by its limit, sign.
    """
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    pre = np.einsum("ni,...ih->...nh", x, w) + b[..., None, :]  # (..., n, h)
    out = []
    for s in (1.0, *scales, np.inf):
        phi = np.sign(pre) if np.isinf(s) else np.tanh(s * pre)
        design = np.concatenate([phi, np.ones(phi.shape[:-1] + (1,))], axis=-1)
        residual = design @ (np.linalg.pinv(design, rcond=RCOND) @ y) - y
        out.append(0.5 * np.mean(np.sum(residual**2, axis=-1), axis=-1))
    return np.stack(out, axis=-1)


def ray_test(ray: np.ndarray, tol: float = RAY_TOL) -> dict:
    """Reads a ray (from ``ray_losses``): a candidate is at infinity when the refitted
    loss never rises along the scales and ends strictly lower (beyond rounding): it
    keeps falling towards a limit that is only reached at infinity. That limit is the
    lowest loss on the ray (s = 10 or s = inf). A ray that rises first and only later
    dips below the start belongs to a finite minimum with a lower point behind a
    barrier (counted, not reclassified); one that falls first and then rises is no
    minimum, but has no limit on the ray either.
    """
    finite = ray[..., :-1]
    margin = tol * np.maximum(finite[..., :1], 1e-6)
    change = finite[..., 1:] - finite[..., :1]
    lower = np.any(change < -margin, axis=-1)
    monotone = np.all(np.diff(finite, axis=-1) <= margin, axis=-1)
    first = np.argmax(np.abs(change) > margin, axis=-1)  # the first clear move
    rises_first = np.take_along_axis(change, first[..., None], -1)[..., 0] > 0
    return {"at_infinity": lower & monotone,
            "descends_then_rises": lower & ~monotone & ~rises_first,
            "lower_behind_a_barrier": lower & ~monotone & rises_first,
            "limit": np.minimum(ray[..., -1], ray[..., -2])}


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
        def polish(p):  # and the polished point's loss, in the same program
            q, grad, eig = critical.polish(lambda r: loss(r, x64), p, iters=polish_iters)
            return q, grad, eig, loss(q, x64)

        polished, grad, eig, final = jit_fast(jax.vmap(polish))(jax.tree.map(jnp.asarray, end))
    final = np.asarray(final)
    polished = jax.tree.map(np.asarray, polished)
    grad, eig = np.asarray(grad), np.asarray(eig)
    n_params = eig.shape[-1]
    scale = np.maximum(1.0, np.abs(eig).max(axis=-1))
    flat = lambda p: np.concatenate([a.reshape(starts, -1) for a in jax.tree.leaves(p)], 1)  # noqa: E731
    grew = np.linalg.norm(flat(polished), axis=1) - np.linalg.norm(flat(end), axis=1)
    escaping = (np.max(np.abs(flat(polished)), axis=1) > FAR) | (grew > GROWTH)
    stationary = (grad < GRAD_TOL) & ~escaping
    looks_minimum = stationary & (eig[:, 0] > -EIG_TOL * scale)
    ray_values = ray_losses(polished["layers"][0]["w"], polished["layers"][0]["b"], *data)
    ray = ray_test(ray_values)
    # Saturated tanh units look stationary with a positive Hessian (both are tiny), but
    # the ray shows the loss still falling towards a limit at infinity.
    saturated = looks_minimum & ray["at_infinity"]
    minimum = looks_minimum & ~ray["at_infinity"] & ~ray["descends_then_rises"]
    saddle = stationary & ~looks_minimum
    far = escaping | saturated
    # Minima at infinity are reported by their limit loss: the ray's where it descends
    # to one, else (runs still escaping in another direction) the end point's loss.
    limit = np.where(ray["at_infinity"], np.minimum(ray["limit"], final), final)
    flat_dims = np.sum(np.abs(eig) <= EIG_TOL * scale[:, None], axis=1)
    isolated = minimum & (flat_dims == 0)
    n_far, far_of = (critical.count_distinct(limit[far][:, None], 1e-3) if far.any()
                     else (0, np.zeros(0, int)))
    far_levels = sorted((float(limit[far][far_of == i].mean()), float(np.mean(far_of == i)))
                        for i in range(n_far))
    sat_levels = (sorted({round(float(v), 12) for v in limit[saturated]})
                  if saturated.any() else [])
    n_levels, level_of = (critical.count_distinct(final[minimum][:, None], LEVEL_TOL)
                          if minimum.any() else (0, np.zeros(0, int)))
    levels = [float(final[minimum][level_of == i].mean()) for i in range(n_levels)]
    basin = [float(np.mean(level_of == i)) for i in range(n_levels)]
    order = np.argsort(levels)
    canon = critical.canonical_one_hidden(jax.tree.map(lambda a: a[isolated], polished))
    n_points = critical.count_distinct(canon, PARAM_TOL)[0] if isolated.any() else 0
    return {
        "h": h, "parameters": n_params, "starts": starts,
        "fraction_minimum_by_gradient_and_hessian_alone": float(looks_minimum.mean()),
        "fraction_minimum": float(minimum.mean()), "fraction_saddle": float(saddle.mean()),
        "fraction_at_infinity": float(far.mean()),
        "fraction_at_infinity_escaping": float(escaping.mean()),
        "fraction_at_infinity_saturated_stationary_looking": float(saturated.mean()),
        "limit_losses_of_the_saturated_ones": sat_levels,
        "ray_drop_at_s_1.001_of_the_saturated_ones": [
            float(d) for d in np.sort(ray_values[saturated, 0] - ray_values[saturated, 1])],
        "fraction_unfinished": float(1 - minimum.mean() - saddle.mean() - far.mean()),
        "minima_with_a_lower_ray_point_behind_a_barrier": int(
            np.sum(minimum & ray["lower_behind_a_barrier"])),
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
        "_saturated_params": jax.tree.map(lambda a: a[saturated], polished),
        "_saturated_limit": limit[saturated],
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
    numbers = {**finding(numbers), **numbers}
    _figure(numbers, os.path.join(out, "census.png"))
    return script.save_summary(out, numbers)


def non_global_minima(row) -> list[tuple[float, float]]:
    """(loss level, share of starts) of the finite minima above the lowest loss this h
    reaches anywhere, finite or at infinity."""
    best = min(row["loss_levels"] + row["levels_at_infinity"])
    return [(lv, row["fraction_minimum"] * b)
            for lv, b in zip(row["loss_levels"], row["basin_fractions_of_minima"])
            if lv > best + LEVEL_TOL]


def finding(numbers) -> dict:
    """The verdict and finding, filled from the measured census. Sontag shows a nontrivial
    local-minima structure (minima at infinity among them) and asks how many minima larger
    nets have: reproduced if finite minima above the lowest loss appear at more than one
    width, partly if only at one (or only at infinity), refuted if neither."""
    pct = lambda f: f"{100 * f:.0f}%" if f >= 0.005 else f"{100 * f:.1g}%"  # noqa: E731
    parts = []
    for name, label in (("xor", "XOR"), ("random_labels", "random labels")):
        rows = numbers[name]
        finite = [f"loss {lv:.3g} at h = {r['h']} ({pct(f)} of starts)"
                  for r in rows for lv, f in non_global_minima(r)]
        moved = [f"h = {r['h']}: {pct(r['fraction_at_infinity_saturated_stationary_looking'])}"
                 f" of starts, limit "
                 + ", ".join(f"{v:.4g}" for v in r["limit_losses_of_the_saturated_ones"])
                 for r in rows if r["limit_losses_of_the_saturated_ones"]]
        escaped = [str(r["h"]) for r in rows if r["fraction_at_infinity"] == 1.0]
        text = (f"{label}: finite minima above the lowest loss reached: "
                f"{'; '.join(finite) if finite else 'none'}")
        if moved:
            text += ("; stationary-looking points (|grad| < 1e-9, Hessian >= 0) that the "
                     "scale-and-refit ray shows to be minima at infinity: " + "; ".join(moved))
        if escaped:
            text += f"; every start ends at infinity at h = {', '.join(escaped)}"
        parts.append(text)
    widths = {r["h"] for name in ("xor", "random_labels") for r in numbers[name]
              if non_global_minima(r)}
    at_infinity = any(r["fraction_at_infinity"] > 0 for name in ("xor", "random_labels")
                      for r in numbers[name])
    verdict = ("reproduced" if len(widths) > 1 else "partly" if widths or at_infinity
               else "refuted")
    return script.stated(verdict, (
        "Sontag's minima at infinity, not finite local minima, stop gradient descent short in "
        "these nets. " + ". ".join(parts) + "."))


def _figure(numbers, path):
    fig, axes = script.subplots(2, 2, figsize=(12, 8.5), constrained_layout=True)
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
        ax.legend(fontsize=7, loc="center left")  # mid-height is empty: no level there
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        fig.colorbar(sc, ax=ax, label="log10 loss level")
        ax = axes[1, col]
        bottom = np.zeros(len(rows))
        parts = [("fraction_minimum", "finite minimum (survives the ray test)"),
                 ("fraction_saddle", "saddle"),
                 ("fraction_at_infinity_escaping", "at infinity: escaping\n(|param| > 20 or "
                  "norm grew > 10)"),
                 ("fraction_at_infinity_saturated_stationary_looking", "at infinity: looks\n"
                  "stationary, the ray descends"),
                 ("fraction_unfinished", "unfinished")]
        for key, label in parts:
            v = np.array([r[key] for r in rows])
            ax.bar(hs, v, bottom=bottom, label=label)
            bottom += v
        degenerate = [np.nan if r["fraction_of_minima_degenerate"] is None
                      else r["fraction_of_minima_degenerate"] for r in rows]
        ax.plot(hs, degenerate, "k*--", label="share of minima that are\ndegenerate (valleys)")
        ax.set(xlabel="hidden units h", ylabel="fraction of starts",
               title=f"{name}: where the {rows[0]['starts']} starts end, per h")
        ax.set(ylim=(0, 1.42), yticks=np.linspace(0, 1, 6))  # the legend sits above 1
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle("Census of local minima of 2-h-1 tanh nets (GD in float32, then float64 "
                 "saddle-free Newton polish)")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "minima_census")
