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
2. Does it train: SGD (lr 0.1, mini-batches of 64, 300 steps) over
   L in {1, 2, 4, 8, 16} and 4 seeds (200 steps): the fraction of seeds whose
   training loss falls below 1.5 (from ln 10 = 2.30). Gradients that underflow to
   0 in float32 are left out of the log-scale plots.

What we measure (default size; every number in summary.json): 0.25^L is an
optimistic bound, because the weights multiply the error at every layer too. The
textbook U[-0.01, 0.01] init shrinks the first-layer gradient by a factor 0.008
(sigmoid), 0.03 (tanh), 0.02 (relu) per added layer, underflowing float32 to
exactly 0 by L ~ 10-13; nothing with it reaches the target at any depth. With
Xavier, sigmoid decays by 0.23 per layer, the bound's own rate (He: 0.31); tanh
loses only 0.95 per layer and trains at every depth to 16; relu with Xavier
decays by 0.68 per layer and stops training at L = 16, relu with He keeps 0.96
per layer and trains half its seeds at L = 16. Sigmoid nets reach the target
at no depth in 200 steps at lr 0.1, even with one hidden layer: slow, not only
deep.
"""

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bpjax  # noqa: E402
from bpjax import experiment, losses, nets  # noqa: E402
from bpjax.problems import digits  # noqa: E402

QUESTION = ("Do gradients vanish like 0.25^L in deep sigmoid nets, and do ReLU and "
            "Xavier/He initialization prevent it? (seed 003)")
SIZES = {"default": dict(max_depth=30, seeds=16, train_depths=[1, 2, 4, 8, 16],
                         train_seeds=4, steps=200),
         "quick": dict(max_depth=6, seeds=6, train_depths=[1, 6], train_seeds=2, steps=60)}
WIDTH, LR, BATCH, TARGET = 32, 0.1, 64, 1.5
ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = {"uniform": bpjax.init.uniform(0.01), "xavier": bpjax.init.xavier(),
         "he": bpjax.init.he()}


def init_params(key, kind, max_depth: int):
    """Params of a net with ``max_depth`` hidden layers, hidden ones stacked for a scan;
    ``kind`` (traced) indexes INITS, so one compile serves every initialization."""
    def layer(k, n_in, n_out):
        ws = [f(k, (n_in, n_out), jnp.float32) for f in INITS.values()]
        return {"w": jax.lax.select_n(kind, *ws), "b": jnp.zeros(n_out, jnp.float32)}

    k0, k1, k2 = jax.random.split(key, 3)
    hidden = jax.vmap(lambda k: layer(k, WIDTH, WIDTH))(jax.random.split(k1, max_depth - 1))
    return {"first": layer(k0, 64, WIDTH), "hidden": hidden, "out": layer(k2, WIDTH, 10)}


def apply(params, x, depth, activation: str):
    """Hidden layers at index >= depth pass their input through: exactly a depth-L net."""
    f = nets.activation_fn(activation)
    h = f(x @ params["first"]["w"] + params["first"]["b"][None])  # x: (n, 64)

    def body(h, layer_i):
        layer, i = layer_i
        return jnp.where(i < depth, f(h @ layer["w"] + layer["b"][None]), h), None

    n = params["hidden"]["b"].shape[0]
    h, _ = jax.lax.scan(body, h, (params["hidden"], jnp.arange(1, n + 1)))
    return h @ params["out"]["w"] + params["out"]["b"][None]


def loss_fn(activation: str):
    def loss(params, batch, config):
        x, y = batch
        logits = apply(params, x, config["depth"], activation)
        return jnp.mean(losses.softmax_cross_entropy(logits, y))
    return loss


def layer_norms(grads):
    return jnp.concatenate([jnp.linalg.norm(grads["first"]["w"])[None],
                            jnp.linalg.norm(grads["hidden"]["w"], axis=(1, 2)),
                            jnp.linalg.norm(grads["out"]["w"])[None]])


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    (x, y), _ = digits()
    x, y = x.astype(np.float32), y.astype(np.int32)
    depths = np.arange(1, size["max_depth"] + 1)
    numbers = {"width": WIDTH, "first_layer_grad_norm": {}, "per_layer_factor": {},
               "trained_fraction": {}, "train_depths": size["train_depths"], "lr": LR,
               "steps": size["steps"], "target_loss": TARGET}
    norms, profiles = {}, {}
    batch = (x[:256], y[:256])
    for act in ACTIVATIONS:
        loss = loss_fn(act)

        def grad_norms(kind, depth, key, loss=loss):
            p = init_params(key, kind, size["max_depth"])
            return layer_norms(jax.grad(loss)(p, batch, {"depth": depth}))

        keys = jax.random.split(jax.random.key(0), size["seeds"])
        over_seeds = jax.vmap(grad_norms, (None, None, 0))
        g_all = np.asarray(jax.jit(jax.vmap(jax.vmap(over_seeds, (None, 0, None)),
                                            (0, None, None)))(
            jnp.arange(len(INITS)), jnp.asarray(depths), keys))  # (init, depth, seed, layer)
        for k, init_name in enumerate(INITS):
            g = g_all[k]
            with np.errstate(divide="ignore"):  # a norm that underflowed to 0 stays 0
                first = np.exp(np.mean(np.log(g[:, :, 0]), axis=1))
                profiles[act, init_name] = np.exp(np.mean(np.log(g[-1]), axis=0))
            norms[act, init_name] = first
            key = f"{act}/{init_name}"
            numbers["first_layer_grad_norm"][key] = first
            # decay per added layer, fitted over the depths where float32 has not underflowed
            ok = first > 1e-30
            numbers["per_layer_factor"][key] = (
                float(np.exp(np.polyfit(depths[ok], np.log(first[ok]), 1)[0]))
                if ok.sum() >= 2 else None)
        numbers["trained_fraction"].update(_trainability(act, size, (x, y)))
    _figure(depths, norms, profiles, numbers, os.path.join(out, "vanishing.png"))
    return experiment.save_summary(out, numbers)


def _trainability(act, size, data):
    max_depth = max(size["train_depths"])

    def init(config, key):
        return init_params(key, config["init"].astype(jnp.int32), max_depth)

    grid = bpjax.Grid(init=np.arange(len(INITS)), depth=size["train_depths"], lr=[LR],
                      seed=np.arange(size["train_seeds"]))
    res = bpjax.sweep(loss_fn(act), init, "sgd", grid, size["steps"],
                      record_every=size["steps"], data=data, batch_size=BATCH,
                      record_params=False)
    ok = (res.final_loss < TARGET) & ~res.diverged  # (init, depth, lr, seed)
    return {f"{act}/{name}": ok[k, :, 0, :].mean(axis=-1) for k, name in enumerate(INITS)}


def _figure(depths, norms, profiles, numbers, path):
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(run, __doc__, "vanishing_gradients")
