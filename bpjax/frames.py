"""A ``Result`` where researchers plot, group and facet: an ``xarray.Dataset`` with
every array on its own named dims, or a ``pandas.DataFrame`` with one row per run.

xarray and pandas are optional (``pip install 'bpjax[xarray]'``) and imported only
when asked for.
"""

import importlib

import jax
import numpy as np

from bpjax.result import PARAMS, Result

PER_RUN = ("final_loss", "diverged_at", "min_loss", "min_step", "reached_at",
           "best_val_loss", "best_step")


def to_xarray(res: Result):
    """Every array of ``res`` as a variable of an ``xarray.Dataset``.

    Dims are ``res.dims_of(name)``, then, for params leaves and metrics, their own
    axes (``NAME_dim_0``, ...). Coordinates: each grid axis with its values,
    ``optimizer`` with the names, ``step`` with the record steps. Params leaves are
    named as in the saved file (``params['layers'][0]['w']``); metrics as
    ``metrics/NAME``.
    """
    xr = _need("xarray")
    coords = {d: res.coords[d] for d in res.dims} | {"step": res.coords["step"]}
    variables = {}

    def add(name, array, dims):
        array = np.asarray(array)
        own = tuple(f"{name}_dim_{i}" for i in range(array.ndim - len(dims)))
        variables[name] = (dims + own, array)

    for name in ("loss", "val_loss"):
        if getattr(res, name) is not None:
            add(name, getattr(res, name), res.dims_of(name))
    for name in PER_RUN:
        if getattr(res, name) is not None:
            add(name, getattr(res, name), res.dims)
    add("diverged", res.diverged, res.dims)
    for field in PARAMS:
        tree = getattr(res, field)
        if tree is None:
            continue
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            add(field + jax.tree_util.keystr(path), leaf, res.dims_of(field))
    for name, values in (res.metrics or {}).items():
        add(f"metrics/{name}", values, res.dims_of("metrics"))
    attrs = {k: res.meta[k] for k in ("steps", "record_every", "record", "target", "seed")
             if res.meta.get(k) is not None}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def to_dataframe(res: Result):
    """One row per run: its axis values, then the per-run numbers (final and least
    loss, where it was first seen, ``diverged``, ``diverged_at``, ``reached_at``, the
    best validation loss and its step where recorded)."""
    pd = _need("pandas")
    grids = np.meshgrid(*(res.coords[d] for d in res.dims), indexing="ij")
    columns = {d: g.reshape(-1) for d, g in zip(res.dims, grids)}
    for name in PER_RUN[:2] + ("diverged",) + PER_RUN[2:]:
        value = res.diverged if name == "diverged" else getattr(res, name)
        if value is not None:
            columns[name] = np.asarray(value).reshape(-1)
    return pd.DataFrame(columns)


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this needs {module}, which is not installed: "
                          "pip install 'bpjax[xarray]' (xarray and pandas)") from e
