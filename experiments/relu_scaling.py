"""Homogeneity of bias-free ReLU nets, and the learning rate it allows (seed 004).

The seed's answer: ReLU(a z) = a ReLU(z) for a > 0, so multiplying every weight
of a depth-d bias-free ReLU net by c multiplies its output by c^d, and its
gradient with respect to each layer by c^(d-1). For the squared loss near init
the Hessian (~ J^T J) then scales as c^(2(d-1)), and since gradient descent is
stable for lr < 2 / sharpness, the largest stable learning rate for init scale
s should fall as s^(-2(d-1)): doubling a depth-3 net's init costs 16x in lr.

Checked three ways: the exact identities on random nets (c^d, c^(d-1)); the
sharpness at init (largest Hessian eigenvalue, by power iteration) against s,
whose slope in log-log should be 2(d-1); and one sweep per depth over (init
scale, learning rate, seed), from which the largest learning rate that does not
blow up is read off, its slope fitted over the larger half of the scales.

What we measure (default size): the identities hold to float32 rounding (1e-6),
the sharpness at init follows s^(2(d-1)) (fitted slopes -2.000 to -14.01 for
d = 2..8), and the largest stable learning rate over s >= 1 has slopes 0, -1.9,
-5.0, -6.1, -7.3, -10.2, -12.0, -13.8 for d = 1..8 (theory 0, -2, ..., -14).
It sits 1 to ~50 times above 2 / sharpness-at-init: above the quadratic limit,
GD can be catapulted to a flatter region instead of diverging. Small inits of
deep nets start near the saddle at the origin, leave it before anything blows
up, and their stable learning rate is set by the curvature where they go, not
where they start.
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import diagnostics, experiment, losses, nets  # noqa: E402

QUESTION = ("Does scaling a d-layer bias-free ReLU net's weights by c scale its output by c^d, "
            "and its largest stable learning rate by c^(-2(d-1))? (seed 004)")
SIZES = {"default": dict(depths=8, scales=9, lrs=66, seeds=3, steps=200),
         "quick": dict(depths=3, scales=5, lrs=34, seeds=2, steps=50)}
WIDTH, N_IN, N = 16, 8, 64


def net_of(depth):
    return nets.mlp([N_IN] + [WIDTH] * (depth - 1) + [1], activation="relu", bias=False)


def homogeneity(depth: int, cs=(0.5, 2.0, 3.0), trials: int = 16):
    """Max relative error of out(cW) = c^d out(W) and |grad(cW)| = c^(d-1) |grad(W)|."""
    net = net_of(depth)
    x = jax.random.normal(jax.random.key(1), (N, N_IN))
    keys = jax.random.split(jax.random.key(2), trials)

    def errors(key, c):
        p = net.init(key, w_init=bpjax.init.he())
        scaled = jax.tree.map(lambda w: c * w, p)
        out = jax.vmap(net.apply, (None, 0))
        e_out = jnp.max(jnp.abs(out(scaled, x) - c**depth * out(p, x))) / jnp.max(
            jnp.abs(c**depth * out(p, x)))
        grad_norm = lambda q: jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(  # noqa: E731
            jax.grad(lambda r: jnp.sum(out(r, x)))(q))))
        e_grad = jnp.abs(grad_norm(scaled) / (c ** (depth - 1) * grad_norm(p)) - 1)
        return e_out, e_grad

    e = [jax.vmap(errors, (0, None))(keys, c) for c in cs]
    return max(float(a.max()) for a, _ in e), max(float(b.max()) for _, b in e)


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, N_IN)).astype(np.float32)
    y = rng.normal(size=(N, 1)).astype(np.float32)
    scales = np.geomspace(0.5, 4.0, size["scales"])
    lrs = np.geomspace(1e-12, 10, size["lrs"])
    large = scales >= 1.0
    numbers = {"width": WIDTH, "steps": size["steps"], "per_depth": {}}
    curves = {}
    for depth in range(1, size["depths"] + 1):
        net = net_of(depth)
        loss = losses.supervised(net.apply, "half_mse")

        def init(config, key, net=net):
            # He-normal directions times the swept scale s: weights ~ s * N(0, 2/fan_in).
            return net.init(key, w_init=bpjax.init.he(config["scale"]))

        grid = bpjax.Grid(scale=scales, lr=lrs, seed=np.arange(size["seeds"]))
        res = bpjax.sweep(loss, init, "sgd", grid, size["steps"], record_every=size["steps"],
                          data=(x, y), record_params=False)
        # Unstable: blew up, or ended clearly above where it started (a margin, since at a
        # tiny lr the loss can end one float32 ulp above its start).
        unstable = res.diverged | (res.final_loss > 1.1 * res.loss[..., 0])
        # The largest lr of the grid below the first unstable one, per (scale, seed).
        first_bad = np.where(unstable.any(axis=1), np.argmax(unstable, axis=1), len(lrs))
        stable_lr = lrs[np.maximum(first_bad - 1, 0)]
        lr_max = np.exp(np.mean(np.log(stable_lr), axis=-1))  # geometric mean over seeds
        start = bpjax.initial_params(init, bpjax.Grid(scale=scales, seed=[0]))
        # The largest (positive) eigenvalue among the top 3 by magnitude: near the
        # origin a deep net sits at a saddle whose largest-magnitude one is negative.
        sharp0 = np.asarray(jax.vmap(lambda p, loss=loss: diagnostics.sharpness(
            lambda q: loss(q, (x, y)), p, k=3, iters=60).max())(
            jax.tree.map(lambda a: a[:, 0], start)))
        e_out, e_grad = homogeneity(depth)
        curves[depth] = (lr_max, 2 / sharp0)
        fit = lambda v: float(np.polyfit(np.log(scales[large]), np.log(v[large]), 1)[0])  # noqa: E731
        numbers["per_depth"][str(depth)] = {
            "output_scaling_max_rel_error": e_out,
            "grad_norm_scaling_max_rel_error": e_grad,
            "predicted_slope": -2.0 * (depth - 1),
            "slope_of_2_over_sharpness_at_init": fit(2 / sharp0),
            "lr_max_slope_for_scales_at_least_1": fit(lr_max),
            "lr_max_over_2_div_sharpness_for_scales_at_least_1":
                float(np.exp(np.mean(np.log(lr_max[large] * sharp0[large] / 2)))),
        }
    _figure(scales, curves, os.path.join(out, "stable_lr.png"), numbers)
    return experiment.save_summary(out, numbers)


def _figure(scales, curves, path, numbers):
    fig, ax = plt.subplots(figsize=(7.5, 5.5), constrained_layout=True)
    colors = plt.cm.plasma(np.linspace(0, 0.9, len(curves)))
    for (depth, (lr_max, pred)), color in zip(curves.items(), colors):
        slope = numbers["per_depth"][str(depth)]["lr_max_slope_for_scales_at_least_1"]
        ax.plot(scales, lr_max, "o-", color=color, label=f"d={depth}: slope {slope:.2f} "
                f"for s >= 1 (theory {-2 * (depth - 1)})")
        ax.plot(scales, pred, ":", color=color)
    ax.set(xscale="log", yscale="log", xlabel="init scale s (weights s x He-normal)",
           ylabel="largest stable learning rate",
           title="Largest stable lr against init scale, per depth\n"
                 "(dotted: 2 / sharpness at init, the quadratic prediction)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "relu_scaling")
