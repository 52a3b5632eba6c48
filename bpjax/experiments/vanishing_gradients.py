"""Vanishing gradients with depth, by activation and initialization (seed 003).

Seed 003: with sigmoids g' <= 0.25, so the error reaching the first layer of an
L-layer net shrinks like 0.25^L; ReLU and Xavier/He initialization are the cure.
We measure it. Nets map the 8x8 digits (64 inputs) through L hidden layers of
width 32 to 10 logits (cross-entropy). Depth is a traced sweep axis: a net of
30 hidden layers in which layers beyond L pass their input through unchanged is
exactly an L-layer net, so each (activation, init) compiles once for every L.

1. Gradient norms at init: the norm of the first layer's weight gradient against
   L = 1..30, for sigmoid/tanh/relu x uniform U[-0.01, 0.01] (the textbook's
   "small random values") / Xavier / He, the geometric mean over 16 seeds, with
   0.25^L drawn beside the sigmoid curves; and for L = 30 the profile over layers.
   The norm is taken as m |g / m| with m = max |g|: a plain float32 norm of entries
   ~1e-25 is exactly 0 because their squares underflow. Beside it, the fraction of
   entries that are exactly 0 (among those non-zero at L = 1) and log10 max |entry|.
2. The per-layer factor against theory: one more layer multiplies the
   backpropagated error by W^T (n = 32 terms of variance Var W) and then by g'(z)
   entrywise, so the norm shrinks by about sqrt(n Var W) x rms(g'(z)) per layer
   (Var W = a^2 / 3 for U[-a, a]; Xavier 1/n, He 2/n). The prediction uses the
   preactivations z measured at init (JAX) and g' in NumPy; it is drawn against
   the fitted decay.
3. Does it train: SGD (lr 0.1, mini-batches of 64) over L in {1, 2, 4, 8, 16} and
   4 seeds, 200 steps: the fraction of seeds whose training loss falls below 1.5
   (from ln 10 = 2.30).

What we measure (default size; every number in summary.json): 0.25^L is no bound.
The per-layer factor is sqrt(n Var W) x rms(g'), measured (predicted): sigmoid
with Xavier 0.23 (0.24), below 0.25, but sigmoid with He 0.31 (0.32), above it;
the textbook U[-0.01, 0.01] init 0.0082 (0.0082) for sigmoid, 0.033 (0.033) for
tanh, 0.022 (0.023) for relu; tanh + Xavier 0.95 (0.96), relu + Xavier 0.68
(0.71), relu + He 0.96 (1.00). The gradient is tiny, not zero: with U[-0.01, 0.01]
and sigmoid its largest entry is 5e-27 at L = 12, and entries become exactly 0
only where they pass float32's smallest normal number, 1.2e-38: the first at
L = 15, all from L = 17 (tanh: from L = 21, all at 24; relu: from 19, all at 22).
Nothing with the tiny init reaches the target at any depth. Tanh with Xavier or
He trains at every depth to 16; relu with Xavier stops training at L = 16, relu
with He trains 1 of 4 seeds there. Sigmoid nets reach the target at no depth in
200 steps at lr 0.1, even with one hidden layer: slow, not only deep.
"""

import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import bpjax
from bpjax import losses, nets
from bpjax.compilation_cache import jit_once
from bpjax.experiments import script
from bpjax.problems import digits

SEED = "003"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Do gradients vanish like 0.25^L in deep sigmoid nets (the per-layer factor "
            "against sqrt(n Var W) x rms(g')), and do ReLU and Xavier/He initialization "
            "prevent it? (seed 003)")
SIZES = {"default": dict(max_depth=30, seeds=16, train_depths=[1, 2, 4, 8, 16],
                         train_seeds=4, steps=200),
         "quick": dict(max_depth=6, seeds=6, train_depths=[1, 6], train_seeds=2, steps=60)}
WIDTH, LR, BATCH, TARGET = 32, 0.1, 64, 1.5
ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = {"uniform": bpjax.initializers.uniform(0.01), "xavier": bpjax.initializers.xavier(),
         "he": bpjax.initializers.he()}
# Var W of a WIDTH x WIDTH hidden layer: U[-a, a] has a^2 / 3; Xavier a^2 = 6 / (2 WIDTH);
# He N(0, 2 / WIDTH)
WEIGHT_VAR = {"uniform": 0.01**2 / 3, "xavier": 1.0 / WIDTH, "he": 2.0 / WIDTH}


