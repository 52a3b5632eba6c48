"""Result.save / load with params of any pytree type, sel by lists and ranges, dims_of."""

import dataclasses
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.result import Result

# The last commit whose bpjax/result.py wrote format version 1.
V1_COMMIT = "f74e34be2bdf56860a0c2426faf450c68a7b9a54"
DIMS, SHAPE, STEPS = ("lr", "seed"), (2, 3), 4


class Pair(NamedTuple):
    w: jax.Array
    b: jax.Array


@dataclasses.dataclass
class Layer:
    w: jax.Array
    b: jax.Array
    name: str = "dense"  # static: in the tree structure, not a leaf


jax.tree_util.register_dataclass(Layer, data_fields=["w", "b"], meta_fields=["name"])


class Affine:
    """A class of one's own, registered with key paths (``.w``, ``.b``)."""

    def __init__(self, w, b):
        self.w, self.b = w, b


jax.tree_util.register_pytree_with_keys(
    Affine,
    lambda a: (((jax.tree_util.GetAttrKey("w"), a.w), (jax.tree_util.GetAttrKey("b"), a.b)), None),
    lambda _, kids: Affine(*kids),
)

# name: (the tree from leaves a and b, what ``load`` gives without ``like``)
CASES = {
    "dict": (lambda a, b: {"layers": [{"w": a}, {"w": b}]},
             lambda a, b: {"layers": [{"w": a}, {"w": b}]}),
    "list": (lambda a, b: [a, b], lambda a, b: [a, b]),
    "tuple": (lambda a, b: (a, (b, None)), lambda a, b: (a, (b, None))),
    "namedtuple": (lambda a, b: Pair(w=a, b=b), lambda a, b: {"w": a, "b": b}),
    "dataclass": (lambda a, b: Layer(w=a, b=b, name="out"), lambda a, b: {"w": a, "b": b}),
    "keyed class": (lambda a, b: Affine(a, b), lambda a, b: {"w": a, "b": b}),
}


def make(tree, rng=None, **kw) -> Result:
    """A Result over (lr, seed) with params ``tree(a, b)``, leaves of random numbers."""
    rng = rng or np.random.default_rng(0)

    def params(*lead):
        return tree(rng.normal(size=lead + (2, 3)).astype(np.float32),
                    rng.integers(0, 9, size=lead + (3,)).astype(np.int16))

    return Result(
        dims=DIMS, coords={"lr": np.array([0.1, 0.2]), "seed": np.arange(3),
                           "step": np.arange(STEPS)},
        loss=rng.normal(size=SHAPE + (STEPS,)), final_loss=rng.normal(size=SHAPE),
        diverged_at=np.full(SHAPE, -1, np.int32), final_params=params(*SHAPE),
        params=params(*SHAPE, STEPS), best_params=params(*SHAPE),
        meta={"note": "made by hand"}, **kw)


def assert_trees_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert type(x) is np.ndarray or isinstance(x, np.memmap)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", CASES)
def test_params_of_every_kind_survive_a_round_trip(case, tmp_path):
    tree, fallback = CASES[case]
    res = make(tree)
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz", like=tree(np.zeros(1), np.zeros(1)))
    for name in ("final_params", "params", "best_params"):
        assert type(getattr(back, name)) is type(getattr(res, name))
        assert_trees_equal(getattr(back, name), getattr(res, name))
    if case == "dataclass":  # static fields come from the template
        assert back.final_params.name == "out"
    np.testing.assert_array_equal(back.loss, res.loss)
    assert back.meta["note"] == "made by hand" and back.meta["format_version"] == 2
    plain = bpjax.load(tmp_path / "r.npz")
    for name in ("final_params", "params", "best_params"):
        leaves = jax.tree.leaves(getattr(res, name))
        assert_trees_equal(getattr(plain, name), fallback(*leaves))
    # NumPy alone reads every array, without pickle.
    with np.load(tmp_path / "r.npz", allow_pickle=False) as raw:
        assert len([raw[k] for k in raw.files]) == len(raw.files)


def test_leaves_are_stored_under_their_key_paths(tmp_path):
    make(CASES["dict"][0]).save(tmp_path / "d.npz")
    make(CASES["namedtuple"][0]).save(tmp_path / "n.npz")
    with np.load(tmp_path / "d.npz") as d, np.load(tmp_path / "n.npz") as n:
        assert "final_params['layers'][1]['w']" in d.files and "params['layers'][0]['w']" in d.files
        assert {"final_params.w", "best_params.b", "params.w"} <= set(n.files)
        trees = json.loads(str(n["meta.json"]))["trees"]
    assert trees["final_params"] == {"dict": [["w", {"leaf": "final_params.w"}],
                                              ["b", {"leaf": "final_params.b"}]],
                                     "type": f"{__name__}.Pair"}


