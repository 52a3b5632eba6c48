"""Results in xarray and pandas hold exactly the values ``sel`` gives."""

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.frames import to_dataframe, to_xarray

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def res():
    grid = bpjax.Grid(lr=[0.01, 0.1, 0.6], x0=[0.5, 2.0])
    return bpjax.sweep(lambda p: jnp.sum(p["x"] ** 4), lambda c, k: {"x": c["x0"] * jnp.ones(2)},
                       ["sgd", "adam"], grid, 20, record_every=5, target=0.01,
                       metrics=["grad_norm"], progress=False)


def test_xarray_dims_coords_and_values_equal_sel(res):
    ds = res.to_xarray()
    assert ds.equals(to_xarray(res))
    assert ds["loss"].dims == ("optimizer", "lr", "x0", "step") == res.dims_of("loss")
    assert ds["params['x']"].dims == ("optimizer", "lr", "x0", "step", "params['x']_dim_0")
    assert ds["metrics/grad_norm"].dims == res.dims_of("metrics")
    assert ds["step"].values.tolist() == [0, 5, 10, 15, 20]
    assert ds["optimizer"].values.tolist() == ["sgd", "adam"]
    for opt in ("sgd", "adam"):
        for lr in res.coords["lr"]:
            one = res.sel(optimizer=opt, lr=lr)
            part = ds.sel(optimizer=opt, lr=lr)
            np.testing.assert_array_equal(part["loss"].values, one.loss)
            np.testing.assert_array_equal(part["final_loss"].values, one.final_loss)
            np.testing.assert_array_equal(part["final_params['x']"].values, one.final_params["x"])
            np.testing.assert_array_equal(part["diverged"].values, one.diverged)
            np.testing.assert_array_equal(part["metrics/grad_norm"].values,
                                          one.metrics["grad_norm"])


def test_dataframe_has_one_row_per_run_with_its_axes(res):
    df = res.to_dataframe()
    assert df.equals(to_dataframe(res))
    assert len(df) == res.final_loss.size == 12
    assert list(df.columns[:3]) == ["optimizer", "lr", "x0"]
    for row in df.itertuples():
        one = res.sel(optimizer=row.optimizer, lr=row.lr, x0=row.x0)
        assert row.final_loss == one.final_loss or (np.isnan(row.final_loss)
                                                    and np.isnan(one.final_loss))
        assert row.diverged == one.diverged and row.reached_at == one.reached_at
    # grouping works as a researcher would use it
    assert df.groupby("optimizer")["diverged"].sum().to_dict() == {
        name: int(res.sel(optimizer=name).diverged.sum()) for name in ("adam", "sgd")}


def test_a_missing_xarray_says_how_to_install_it(res, monkeypatch):
    import bpjax.frames as frames

    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(frames.importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"pip install 'bpjax\[xarray\]'"):
        to_xarray(res)
