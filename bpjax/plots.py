"""Figures of sweep results, drawn on a ``matplotlib.figure.Figure`` (no pyplot:
no display needed, and the user's matplotlib backend is left alone)."""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from bpjax.result import Result


def final_loss_heatmap(res: Result, x: str, y: str, path, title: str = "") -> None:
    """Median final loss over every axis but ``x``, ``y`` (and optimizer): one panel per
    optimizer; cells where most seeds diverged are grey and hatched."""
    names = res.coords["optimizer"].tolist() if "optimizer" in res.dims else [None]
    fig = Figure(figsize=(4.6 * len(names) + 1, 4.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)
    # The scale comes from runs that did not diverge: a frozen diverged run's loss is huge.
    live = res.final_loss[~res.diverged & np.isfinite(res.final_loss)]
    hi = float(live.max()) if live.size else 1.0
    lo = max(float(live.min()) if live.size else 0.0, hi * 1e-12, 1e-30)
    norm = LogNorm(vmin=lo, vmax=max(hi, lo * 10))
    for ax, name in zip(axes[0], names):
        part = res.sel(optimizer=name) if name is not None else res
        others = tuple(i for i, d in enumerate(part.dims) if d not in (x, y))
        order = [part.dims.index(y), part.dims.index(x)]
        loss = np.median(np.moveaxis(part.final_loss, order, [0, 1]).reshape(
            part.final_loss.shape[order[0]], part.final_loss.shape[order[1]], -1), axis=-1) \
            if others else np.moveaxis(part.final_loss, order, [0, 1])
        div = np.mean(np.moveaxis(part.diverged, order, [0, 1]).reshape(loss.shape + (-1,)),
                      axis=-1) > 0.5
        xs, ys = part.coords[x], part.coords[y]
        mesh = ax.pcolormesh(_edges(xs), _edges(ys), np.clip(loss, norm.vmin, norm.vmax), norm=norm,
                             cmap="viridis", shading="flat")
        if div.any():
            ax.pcolor(_edges(xs), _edges(ys), np.ma.masked_where(~div, div), hatch="//",
                      cmap="Greys", vmin=0, vmax=2, alpha=0.6, shading="flat")
        for values, setter in ((xs, ax.set_xscale), (ys, ax.set_yscale)):
            if _is_log(values):
                setter("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{name}" if name else "final loss")
        fig.colorbar(mesh, ax=ax, label="median final loss over seeds (log)")
    fig.suptitle(title or f"Final loss over {x} x {y} (hatched: diverged in most seeds)")
    fig.savefig(path, dpi=110)


def _is_log(values: np.ndarray) -> bool:
    v = np.sort(values)
    if len(v) < 3 or v[0] <= 0:
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-3)) and r[0] > 1.0 + 1e-6


def _edges(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if v[0] else np.array([-0.5, 0.5])
    if _is_log(v):
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