def test_a_leaf_that_is_not_an_array_is_refused_when_saving(tmp_path):
    for leaf, what in [(lambda x: x, "function"), ("relu", "str")]:
        res = make(lambda a, b, leaf=leaf: {"w": a, "layers": [{"b": b, "act": leaf}]})
        where = re.escape("final_params['layers'][0]['act'] is a ")
        with pytest.raises(ValueError, match=where + what):
            res.save(tmp_path / "r.npz")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    res = make(CASES["dict"][0])
    res.final_params["layers"][0]["w"] = np.array([None, 1.0])
    with pytest.raises(ValueError, match=r"\['w'\] has dtype object"):
        res.save(tmp_path / "r.npz")


def test_like_must_have_the_saved_key_paths(tmp_path):
    make(CASES["namedtuple"][0]).save(tmp_path / "r.npz")
    with pytest.raises(ValueError, match=r"like has final_params\['b'\], which the file lacks"):
        bpjax.load(tmp_path / "r.npz", like={"w": 0, "b": 0})
    with pytest.raises(ValueError, match=r"the file's final_params.b is not in like"):
        bpjax.load(tmp_path / "r.npz", like=Pair(w=0, b=None))


def test_sel_by_lists_and_ranges_is_numpy_indexing():
    rng = np.random.default_rng(1)
    res = Result(
        dims=("optimizer", "lr", "seed"),
        coords={"optimizer": np.array(["sgd", "adam"]), "lr": np.array([0.1, 0.2, 0.3, 0.4]),
                "seed": np.array([1, 5, 3]), "step": np.arange(STEPS)},
        loss=rng.normal(size=(2, 4, 3, STEPS)), final_loss=rng.normal(size=(2, 4, 3)),
        diverged_at=rng.integers(-1, 3, size=(2, 4, 3)),
        final_params={"w": rng.normal(size=(2, 4, 3, 5))},
        params=Pair(w=rng.normal(size=(2, 4, 3, STEPS, 5)), b=rng.normal(size=(2, 4, 3, STEPS))))
    cases = [
        (dict(lr=[0.4, 0.1]), np.ix_([0, 1], [3, 0], [0, 1, 2])),
        (dict(lr=slice(0.2, 0.3), seed=[3, 1]), np.ix_([0, 1], [1, 2], [2, 0])),
        (dict(seed=slice(1, 3.0000001)), np.ix_([0, 1], [0, 1, 2, 3], [0, 2])),  # not contiguous
        (dict(optimizer=("adam",), lr=slice(None, 0.2000001)), np.ix_([1], [0, 1], [0, 1, 2])),
    ]
    for coords, ix in cases:
        part = res.sel(**coords)
        assert part.dims == res.dims and part.loss.shape[:3] == ix_shape(ix)
        np.testing.assert_array_equal(part.loss, res.loss[ix])
        np.testing.assert_array_equal(part.diverged_at, res.diverged_at[ix])
        np.testing.assert_array_equal(part.final_params["w"], res.final_params["w"][ix])
        np.testing.assert_array_equal(part.params.b, res.params.b[ix])
        assert type(part.params) is Pair and part.best_params is None
        for d, i in zip(res.dims, ix):
            np.testing.assert_array_equal(part.coords[d], res.coords[d][i.reshape(-1)])
    one = res.sel(optimizer="sgd", lr=[0.3])  # a value drops its axis, a list keeps it
    assert one.dims == ("lr", "seed") and one.coords["lr"].tolist() == [0.3]
    np.testing.assert_array_equal(one.params.w, res.params.w[0, 2:3])
    for bad in ([0.1, 0.7], slice(0.5, 0.9)):
        with pytest.raises(KeyError, match=r"values: \[0.1, 0.2, 0.3, 0.4\]"):
            res.sel(lr=bad)


def ix_shape(ix):
    return tuple(i.size for i in ix)


def test_dims_of_names_each_fields_axes():
    res = make(CASES["dict"][0], val_loss=np.zeros(SHAPE + (STEPS,)), best_step=np.zeros(SHAPE))
    assert res.dims_of("loss") == res.dims_of("val_loss") == res.dims_of("params") == DIMS + (
        "step",)
    for name in ("final_loss", "diverged_at", "final_params", "best_params", "best_step",
                 "min_loss", "reached_at", "diverged"):
        assert res.dims_of(name) == DIMS
    assert res.loss.ndim == len(res.dims_of("loss"))
    w = res.params["layers"][0]["w"]
    assert w.shape[: len(res.dims_of("params"))] == SHAPE + (STEPS,) and w.shape[-2:] == (2, 3)
    with pytest.raises(KeyError, match="no array field 'coords'"):
        res.dims_of("coords")


