"""Homogeneity of bias-free ReLU nets, and the learning rate it allows (seed 004).

The seed's answer: ReLU(a z) = a ReLU(z) for a > 0, so multiplying every weight
of a depth-d bias-free ReLU net by c multiplies its output by c^d, and its
gradient with respect to each layer by c^(d-1). For the squared loss near init
the Hessian (~ J^T J) then scales as c^(2(d-1)), and since gradient descent is
stable for lr < 2 / sharpness, the largest stable learning rate for init scale
s should fall as s^(-2(d-1)): doubling a depth-3 net's init costs 16x in lr.

Checked four ways: the exact identities on random nets (c^d, c^(d-1)); the
sharpness at init (largest Hessian eigenvalue, by power iteration) against s,
whose slope in log-log should be 2(d-1); one sweep over (depth, a static axis,
init scale, learning rate, seed), from which the largest learning rate that does not blow up
is read off, its slope fitted over s >= 1; and the same sweep with the targets
set to 0. Without targets the loss is exactly homogeneous, L(s W) = s^(2d) L(W),
so gradient descent from s W at lr eta is gradient descent from W at lr
eta s^(2(d-1)), step for step: the stable lr then scales exactly as the theory
says. With targets y, L(s W; y) = s^(2d) L(W; y / s^d), so lr_max(s; y) =
s^(-2(d-1)) lr_max(1; y / s^d): the slope departs from -2(d-1) exactly as far as
lr_max depends on the targets' size relative to the output. Scales are 0.5 x
2^(k/2) and learning rates 1280 x 2^(-k/2) (both built from powers of two), so at
s = 1, 2, 4 the targetless runs are the same floating-point computation rescaled,
and a slope fitted on this lr grid is good to +-0.3 (``slope_resolution``).

What we measure (default size): the identities hold to float32 rounding (1e-6),
the sharpness at init follows s^(2(d-1)) (fitted slopes -2.000 to -14.0 for
d = 2..8). The largest stable lr over s >= 1 has slopes 0, -2.0, -6.3, -6.0, -7.9,
-10.0, -12.0, -13.7 for d = 1..8 (theory 0, -2, ..., -14; the earlier grid, 9
scales and lr steps of 1.58x, gave -5.0 at d = 3). Without targets the same
measurement gives 0, -2.0, -4.0, -6.0, -8.1, -10.2, -12.0, -14.0, exactly -4.0 at
d = 3 over s = 1, 2, 4: the theory holds where its premise does. The d = 3
outlier is the targets: with them lr_max stays near 30 up to s = 1.4 (40x the
targetless value there) and then falls onto the targetless curve, equal to it
from s = 2.8 on, so a straight-line fit over [1, 4] measures that transition
(and moves with the grid), not a power law; at the other depths lr_max is within
0.6-1x of the targetless value. lr_max sits 0.8 to ~100 times (d = 3) above
2 / sharpness at init: above the quadratic limit, GD can be catapulted to a flatter region instead
of diverging. Small inits of deep nets start near the saddle at the origin, leave
it before anything blows up, and their stable learning rate is set by the
curvature where they go, not where they start.

The seed's answer says to lower lr by 2^d when the weights double; homogeneity says
4^(d-1), the same only at d = 2. ``seed_rule`` reads the factor per doubling off the
measured lr_max: log2 of it grows by about 2 per unit depth (1.9 with targets, 2.0
without), not 1, and lowering by 2^d stays at or below lr_max(2 s) only at d = 1, 2.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import bpjax
from bpjax import diagnostics, initializers, losses, nets
from bpjax.compilation_cache import jit_once
from bpjax.experiments import script

SEED = "004"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does scaling a d-layer bias-free ReLU net's weights by c scale its output by c^d, "
            "and its largest stable learning rate by c^(-2(d-1)), with and without "
            "regression targets? (seed 004)")
SIZES = {"default": dict(depths=8, scales=7, lrs_per_octave=2, seeds=3, steps=200),
         "quick": dict(depths=3, scales=4, lrs_per_octave=1, seeds=2, steps=50)}
# Learning rates 1280 * 2^(-k / lrs_per_octave), down to ~1e-12: the top is far above any
# lr_max at s >= 1, so no lr_max there is clipped by the grid (that would bend the slope).
LR_TOP, LR_OCTAVES = 1280.0, 50
TARGETS = [1.0, 0.0]  # the regression targets times this: 0 is the exactly homogeneous control
WIDTH, N_IN, N = 16, 8, 64


def net_of(depth):
    return nets.mlp([N_IN] + [WIDTH] * (depth - 1) + [1], activation="relu", bias=False)


def homogeneity(depth: int, cs=(0.5, 2.0, 3.0), trials: int = 16):
    """Max relative error of out(cW) = c^d out(W) and |grad(cW)| = c^(d-1) |grad(W)|."""
    net = net_of(depth)

    def errors(key, x, c, c_out, c_grad):  # c^d and c^(d-1) computed in Python, as before
        p = net.init(key, w_init=initializers.he())
        scaled = jax.tree.map(lambda w: c * w, p)
        out = jax.vmap(net.apply, (None, 0))
        e_out = jnp.max(jnp.abs(out(scaled, x) - c_out * out(p, x))) / jnp.max(
            jnp.abs(c_out * out(p, x)))
        grad_norm = lambda q: jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(  # noqa: E731
            jax.grad(lambda r: jnp.sum(out(r, x)))(q))))
        e_grad = jnp.abs(grad_norm(scaled) / (c_grad * grad_norm(p)) - 1)
        return e_out, e_grad

    @jit_once  # one program for every c, draws included (eager, each compiles its own)
    def batched(seeds, c, c_out, c_grad):  # seeds traced, so XLA cannot fold the draws
        x = jax.random.normal(jax.random.key(seeds[0]), (N, N_IN))
        keys = jax.random.split(jax.random.key(seeds[1]), trials)
        return jax.vmap(errors, (0, None, None, None, None))(keys, x, c, c_out, c_grad)

    e = [batched(np.int32([1, 2]), *np.float32([c, c**depth, c ** (depth - 1)])) for c in cs]
    e = np.asarray(e)  # (c, 2, trials), on the host: a jax .max() compiles a program
    return float(e[:, 0].max()), float(e[:, 1].max())


def _sharpness_at(base, x, y, params_S) -> np.ndarray:
    """Per params (a leading axis): the largest (positive) Hessian eigenvalue among the
    top 3 by magnitude (near the origin a deep net sits at a saddle whose largest-magnitude
    one is negative). One program: eagerly, the power iteration's ops each compile their
    own. Its key's seed is an argument, so that XLA cannot fold the random start."""
    top = jit_once(jax.vmap(lambda p, seed: diagnostics.sharpness(
        lambda q: base(q, (x, y)), p, k=3, iters=60, key=jax.random.key(seed)).max(),
        (0, None)))
    return np.asarray(top(params_S, np.int32(0)))  # seed 0: sharpness's default key


