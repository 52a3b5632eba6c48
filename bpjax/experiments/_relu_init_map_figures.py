"""relu_init_map's figures: the convergence maps and what the diagnostics say."""

import matplotlib
import matplotlib.lines
import numpy as np

from bpjax.experiments import relu_init_map as exp
from bpjax.experiments import script


def map_figure(results, grid, path, size):
    lrs, names = grid.axes["lr"], list(exp.INITS)
    fig, axes = script.subplots(2, len(results), figsize=(13, 9), constrained_layout=True)
    what = (f"reaching {100 * exp.THRESHOLD:.0f}% train acc.",
            f"barely moving (loss fell < {100 * exp.STALL:.0f}%)")
    panels = [(row, label, frac, what[row]) for label, (_, conv, stall, _) in results.items()
              for row, frac in ((0, conv), (1, stall))]
    for row, label, frac, title in panels:
        ax = axes[row, list(results).index(label)]
        mesh = ax.pcolormesh(lrs, np.arange(len(names)), frac.mean(-1),
                             cmap="viridis" if row == 0 else "magma", vmin=0, vmax=1,
                             shading="nearest")
        ax.set(xscale="log", yticks=range(len(names)), yticklabels=names,
               xlabel="learning rate (SGD, batch 32, batch-mean loss)",
               ylabel="weight init (biases 0)",
               title=f"{label}: fraction of {size['seeds']} seeds {title}")
        if label == "softmax+MSE":
            for (init_name, lr), ok in exp.SEED_CASES.items():
                for at, ms in ((lr, 12), (lr * exp.BATCH, 7)):  # nominal, and read per sample
                    ax.plot(at, names.index(init_name), "o" if ok else "X", ms=ms, mfc="none",
                            mec="white" if ok else "red", mew=2.5 if ms == 12 else 1.5)

        fig.colorbar(mesh, ax=ax, label="fraction of seeds")
    marks = [matplotlib.lines.Line2D([], [], ls="none", marker="o", mfc="none", mec="k", ms=10),
             matplotlib.lines.Line2D([], [], ls="none", marker="X", mfc="none", mec="red", ms=10),
             matplotlib.lines.Line2D([], [], ls="none", marker="o", mfc="none", mec="k", ms=5)]
    fig.legend(marks, ["seed: converges", "seed: never converges",
                       "small: at the seed's lr x 32 (read as a per-sample lr)"],
               loc="outside lower center", ncol=3, fontsize=9)  # below the maps, on no data
    fig.suptitle(f"ReLU 64-32-32-10 on 8x8 digits, {size['steps']} SGD steps")
    fig.savefig(path, dpi=110)


def why_figure(results, grid, path):
    names = list(exp.INITS)
    fig, axes = script.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    diag = results["softmax+MSE"][-1]
    pos = np.arange(len(names))
    axes[0].bar(pos, diag["saturation_init"].mean(axis=(1, 2)), color="#b03a2e")
    axes[0].set(xticks=pos, ylim=(0, 1), ylabel="fraction of examples with max p > 0.99",
                title="Softmax saturation at init")
    axes[0].set_xticklabels(names, rotation=30)
    g = diag["grad_init"].mean(axis=(1, 2))  # (init, layer)
    for layer in range(g.shape[-1]):
        axes[1].bar(pos + 0.25 * (layer - 1), g[:, layer], width=0.25, label=f"layer {layer + 1}")
    axes[1].set(xticks=pos, yscale="log", ylabel="gradient norm (softmax+MSE)",
                title="Gradient norm per layer at init")
    axes[1].set_xticklabels(names, rotation=30)
    axes[1].legend()
    lrs = grid.axes["lr"]
    for i, name in enumerate(names):
        axes[2].plot(lrs, diag["dead_end"][i].mean(axis=(1, 2)), marker="o", label=name)
    axes[2].set(xscale="log", ylim=(0, 1), xlabel="learning rate",
                ylabel="fraction of dead ReLUs after training",
                title="Dead ReLUs after training (softmax+MSE)")
    axes[2].legend(fontsize=8)
    fig.suptitle("Why runs stall: saturated softmax at init, dead units at large learning rates")
    fig.savefig(path, dpi=110)