def init_params(key, kind, max_depth: int):
    """Params of a net with ``max_depth`` hidden layers, hidden ones stacked for a scan;
    ``kind`` (traced) indexes INITS, so one compile serves every initialization."""
    def layer(k, n_in, n_out):
        ws = [f(k, (n_in, n_out), jnp.float32) for f in INITS.values()]
        return {"w": jax.lax.select_n(kind, *ws), "b": jnp.zeros(n_out, jnp.float32)}

    k0, k1, k2 = jax.random.split(key, 3)
    hidden = jax.vmap(lambda k: layer(k, WIDTH, WIDTH))(jax.random.split(k1, max_depth - 1))
    return {"first": layer(k0, 64, WIDTH), "hidden": hidden, "out": layer(k2, WIDTH, 10)}


def apply(params, x, depth, activation):
    """Hidden layers at index >= depth pass their input through: exactly a depth-L net."""
    f = nets.activation_fn(activation)
    h = f(x @ params["first"]["w"] + params["first"]["b"][None])  # x: (n, 64)

    def body(h, layer_i):
        layer, i = layer_i
        return jnp.where(i < depth, f(h @ layer["w"] + layer["b"][None]), h), None

    n = params["hidden"]["b"].shape[0]
    h, _ = jax.lax.scan(body, h, (params["hidden"], jnp.arange(1, n + 1)))
    return h @ params["out"]["w"] + params["out"]["b"][None]


def loss_fn(activation):
    def loss(params, batch, config):
        x, y = batch
        logits = apply(params, x, config["depth"], activation)
        return jnp.mean(losses.softmax_cross_entropy(logits, y))
    return loss


def safe_norm(a: jax.Array, axes) -> jax.Array:
    """Frobenius norm over ``axes`` without squaring tiny entries: in float32 a plain
    norm of entries ~1e-25 returns exactly 0 (their squares underflow), so divide by
    the largest |entry| first and multiply it back after the square root."""
    m = jnp.max(jnp.abs(a), axis=axes, keepdims=True)
    r = jnp.sqrt(jnp.sum((a / jnp.where(m > 0, m, 1.0)) ** 2, axis=axes))
    return r * jnp.squeeze(m, axes)


def layer_norms(grads):
    return jnp.concatenate([safe_norm(grads["first"]["w"], (0, 1))[None],
                            safe_norm(grads["hidden"]["w"], (1, 2)),
                            safe_norm(grads["out"]["w"], (0, 1))[None]])


def hidden_preactivations(params, x, activation):
    """z of hidden layers 2..max_depth of the full-depth net, shape (max_depth - 1, n, width)."""
    f = nets.activation_fn(activation)
    h = f(x @ params["first"]["w"] + params["first"]["b"][None])

    def body(h, layer):
        z = h @ layer["w"] + layer["b"][None]
        return f(z), z

    return jax.lax.scan(body, h, params["hidden"])[1]


def activation_slope(z: np.ndarray, activation: str) -> np.ndarray:
    """g'(z) in float64 NumPy, independent of JAX's autodiff."""
    z = z.astype(np.float64)
    if activation == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    if activation == "tanh":
        return 1 - np.tanh(z) ** 2
    return (z > 0).astype(np.float64)