def scale_grid(n: int) -> np.ndarray:
    """n init scales from 0.5 to 4, equal steps in log: powers of two among them (1, 2, 4)."""
    return 0.5 * 2.0 ** (np.arange(n) * 3 / (n - 1))


def lr_grid(per_octave: int) -> np.ndarray:
    """LR_TOP * 2^(-k / per_octave), ascending, each built as a power of two times one of
    per_octave mantissas, so that lr * 2^m is exactly another grid value."""
    k = np.arange(LR_OCTAVES * per_octave + 1)[::-1]
    return LR_TOP * 2.0 ** (-(k // per_octave)) * 2.0 ** (-(k % per_octave) / per_octave)


def largest_stable_lr(res, lrs) -> np.ndarray:
    """The largest grid lr below the first unstable one, per (scale, seed); unstable:
    blew up, or ended clearly above where it started (a margin, since at a tiny lr the
    loss can end one float32 ulp above its start)."""
    unstable = res.diverged | (res.final_loss > 1.1 * res.loss[..., 0])  # (scale, lr, seed)
    first_bad = np.where(unstable.any(axis=1), np.argmax(unstable, axis=1), len(lrs))
    return lrs[np.maximum(first_bad - 1, 0)]


def slope_resolution(scales, lrs) -> float:
    """The most a fitted log-log slope over ``scales`` can move when each lr_max is off by
    up to one grid cell (errors of one cell above the mean of log s, none below)."""
    u = np.log(scales) - np.log(scales).mean()
    return float(np.log(lrs[1] / lrs[0]) * u[u > 0].sum() / np.sum(u**2))


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, N_IN)).astype(np.float32)
    y = rng.normal(size=(N, 1)).astype(np.float32)
    scales = scale_grid(size["scales"])
    lrs = lr_grid(size["lrs_per_octave"])
    large = scales >= 1.0
    powers = np.isin(scales, [1.0, 2.0, 4.0])
    numbers = {"width": WIDTH, "steps": size["steps"], "scales": scales,
               "lr_grid_ratio": float(lrs[1] / lrs[0]),
               "slope_resolution_of_the_lr_grid": slope_resolution(scales[large], lrs),
               "per_depth": {}}
    curves = {}

    def loss(params, batch, config):
        base = losses.supervised(net_of(config["depth"]).apply, "half_mse")
        return base(params, (batch[0], config["target"] * batch[1]))

    def init(config, key):
        # He-normal directions times the swept scale s: weights ~ s * N(0, 2/fan_in).
        return net_of(config["depth"]).init(key, w_init=initializers.he(config["scale"]))

    grid = bpjax.Grid(depth=bpjax.static(range(1, size["depths"] + 1)), target=TARGETS,
                      scale=scales, lr=lrs, seed=np.arange(size["seeds"]))
    # XLA's faster-compiling emitters, though the grid's size would not choose them: at
    # default size 102 s instead of 115 in one process on a 2-core CPU (CPU 184 s, not
    # 208), the same numbers (bench/README.md, session 14)
    res = bpjax.sweep(loss, init, "sgd", grid, size["steps"], record_every=size["steps"],
                      data=(x, y), record_params=False, fast_compile=True)
    for depth in grid.axes["depth"].tolist():
        base = losses.supervised(net_of(depth).apply, "half_mse")
        # Geometric mean over seeds, per (target, scale).
        lr_max, control = (np.exp(np.mean(np.log(largest_stable_lr(
            res.sel(depth=depth, target=t), lrs)), axis=-1)) for t in TARGETS)
        start = bpjax.initial_params(lambda c, k, d=depth: init(c | {"depth": d}, k),
                                     bpjax.Grid(scale=scales, seed=[0]))
        sharp0 = _sharpness_at(base, x, y, jax.tree.map(lambda a: a[:, 0], start))
        e_out, e_grad = homogeneity(depth)
        curves[depth] = (lr_max, control, 2 / sharp0)
        fit = lambda v, m=large: float(np.polyfit(np.log(scales[m]), np.log(v[m]), 1)[0])  # noqa: E731
        numbers["per_depth"][str(depth)] = {
            "output_scaling_max_rel_error": e_out,
            "grad_norm_scaling_max_rel_error": e_grad,
            "predicted_slope": -2.0 * (depth - 1),
            "slope_of_2_over_sharpness_at_init": fit(2 / sharp0),
            "lr_max_slope_for_scales_at_least_1": fit(lr_max),
            "lr_max_slope_without_targets_for_scales_at_least_1": fit(control),
            "lr_max_slope_without_targets_at_s_1_2_4": fit(control, powers),
            "lr_max_per_scale": lr_max, "lr_max_without_targets_per_scale": control,
            "lr_max_at_the_grid_top_for_scales_at_least_1": int(
                np.sum(lr_max[large] == lrs[-1]) + np.sum(control[large] == lrs[-1])),
            "lr_max_over_targetless_max_for_scales_at_least_1":
                float(np.max(lr_max[large] / control[large])),
            "lr_max_over_targetless_min_for_scales_at_least_1":
                float(np.min(lr_max[large] / control[large])),
            "scale_from_which_lr_max_equals_the_targetless_one": _rejoins(scales, lr_max, control),
            "lr_max_over_2_div_sharpness_for_scales_at_least_1":
                float(np.exp(np.mean(np.log(lr_max[large] * sharp0[large] / 2)))),
        }
    numbers["seed_2_to_the_d_rule"] = seed_rule(numbers)
    numbers = {**finding(numbers), **numbers}
    _figure(scales, curves, os.path.join(out, "stable_lr.png"), numbers)
    return script.save_summary(out, numbers)