def v1_module(tmp_path):
    """bpjax/result.py as it was when it wrote version 1, imported from a file."""
    try:
        source = subprocess.run(["git", "show", f"{V1_COMMIT}:bpjax/result.py"],
                                cwd=Path(__file__).parent, capture_output=True, check=True,
                                text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the git history holding the version-1 writer is not here")
    (tmp_path / "result_v1.py").write_text(source)
    spec = importlib.util.spec_from_file_location("result_v1", tmp_path / "result_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["dict", "tuple", "namedtuple"])
def test_version_1_files_still_load(case, tmp_path):
    old = v1_module(tmp_path)
    assert old.FORMAT_VERSION == 1
    tree, fallback = CASES[case]
    if case == "tuple":  # version 1 could not hold a None
        tree = fallback = lambda a, b: (a, (b,))
    new = make(tree)
    fields = [f.name for f in dataclasses.fields(old.Result)]  # (version 1 had no metrics)
    old.Result(**{name: getattr(new, name) for name in fields}).save(
        tmp_path / "v1.npz")
    back = bpjax.load(tmp_path / "v1.npz")
    assert back.meta["format_version"] == 1 and back.dims == DIMS
    for name in ("final_params", "params", "best_params"):
        assert_trees_equal(getattr(back, name), fallback(*jax.tree.leaves(getattr(new, name))))
    np.testing.assert_array_equal(back.final_loss, new.final_loss)
    again = bpjax.load(tmp_path / "v1.npz", like=tree(0, 0))
    assert type(again.params) is type(new.params)
    assert_trees_equal(again.params, new.params)
    again.save(tmp_path / "v2.npz")  # re-saved as version 2
    assert bpjax.load(tmp_path / "v2.npz").meta["format_version"] == 2


def test_a_sweep_of_namedtuple_params_reloads_as_them(tmp_path):
    res = bpjax.sweep(lambda p: jnp.sum(p.w**2), lambda c, k: Pair(w=jnp.ones(2) * c["x0"], b=0.0),
                      "sgd", bpjax.Grid(lr=[0.1], x0=[1.0, 2.0]), steps=4)
    assert res.dims_of("params") == ("lr", "x0", "step") and res.params.w.shape == (1, 2, 5, 2)
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz", like=Pair(w=jnp.ones(2), b=0.0))
    assert type(back.final_params) is Pair and type(back.params) is Pair
    assert_trees_equal(back.params, jax.tree.map(np.asarray, res.params))
    assert_trees_equal(back.final_params, jax.tree.map(np.asarray, res.final_params))
    assert sorted(bpjax.load(tmp_path / "r.npz").final_params) == ["b", "w"]
    np.testing.assert_array_equal(back.sel(x0=[2.0]).params.w, res.params.w[:, 1:])


def stacked(tree, n=2):
    """``n`` copies of ``tree`` along a new leading grid axis, the k-th plus k."""
    return jax.tree.map(lambda x: np.stack([np.asarray(x) + k for k in range(n)]), tree)


def as_result(params, n=2):
    return Result(dims=("seed",), coords={"seed": np.arange(n), "step": np.arange(1)},
                  loss=np.zeros((n, 1)), final_loss=np.zeros(n),
                  diverged_at=np.full(n, -1), final_params=params)


def test_equinox_modules_are_saved_once_split_from_their_functions(tmp_path):
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(2, 1, 4, depth=1, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)
    with pytest.raises(ValueError, match=r"final_params\.activation is a .*eqx\.partition"):
        as_result(eqx.combine(stacked(params), static)).save(tmp_path / "r.npz")
    as_result(stacked(params)).save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz", like=params).final_params
    assert type(back) is type(model) and back.activation is None
    assert_trees_equal(back, stacked(params))
    x = jnp.array([0.5, -1.0])
    for k in range(2):  # run k's model is the original one with k added to its arrays
        got = eqx.combine(jax.tree.map(lambda a, k=k: a[k], back), static)(x)
        want = eqx.combine(jax.tree.map(lambda a, k=k: a + k, params), static)(x)
        np.testing.assert_array_equal(got, want)
    plain = bpjax.load(tmp_path / "r.npz").final_params
    assert sorted(plain) == ["activation", "final_activation", "layers"]
    assert plain["activation"] is None and sorted(plain["layers"][0]) == ["bias", "weight"]


def test_flax_nnx_state_round_trips(tmp_path):
    nnx = pytest.importorskip("flax.nnx")
    graph, state = nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    as_result(stacked(state)).save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz", like=state).final_params
    assert type(back) is type(state)
    assert_trees_equal(back, stacked(state))
    x = jnp.ones(3)
    got = nnx.merge(graph, jax.tree.map(lambda a: a[1], back))(x)
    np.testing.assert_array_equal(got, nnx.merge(graph, jax.tree.map(lambda a: a + 1, state))(x))
    plain = bpjax.load(tmp_path / "r.npz").final_params
    np.testing.assert_array_equal(plain["kernel"]["value"], stacked(state)["kernel"].value)