def predicted_factor(z: np.ndarray, activation: str, weight_var: float) -> float:
    """sqrt(n Var W) x rms(g'(z)): one layer multiplies the backpropagated error by W
    (n terms of variance Var W) and then by g'(z) entrywise. z: (seeds, layers, n, width);
    rms over examples, units and seeds, geometric mean over the layers."""
    rms = np.sqrt(np.mean(activation_slope(z, activation) ** 2, axis=(0, 2, 3)))
    with np.errstate(divide="ignore"):  # relu + tiny init: z underflows to 0, g' = 0
        return float(np.sqrt(WIDTH * weight_var) * np.exp(np.mean(np.log(rms))))


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    (x, y), _ = digits()
    x, y = x.astype(np.float32), y.astype(np.int32)
    depths = np.arange(1, size["max_depth"] + 1)
    numbers = {"width": WIDTH, "first_layer_grad_norm": {}, "per_layer_factor": {},
               "predicted_per_layer_factor": {}, "first_layer_grad_log10_max_abs": {},
               "first_layer_grad_zero_fraction": {},
               "trained_fraction": {}, "train_depths": size["train_depths"], "lr": LR,
               "steps": size["steps"], "target_loss": TARGET}
    norms, profiles = {}, {}
    batch = (x[:256], y[:256])
    keys = jax.random.split(jax.random.key(0), size["seeds"])
    # every activation's nets start from the same params: (init, seed, ...), one program
    # for a single run (its random-number code compiles in a fraction of jax.jit's time)
    params = jit_once(jax.vmap(jax.vmap(partial(init_params, max_depth=size["max_depth"]),
                                        (0, None)), (None, 0)))(keys, jnp.arange(len(INITS)))

    def at_init(activation):  # one program per activation: under vmap, a traced choice
        # (nets.chosen) computes every branch and its gradient: 25.7 s cold against 11.6
        # at default size on a 2-core CPU (bench/README.md, session 14)
        def stats(p, depth):
            g = jax.grad(loss_fn(activation))(p, batch, {"depth": depth})
            return layer_norms(g), g["first"]["w"]

        over = jax.vmap(jax.vmap(jax.vmap(stats, (0, None)), (None, 0)), (0, None))
        z = jax.vmap(jax.vmap(lambda p: hidden_preactivations(p, batch[0], activation)))
        # norms and dLoss/dW_1 (init, depth, seed, ...); preactivations (init, seed, ...)
        return jit_once(lambda ps, ds: (*over(ps, ds), z(ps)))(params, jnp.asarray(depths))

    g_acts, w1_acts, z_acts = zip(*(map(np.asarray, at_init(a)) for a in ACTIVATIONS))
    for act, g_all, w1_all, z_all in zip(ACTIVATIONS, g_acts, w1_acts, z_acts):
        for k, init_name in enumerate(INITS):
            g = g_all[k]
            with np.errstate(divide="ignore"):  # a norm that is exactly 0 stays 0
                first = np.exp(np.mean(np.log(g[:, :, 0]), axis=1))
                profiles[act, init_name] = np.exp(np.mean(np.log(g[-1]), axis=0))
            norms[act, init_name] = first
            key = f"{act}/{init_name}"
            numbers["first_layer_grad_norm"][key] = first
            # entries of dLoss/dW_1 that are exactly 0 at depth L among those that are not at
            # L = 1 (blank pixels and dead relu units give structural zeros at every depth)
            w1 = w1_all[k]  # (depth, seed, 64, WIDTH)
            can = w1[0] != 0
            zero = np.array([[np.mean(w1[d, s][can[s]] == 0) for s in range(len(keys))]
                             for d in range(len(depths))])  # (depth, seed)
            numbers["first_layer_grad_zero_fraction"][key] = zero.mean(axis=1)
            with np.errstate(divide="ignore"):
                numbers["first_layer_grad_log10_max_abs"][key] = np.median(
                    np.log10(np.abs(w1).max(axis=(2, 3))), axis=1)
            # decay per added layer, fitted over the depths where no entry has become 0
            ok = (first > 0) & (zero.max(axis=1) == 0)
            numbers["per_layer_factor"][key] = (
                float(np.exp(np.polyfit(depths[ok], np.log(first[ok]), 1)[0]))
                if ok.sum() >= 2 else None)
            # over the hidden layers 2..L that the fit spans (z of layer l is z_all[..., l - 2])
            upto = int(depths[ok].max()) if ok.any() else size["max_depth"]
            numbers["predicted_per_layer_factor"][key] = predicted_factor(
                z_all[k][:, :max(upto - 1, 1)], act, WEIGHT_VAR[init_name])
    numbers["trained_fraction"] = _trainability(size, (x, y))
    numbers.update(finding(numbers))
    _figure(depths, norms, profiles, numbers, os.path.join(out, "vanishing.png"))
    return script.save_summary(out, numbers)


def first_zero_depth(zero_fraction) -> int | None:
    """The first depth L at which some entry of dLoss/dW_1 is exactly 0 (None: never)."""
    hit = np.flatnonzero(np.asarray(zero_fraction) > 0)
    return int(hit[0]) + 1 if hit.size else None


def finding(numbers: dict) -> dict:
    """The seed's 0.25^L against the measured per-layer factors: refuted when a sigmoid net
    loses less than 0.25 per layer (then 0.25^L is no bound), else reproduced if relu + He
    keeps the gradient (factor >= 0.8), as the seed's cure says, partly if not."""
    f, p = numbers["per_layer_factor"], numbers["predicted_per_layer_factor"]
    num = lambda v: "none" if v is None else f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"  # noqa: E731
    pair = lambda k: f"{num(f[k])} ({num(p[k])})"  # noqa: E731
    above = [k for k in f if k.startswith("sigmoid/") and f[k] is not None and f[k] > 0.25]
    cured = f["relu/he"] is not None and f["relu/he"] >= 0.8
    verdict = "refuted" if above else "reproduced" if cured else "partly"
    zeros = {k: first_zero_depth(v) for k, v in numbers["first_layer_grad_zero_fraction"].items()}
    n = len(numbers["first_layer_grad_norm"]["sigmoid/uniform"])
    where = ", ".join(f"{k} at L = {v}" for k, v in zeros.items() if v is not None)
    return script.stated(verdict, (
        "the first-layer gradient shrinks per added layer by sqrt(n Var W) x rms(g'), not by a "
        "fixed 0.25 (measured, predicted in brackets): sigmoid + Xavier "
        f"{pair('sigmoid/xavier')}, sigmoid + He {pair('sigmoid/he')}"
        + (f", so 0.25^L is no bound ({', '.join(above)} above 0.25)" if above else
           ", both at most 0.25")
        + f"; U[-0.01, 0.01] {pair('sigmoid/uniform')} (sigmoid) to {pair('tanh/uniform')} "
        f"(tanh); tanh + Xavier {pair('tanh/xavier')}, relu + He {pair('relu/he')}. The "
        "gradient stays non-zero in float32 until it passes ~1e-38: first exact zeros "
        + (f"{where}." if where else f"at no depth up to L = {n}.")))


