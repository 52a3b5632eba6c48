"""The README's "Bring your own model" recipes run as written, train, and save, load
and resume bit-identically in the user's own types."""

import os
import re

import jax
import numpy as np
import pytest

import bpjax

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def recipes() -> list[str]:
    with open(README) as f:
        text = f.read()
    section = text[text.index("## Bring your own model"):]
    section = section[: section.index("\n## ", 5)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("name", ["equinox", "flax linen", "flax nnx"])
def test_a_readme_recipe_trains_and_round_trips(name, tmp_path):
    pytest.importorskip("equinox" if name == "equinox" else "flax")
    (code,) = [c for c in recipes() if c.startswith(f"# {name}:")]
    space: dict = {}
    exec(compile(code, f"README ({name})", "exec"), space)  # noqa: S102 - our own README
    res = space["res"]
    assert np.isfinite(res.final_loss).all() and not res.diverged.any()
    assert (res.final_loss < res.loss[..., 0]).all()  # every run learned something
    like = space["init"](None, jax.random.key(0))
    res.save(tmp_path / "r.npz")
    back = bpjax.load(tmp_path / "r.npz", like=like)
    assert type(back.final_params) is type(like)
    for a, b in zip(jax.tree.leaves(back.final_params), jax.tree.leaves(res.final_params)):
        np.testing.assert_array_equal(a, b)
    # streamed to a folder, killed nowhere: reloaded from result.npz, the same bits
    grid = bpjax.Grid(lr=[1e-2], seed=range(2))
    kw = dict(record_every=50, data=bpjax.problems.xor(), progress=False)
    once = bpjax.sweep(space["loss"], space["init"], "sgd", grid, 100, **kw)
    folder = bpjax.sweep(space["loss"], space["init"], "sgd", grid, 100, out=tmp_path / "o",
                         **kw)
    again = bpjax.sweep(space["loss"], space["init"], "sgd", grid, 100, out=tmp_path / "o",
                        **kw)
    for r in (folder, again):
        np.testing.assert_array_equal(r.loss, once.loss)
        for a, b in zip(jax.tree.leaves(r.final_params), jax.tree.leaves(once.final_params)):
            np.testing.assert_array_equal(a, b)