def seed_rule(numbers) -> dict:
    """The answer's rule, "doubling the weights of a depth-d net, lower lr by 2^d", against the
    measured lr_max: per depth, the lr factor per doubling of the scale (2^-slope over
    s >= 1, and lr_max(s) / lr_max(2 s) for each s >= 1 with 2 s on the grid), and the
    growth of log2 of that factor per unit depth (the rule: 1; homogeneity: 2)."""
    scales = np.asarray(numbers["scales"])
    pairs = [(i, j) for i, s in enumerate(scales) for j, t in enumerate(scales)
             if s >= 1.0 and np.isclose(t, 2 * s)]
    per_depth, depths = {}, []
    for d, row in numbers["per_depth"].items():
        lr_max = np.asarray(row["lr_max_per_scale"])
        factors = [float(lr_max[i] / lr_max[j]) for i, j in pairs]
        depths.append(int(d))
        per_depth[d] = {
            "rule_factor": 2.0 ** int(d),
            "homogeneity_factor": 4.0 ** (int(d) - 1),
            "factor_per_doubling_from_slope": 2.0 ** -row["lr_max_slope_for_scales_at_least_1"],
            "factor_per_doubling_from_slope_without_targets":
                2.0 ** -row["lr_max_slope_without_targets_for_scales_at_least_1"],
            "factor_per_doubling_measured": factors,
            # Lowering lr_max(s) by 2^d keeps 2 s stable iff the measured factor is <= 2^d.
            "doublings_stable_after_lowering_by_2_to_the_d": int(sum(
                f <= 2.0 ** int(d) * (1 + 1e-9) for f in factors)),
        }
    log2 = lambda key: np.log2([per_depth[str(d)][key] for d in depths])  # noqa: E731
    return {
        "scale_doublings_per_depth": len(pairs), "per_depth": per_depth,
        "log2_factor_per_unit_depth": float(np.polyfit(
            depths, log2("factor_per_doubling_from_slope"), 1)[0]),
        "log2_factor_per_unit_depth_without_targets": float(np.polyfit(
            depths, log2("factor_per_doubling_from_slope_without_targets"), 1)[0]),
        "rule_log2_factor_per_unit_depth": 1.0,
        "depths_where_lowering_by_2_to_the_d_kept_every_doubling_stable": [
            d for d in depths if per_depth[str(d)]["doublings_stable_after_lowering_by_2_to_the_d"]
            == len(pairs)],
    }