def _trainability(size, data):
    max_depth = max(size["train_depths"])

    def init(config, key):
        return init_params(key, config["init"].astype(jnp.int32), max_depth)

    def loss(p, batch, config):  # the traced config["activation"] too: one compile for all
        return loss_fn(nets.chosen(config["activation"], ACTIVATIONS))(p, batch, config)

    grid = bpjax.Grid(activation=np.arange(len(ACTIVATIONS)), init=np.arange(len(INITS)),
                      depth=size["train_depths"], lr=[LR], seed=np.arange(size["train_seeds"]))
    res = bpjax.sweep(loss, init, "sgd", grid, size["steps"], record_every=size["steps"], data=data,
                      batch_size=BATCH, record_params=False)
    ok = ((res.final_loss < TARGET) & ~res.diverged)[..., 0, :].mean(-1)  # (act, init, depth)
    return {f"{a}/{i}": ok[j, k] for j, a in enumerate(ACTIVATIONS) for k, i in enumerate(INITS)}


def _figure(depths, norms, profiles, numbers, path):
    fig, grid = script.subplots(2, 2, figsize=(14, 10.5), constrained_layout=True)
    axes = [grid[0, 0], grid[0, 1], grid[1, 1], grid[1, 0]]
    colors = dict(zip(ACTIVATIONS, ["tab:blue", "tab:orange", "tab:green"]))
    styles = dict(zip(INITS, ["-", "--", ":"]))
    for (act, init_name), first in norms.items():
        axes[0].plot(depths, first, styles[init_name], color=colors[act], marker=".",
                     label=f"{act}, {init_name}")
        axes[1].plot(np.arange(1, len(profiles[act, init_name]) + 1),
                     profiles[act, init_name], styles[init_name], color=colors[act])
    for init_name in INITS:
        ref = norms["sigmoid", init_name][0] * 0.25 ** (depths - 1)
        axes[0].plot(depths, ref, color="gray", lw=3, alpha=0.3,
                     label="0.25^L from the sigmoid L=1 value" if init_name == "uniform" else None)
    axes[0].set(yscale="log", xlabel="hidden layers L", ylabel="|dLoss/dW_1| at init",
                title="First-layer gradient norm at init against depth\n"
                      "(geometric mean over seeds; digits, width 32)")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set(yscale="log", xlabel="layer (1 = first, last = output)",
                ylabel="|dLoss/dW_l| at init",
                title=f"Per-layer gradient norm, L = {len(depths)}\n"
                      "(colour: activation; line: init, as in the left panel)")
    tr = numbers["trained_fraction"]
    rows = list(tr)
    im = axes[2].imshow(np.array([tr[r] for r in rows]), vmin=0, vmax=1, cmap="viridis",
                        aspect="auto")
    axes[2].set(xticks=range(len(numbers["train_depths"])), xticklabels=numbers["train_depths"],
                yticks=range(len(rows)), yticklabels=rows, xlabel="hidden layers L",
                title=f"Fraction of seeds reaching training loss < {TARGET}\n"
                      f"(SGD lr {LR}, batch {BATCH}, {numbers['steps']} steps)")
    fig.colorbar(im, ax=axes[2], label="fraction of seeds trained")
    ax = axes[3]
    markers = dict(zip(INITS, ["s", "o", "^"]))
    for key, measured in numbers["per_layer_factor"].items():
        act, init_name = key.split("/")
        if measured is not None:
            ax.plot(numbers["predicted_per_layer_factor"][key], measured, markers[init_name],
                    color=colors[act], ms=8, label=key)
    lim = (5e-3, 2)
    ax.plot(lim, lim, color="gray", lw=1, label="measured = predicted")
    ax.axhline(0.25, color="gray", ls=":", label="0.25, the seed's rate")
    ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim,
           xlabel="predicted sqrt(n Var W) x rms(g'(z)) (z measured at init)",
           ylabel="measured decay of |dLoss/dW_1| per added layer",
           title="Per-layer factor: measured against sqrt(n Var W) x rms(g')\n"
                 "(sigmoid + He sits above 0.25: 0.25^L is no bound)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "vanishing_gradients")
