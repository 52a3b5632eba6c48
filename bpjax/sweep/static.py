"""Static axes: one sweep per combination of their values, one ``Result`` for all.

Each combination of the static axes' values (``activation="relu"``, ``width=8``)
is planned and run like a sweep of the grid's other (traced) axes, its Python
values merged into every configuration's ``config``; it compiles its own programs.
The results are stacked into one ``Result`` with every axis in the grid's order.
Losses, summaries and metrics always stack; params stack when every combination
has the same param shapes, and otherwise are kept per combination: a dict from the
combination's name (``"width=8,activation=relu"``, static axes in grid order) to
that combination's params (over the optimizer and traced axes only), with
``meta["params_by"]`` naming the static axes; ``sel`` on every static axis picks one.
"""

import itertools
import os
from collections.abc import Callable

import jax
import numpy as np

from bpjax.grid import Grid
from bpjax.result import PARAMS, Result

STACKED = ("loss", "final_loss", "diverged_at", "val_loss", "best_val_loss", "best_step",
           "min_loss", "min_step", "reached_at")


def combinations(grid: Grid) -> list[tuple[tuple[str, object], ...]]:
    """Every combination of the static axes' values, as (axis, Python value) pairs."""
    values = [grid.axes[d].tolist() for d in grid.static_dims]
    return [tuple(zip(grid.static_dims, combo)) for combo in itertools.product(*values)]


def name(combo) -> str:
    return ",".join(f"{d}={v}" for d, v in combo)


def run(grid: Grid, plan: Callable, execute: Callable, out=None) -> Result:
    """Every combination planned (``plan(traced_grid, combo)``: all checked before any
    compiles), then run (``execute(plan, folder)``), then stacked.

    With ``out``, each combination keeps its own folder ``out/NAME`` (checkpoints,
    resume, its ``result.npz``) and the stacked result is written to
    ``out/result.npz``.
    """
    traced = grid.part(grid.traced_dims)
    if not traced.axes:
        raise ValueError(f"every grid axis is static ({', '.join(grid.static_dims)}); a sweep "
                         "also needs a traced axis, e.g. seed=[0] or lr=[...]")
    combos = combinations(grid)
    plans = [plan(traced, combo) for combo in combos]
    parts = [execute(p, None if out is None else os.path.join(out, name(combo)))
             for p, combo in zip(plans, combos)]
    result = stack(grid, combos, parts)
    if out is not None:
        result.save(os.path.join(out, "result.npz"))
    return result


def stacker(grid: Grid, lead: tuple = ()):
    """``stacked(*arrays)``: one array per static combination (in ``combinations`` order),
    each over ``lead`` + the traced axes (then its own), stacked into one over ``lead`` +
    every grid axis in the grid's order."""
    static_shape = tuple(len(grid.axes[d]) for d in grid.static_dims)
    # stacked: static axes, then each part's (lead + traced) axes; wanted: lead + grid order
    order = grid.static_dims + lead + grid.traced_dims
    perm = [order.index(d) for d in lead + grid.dims]

    def stacked(*arrays):
        a = np.stack([np.asarray(x) for x in arrays]).reshape(static_shape + arrays[0].shape)
        return np.transpose(a, perm + list(range(len(perm), a.ndim)))

    return stacked


def stack(grid: Grid, combos, parts: list[Result]) -> Result:
    first = parts[0]
    lead = ("optimizer",) if "optimizer" in first.dims else ()
    stacked = stacker(grid, lead)

    def field(name):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else jax.tree.map(stacked, *values)

    fields = {n: field(n) for n in STACKED}
    fields["metrics"] = field("metrics")
    meta = dict(first.meta)
    meta.update(grid={d: grid.axes[d].tolist() for d in grid.dims},
                static=list(grid.static_dims),
                elapsed_s=sum(p.meta["elapsed_s"] for p in parts),
                config_steps=sum(p.meta["config_steps"] for p in parts),
                fingerprints={name(c): p.meta.get("fingerprint") for c, p in zip(combos, parts)})
    meta.pop("fingerprint", None)
    if same_shapes([p.final_params for p in parts]):
        fields.update((n, field(n)) for n in PARAMS)
    else:
        meta["params_by"] = list(grid.static_dims)
        fields.update((n, None if getattr(first, n) is None else
                       {name(c): getattr(p, n) for c, p in zip(combos, parts)}) for n in PARAMS)
    coords = {d: first.coords[d] for d in lead} | {d: grid.axes[d] for d in grid.dims}
    coords["step"] = first.coords["step"]
    return Result(dims=lead + grid.dims, coords=coords, meta=meta, **fields)


def same_shapes(trees) -> bool:
    shape = jax.tree.structure(trees[0]), [np.shape(x) for x in jax.tree.leaves(trees[0])]
    return all((jax.tree.structure(t), [np.shape(x) for x in jax.tree.leaves(t)]) == shape
               for t in trees[1:])