def _rejoins(scales, lr_max, control):
    """The smallest scale from which on lr_max equals the targetless lr_max (within 1%)."""
    same = np.abs(lr_max / control - 1) < 0.01
    tail = np.flatnonzero(~same)
    first = 0 if not len(tail) else tail[-1] + 1
    return float(scales[first]) if first < len(scales) else None


def finding(numbers) -> dict:
    """The seed's two rules against the measured slopes: refuted if the c^d, c^(d-1)
    identities fail (beyond 1e-4); reproduced if every lr_max slope is within the lr grid's
    resolution of -2(d-1); partly if only the targetless (homogeneous) control's are."""
    rows = numbers["per_depth"]
    res = numbers["slope_resolution_of_the_lr_grid"]
    close = lambda key: all(abs(r[key] - r["predicted_slope"]) <= res  # noqa: E731
                            for r in rows.values())
    fmt = lambda key: ", ".join(f"{round(r[key], 1) + 0.0:.1f}" for r in rows.values())  # noqa: E731
    err = max(max(r["output_scaling_max_rel_error"], r["grad_norm_scaling_max_rel_error"])
              for r in rows.values())
    theory = ", ".join(str(int(r["predicted_slope"])) for r in rows.values())
    worst = max(rows, key=lambda d: abs(rows[d]["lr_max_slope_for_scales_at_least_1"]
                                        - rows[d]["predicted_slope"]))
    w = rows[worst]
    rejoin = w["scale_from_which_lr_max_equals_the_targetless_one"]
    rule = numbers["seed_2_to_the_d_rule"]
    factors = ", ".join(f"{r['factor_per_doubling_from_slope']:.3g}"
                        for r in rule["per_depth"].values())
    safe = rule["depths_where_lowering_by_2_to_the_d_kept_every_doubling_stable"]
    unstable = sum(rule["scale_doublings_per_depth"]
                   - r["doublings_stable_after_lowering_by_2_to_the_d"]
                   for r in rule["per_depth"].values())
    rule_text = (
        " The answer's rule (doubling the weights, lower lr by 2^d) is homogeneity's 4^(d-1) "
        f"only at d = 2: the measured lr factor per doubling of s (2^-slope) is {factors} for "
        f"d = 1..{len(rows)}, against 2^d = "
        + ", ".join(f"{r['rule_factor']:g}" for r in rule["per_depth"].values())
        + f"; log2 of it grows by {rule['log2_factor_per_unit_depth']:.2f} per unit depth "
        f"({rule['log2_factor_per_unit_depth_without_targets']:.2f} without targets), not "
        f"{rule['rule_log2_factor_per_unit_depth']:g}. Lowering lr_max(s) by 2^d keeps every "
        f"doubling from s >= 1 at or below the measured lr_max(2 s) only at d = "
        f"{', '.join(map(str, safe)) or 'none'}; in {unstable} of the "
        f"{rule['scale_doublings_per_depth'] * len(rows)} doublings it stays above it.")
    verdict = ("refuted" if err > 1e-4 else "reproduced"
               if close("lr_max_slope_for_scales_at_least_1") else "partly"
               if close("lr_max_slope_without_targets_for_scales_at_least_1") else "refuted")
    control = "lr_max_slope_without_targets_for_scales_at_least_1"
    text = (f"the c^d and c^(d-1) identities hold to {err:.0e} and the sharpness at init "
            "follows s^(2(d-1)) (slopes of 2 / sharpness "
            f"{fmt('slope_of_2_over_sharpness_at_init')} for d = 1..{len(rows)}). The largest "
            f"stable lr has slopes {fmt('lr_max_slope_for_scales_at_least_1')} over s >= 1 "
            f"(theory {theory}; a slope fitted on this lr grid is good to +-{res:.2f}). "
            "Without targets (y = 0) the loss is homogeneous, GD from s W at lr eta is exactly "
            "GD from W at lr eta s^(2(d-1)), and the same measurement gives "
            f"{fmt(control)}" + (": the theory" if close(control) else ", off the theory too"))
    if close("lr_max_slope_for_scales_at_least_1"):
        return script.stated(verdict, text + "; with targets the slopes hold as well."
                             + rule_text)
    return script.stated(verdict, text + (
        ". The targets break it (lr_max(s; y) = s^(-2(d-1)) lr_max(1; y / s^d)): where they "
        f"matter, lr_max leaves the targetless curve (d = {worst}: "
        f"{w['lr_max_over_targetless_min_for_scales_at_least_1']:.2g} to "
        f"{w['lr_max_over_targetless_max_for_scales_at_least_1']:.2g}x it at s >= 1"
        + (f", equal to it from s = {rejoin:.2g} on" if rejoin else "")
        + f"), so its slope of {w['lr_max_slope_for_scales_at_least_1']:.1f} there "
        "measures that transition, not a power law." + rule_text))


def _figure(scales, curves, path, numbers):
    fig, ax = script.subplots(figsize=(8, 6), constrained_layout=True)
    colors = matplotlib.colormaps["plasma"](np.linspace(0, 0.9, len(curves)))
    for (depth, (lr_max, control, pred)), color in zip(curves.items(), colors):
        row = numbers["per_depth"][str(depth)]
        ax.plot(scales, lr_max, "o-", color=color, label=f"d={depth}: slope "
                f"{row['lr_max_slope_for_scales_at_least_1']:.2f}, targets 0: "
                f"{row['lr_max_slope_without_targets_for_scales_at_least_1']:.2f} "
                f"(theory {-2 * (depth - 1)})")
        ax.plot(scales, control, "s--", color=color, ms=3, lw=0.8)
        ax.plot(scales, pred, ":", color=color)
    ax.set(xscale="log", yscale="log", xlabel="init scale s (weights s x He-normal)",
           ylabel="largest stable learning rate",
           title="Largest stable lr against init scale, per depth (slopes over s >= 1)\n"
                 "solid: targets y; dashed: targets 0; dotted: 2 / sharpness at init")
    ax.legend(fontsize=7, loc="lower left")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "relu_scaling")
