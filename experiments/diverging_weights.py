"""Weights that never stop growing: Sontag's figure 5 and his lemma (seed 001, section 3).

Figure 5: a 2-2-1 sigmoid net trained by backprop (full-batch GD) on XOR with
targets 0 and 1, which a sigmoid reaches only at infinite weights. If weights grow
like a + b log t, then t [w(t+1) - w(t)] ~ t dw/dt = dw/d(log t) tends to the
constant b. We read dw/d(log t) over successive windows of log t, for every
weight and several seeds, over 2 x 10^5 steps (float64: in float32 a step of b/t
falls below the rounding of w).

The lemma: if the rows of A (the inputs times their +-1 labels) lie in an open
half space, the gradient system for E(x) = ||e - tanh(A x)||^2 has no bounded
solution. Over many random data sets at once, gradient descent from 0, weight
norm against log t, for three families of 6 rows in R^3:
  separable: labels from a random hyperplane (the lemma's case);
  paired: 3 random orthonormal rows and each one negated and rescaled by c in
    [0.5, 2], so every direction has a row against it, and each pair is Sontag's
    case 3 with |a| = c <= 2, which has a single, finite minimum;
  one-conflict: a separable set whose last two rows are one input with both
    labels. Not separable, yet not bounded either in general: in the plane
    orthogonal to that input the other rows may still lie in a half space, and
    E's limit along such a direction (4) is below its value at 0 (6). The lemma
    has no converse; the fraction of these sets that diverge is measured.
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import experiment, losses, nets, problems  # noqa: E402

QUESTION = ("Do backprop's weights on XOR grow like log t (Sontag's figure 5), and does every "
            "linearly separable data set make the weights diverge (his lemma)? (seed 001)")
SIZES = {"default": dict(steps=200_000, record_every=1000, seeds=6, sets=256),
         "quick": dict(steps=20_000, record_every=500, seeds=2, sets=32)}
NET = nets.mlp([2, 2, 1], activation="sigmoid", output_activation="sigmoid")
XOR_LR = 2.0
N_POINTS, DIM, LEMMA_LR = 6, 3, 0.01


def xor_init(config, key):
    return jax.tree.map(lambda w: w.astype(jnp.float64),
                        NET.init(key, w_init=bpjax.init.uniform(1.0)))


FAMILIES = ["separable", "paired", "one-conflict"]


def data_sets(n_sets: int, seed: int = 0):
    """Rows y_i u_i of each family (see the docstring); returns rows and family index."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_sets, N_POINTS, DIM))
    # Unit rows bound the curvature (<= 8 c^2 <= 32), so lr 0.01 is stable at every minimum.
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    normal = rng.normal(size=(n_sets, DIM))
    separable = u * np.sign(np.einsum("snd,sd->sn", u, normal))[..., None]
    # Orthonormal base rows: near-coplanar ones make |x| = |A^-1 z| huge and slow to settle.
    half = np.linalg.qr(rng.normal(size=(n_sets, DIM, DIM)))[0].transpose(0, 2, 1)
    scale = rng.uniform(0.5, 2.0, size=(n_sets, N_POINTS // 2, 1))
    paired = np.concatenate([half, -scale * half], axis=1)
    extra = rng.normal(size=(n_sets, 1, DIM))
    extra /= np.linalg.norm(extra, axis=-1, keepdims=True)
    conflict = np.concatenate([separable[:, :-2], extra, -extra], axis=1)
    return (np.concatenate([separable, paired, conflict]),
            np.repeat(np.arange(len(FAMILIES)), n_sets))


def log_slopes(t, w, windows: int = 6):
    """dw/d(log t) over `windows` equal windows in log t (trailing axis is time)."""
    edges = np.unique(np.geomspace(t[1], t[-1], windows + 1).astype(int))
    idx = np.searchsorted(t, edges)
    return np.stack([(w[..., b] - w[..., a]) / np.log(t[b] / t[a])
                     for a, b in zip(idx[:-1], idx[1:])], axis=-1), t[idx[1:]]


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    x, y = problems.xor()
    sets, family = data_sets(size["sets"])
    with jax.enable_x64(True):
        loss = losses.supervised(NET.apply, "mse")
        xor = bpjax.sweep(loss, xor_init, "sgd",
                          bpjax.Grid(lr=[XOR_LR], seed=np.arange(size["seeds"])), size["steps"],
                          record_every=size["record_every"],
                          data=(x.astype(np.float64), y.astype(np.float64))).sel(lr=XOR_LR)
        rows = jnp.asarray(sets)

        def lemma_loss(params, config):
            a = rows[config["set"].astype(jnp.int32)]
            return jnp.sum((1.0 - jnp.tanh(a @ params["x"])) ** 2)

        lemma = bpjax.sweep(lemma_loss, lambda c, k: {"x": jnp.zeros(DIM, jnp.float64)}, "sgd",
                            bpjax.Grid(set=np.arange(len(sets)), lr=[LEMMA_LR]), size["steps"],
                            record_every=size["record_every"]).sel(lr=LEMMA_LR)
    t = xor.coords["step"].astype(np.float64)
    leaves = {f"layer{i + 1}.{k}": v for i, layer in enumerate(xor.params["layers"])
              for k, v in layer.items()}
    weights = np.concatenate([v.reshape(v.shape[0], v.shape[1], -1) for v in leaves.values()],
                             axis=-1)  # (seed, step, 9)
    weights = np.moveaxis(weights, 1, -1)  # (seed, weight, step)
    slopes, ends = log_slopes(t, weights)
    last, before = slopes[..., -1], slopes[..., -2]
    solved = xor.final_loss < 0.01
    big = np.abs(last) > 0.05  # weights that are clearly still growing
    norm = np.linalg.norm(lemma.params["x"], axis=-1)  # (set, step)
    norm_slope = (norm[:, -1] - norm[:, len(t) // 2]) / np.log(t[-1] / t[len(t) // 2])
    numbers = {
        "xor": {"steps": size["steps"], "seeds": size["seeds"], "lr": XOR_LR,
                "solved_fraction": float(solved.mean()),
                "final_loss": xor.final_loss,
                "dw_dlogt_last_window": last,
                "relative_change_last_two_windows_of_growing_weights":
                    float(np.median(np.abs(last[big] / before[big] - 1))) if big.any() else None,
                "growing_weights_fraction": float(big.mean())},
        "lemma": {"sets_per_family": size["sets"], "points": N_POINTS, "dim": DIM,
                  "lr": LEMMA_LR, "growing_if_norm_slope_in_log_t_above": 0.01},
    }
    for f, name in enumerate(FAMILIES):
        mine = family == f
        numbers["lemma"][name] = {
            "fraction_growing": float(np.mean(norm_slope[mine] > 0.01)),
            "norm_slope_in_log_t_min": float(norm_slope[mine].min()),
            "norm_slope_in_log_t_max": float(norm_slope[mine].max()),
            "final_norm_max": float(norm[mine, -1].max()),
        }
    _figure(t, weights, slopes, ends, list(leaves), norm, family, solved,
            os.path.join(out, "diverging_weights.png"))
    return experiment.save_summary(out, numbers)


def _figure(t, weights, slopes, ends, names, norm, family, solved, path):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    seed = int(np.argmax(solved)) if solved.any() else 0
    for w in range(weights.shape[1]):
        axes[0].plot(t[1:], weights[seed, w, 1:], label=_label(names, w))
        axes[1].plot(ends, slopes[seed, w], "o-", label=_label(names, w))
    axes[0].set(xscale="log", xlabel="step t (log)", ylabel="weight",
                title=f"XOR, 2-2-1 sigmoid, GD lr {XOR_LR}: weights against log t (seed {seed})")
    axes[1].set(xscale="log", xlabel="step t (log)", ylabel="t dw/dt = dw/d(log t), windowed",
                title="Sontag's figure 5: t [w(t+1) - w(t)] levels off")
    axes[1].legend(fontsize=6, ncol=2)
    for f, color in zip(range(len(FAMILIES)), ("#b03a2e", "#2e6db0", "#e3b23c")):
        rows = norm[family == f]
        for r in rows[:40]:
            axes[2].plot(t[1:], r[1:], color=color, alpha=0.25, lw=0.8)
        axes[2].plot([], [], color=color, label=f"{FAMILIES[f]} ({len(rows)} data sets)")
    axes[2].set(xscale="log", yscale="log", xlabel="step t (log)", ylabel="|x| (weight norm)",
                title="Lemma: separable data make |x| grow like log t")
    axes[2].legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(names, w):
    sizes = {"layer1.w": 4, "layer1.b": 2, "layer2.w": 2, "layer2.b": 1}
    flat = [f"{n}[{i}]" for n in names for i in range(sizes[n])]
    return flat[w]


if __name__ == "__main__":
    experiment.main(run, __doc__, "diverging_weights")
