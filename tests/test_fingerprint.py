"""Nothing stale: a rerun into an ``out=`` folder loads or resumes it only if nothing
that determines the result has changed, and is refused, naming what differs, if
anything has; the same inputs rebuilt (a fresh lambda, a partial made again) still load.
"""

import re
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.fingerprint import UnseenInputWarning, digest, digest_parts

GRID = bpjax.Grid(lr=[0.1, 0.2], x0=[1.0, 2.0])
CENTER = 0.5  # read by global_loss: a module-level constant


def init(config, key):
    return {"x": config["x0"]}


def quadratic(params, center):
    return (params["x"] - center) ** 2


def global_loss(params):
    return helper(params["x"] - CENTER)


def _define(name: str, body: str):
    """Defines the module-level function ``name`` with the given body, as an edited file
    would between two runs (same name, same place, other code)."""
    exec(compile(f"def {name}(x):\n    return {body}\n", __file__, "exec"), globals())
    return globals()[name]


def helper(x):  # redefined by _define (same code: the same digest)
    return x ** 2


class Quadratic:
    """A callable object: the loss is its ``__call__``, the center an attribute."""

    def __init__(self, center):
        self.center = center

    def __call__(self, params):
        return (params["x"] - self.center) ** 2

    def loss(self, params):
        return (params["x"] - self.center) ** 2


def nested(center):
    """A loss two closures deep: loss -> inner -> center."""

    def inner(x):
        return (x - center) ** 2

    def loss(params):
        return inner(params["x"])

    return loss


def jitted(body: str):
    return jax.jit(_define("core", body))


def run(out, loss=None, options=None, **kwargs):
    loss = partial(quadratic, center=0.5) if loss is None else loss
    return bpjax.sweep(loss, init, "sgd", GRID, steps=10, out=out, progress=False,
                       options=options, **kwargs)


def constant(value):
    sys.modules[__name__].CENTER = value
    return {"loss": global_loss}


def helper_body(body):
    _define("helper", body)
    return {"loss": global_loss}


# kind: (make(old), make(new) as keywords of run, what the refusal names: see refusal);
# make is called again for the unchanged rerun, so it builds everything afresh
CHANGES = {
    "a global constant": (lambda: constant(0.5), lambda: constant(0.7),
                          "loss_fn.CENTER: stored 0.5, now 0.7"),
    "a helper's body": (lambda: helper_body("x ** 2"), lambda: helper_body("x ** 4"),
                        "loss_fn.helper: stored"),
    "a partial's keyword": (lambda: {"loss": partial(quadratic, center=0.5)},
                            lambda: {"loss": partial(quadratic, center=0.7)},
                            "loss_fn.center: stored 0.5, now 0.7"),
    "a callable object's attribute": (lambda: {"loss": Quadratic(0.5)},
                                      lambda: {"loss": Quadratic(0.7)},
                                      "loss_fn.center: stored 0.5, now 0.7"),
    "a bound method's instance": (lambda: {"loss": Quadratic(0.5).loss},
                                  lambda: {"loss": Quadratic(0.7).loss},
                                  "loss_fn.self.center: stored 0.5, now 0.7"),
    "a jitted function's body": (lambda: {"loss": jitted("(x['x'] - 0.5) ** 2")},
                                 lambda: {"loss": jitted("(x['x'] - 0.7) ** 2")},
                                 "loss_fn.code: stored"),
    "a closure two deep": (lambda: {"loss": nested(0.5)}, lambda: {"loss": nested(0.7)},
                           "loss_fn.inner: stored"),
    "a fresh lambda": (lambda: {"loss": lambda p: (p["x"] - 0.5) ** 2},
                       lambda: {"loss": lambda p: (p["x"] - 0.5) ** 3}, "loss_fn.code: stored"),
    "target": (lambda: {"target": 0.1}, lambda: {"target": 0.2}, "target: stored 0.1, now 0.2"),
    "stop_at_target": (lambda: {"target": 0.1}, lambda: {"target": 0.1, "stop_at_target": True},
                       "stop_at_target: stored false, now true"),
    "Options.fingerprint": (lambda: {"options": bpjax.Options(fingerprint="data v1")},
                            lambda: {"options": bpjax.Options(fingerprint="data v2")},
                            'fingerprint: stored "data v1", now "data v2"'),
}


@pytest.fixture(autouse=True)
def _restore():
    yield
    sys.modules[__name__].CENTER = 0.5
    _define("helper", "x ** 2")


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_change_is_refused_naming_it_and_the_same_inputs_load(kind, tmp_path, capsys):
    old, new, names = CHANGES[kind]
    first = run(tmp_path, **old())
    again = run(tmp_path, **old())  # everything built again: no false refusal
    assert "holds this finished sweep; loading it" in capsys.readouterr().err
    assert again.meta["fingerprint"] == first.meta["fingerprint"]
    with pytest.raises(ValueError, match=r"holds a different sweep \(.*" + refusal(names)):
        run(tmp_path, **new())


def refusal(names: str) -> str:
    """The refusal's pattern: ``"loss_fn.center: ..."`` is part ``center`` of loss_fn,
    named after loss_fn's digests (``loss_fn: stored "1f..", now "9c.." (center: ...)``)."""
    head, _, rest = names.partition(": ")
    function, dot, part = head.partition(".")
    if not dot:
        return re.escape(names)
    return re.escape(f"{function}: stored ") + r'"\w+", now "\w+" \(.*' + re.escape(
        f"{part}: {rest}")


def test_x64_is_refused(tmp_path, capsys):
    run(tmp_path)
    with jax.enable_x64(True), pytest.raises(ValueError, match="x64: stored false, now true"):
        run(tmp_path)
    run(tmp_path)
    assert "holds this finished sweep" in capsys.readouterr().err


def test_a_change_mid_sweep_is_refused_before_mixing_chunks(tmp_path, monkeypatch):
    def killed(self, result, external=None):
        raise KeyboardInterrupt

    # two chunks, each committed, then killed before result.npz
    monkeypatch.setattr(bpjax.checkpoint.Store, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, partial(quadratic, center=0.5), chunk_size=2)
    monkeypatch.undo()
    assert {"chunk-0-0.npz", "chunk-0-1.npz"} <= {p.name for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=refusal("loss_fn.center: stored 0.5, now 0.7")):
        run(tmp_path, partial(quadratic, center=0.7), chunk_size=2)
    resumed = run(tmp_path, partial(quadratic, center=0.5), chunk_size=2)
    np.testing.assert_array_equal(resumed.loss, run(None, partial(quadratic, center=0.5)).loss)


RNG = np.random.default_rng(0)  # state in C: no attribute shows it


def rng_loss(params):
    return (params["x"] - RNG.uniform()) ** 2  # (read at trace time)


def test_what_it_cannot_see_is_warned_of_once_and_the_option_silences_it(tmp_path):
    bpjax.fingerprint._warned.clear()
    with pytest.warns(UnseenInputWarning, match=r"loss_fn: RNG \(state in C.*Generator\).*"
                      r"Options\(fingerprint=\.\.\.\)"):
        run(tmp_path / "a", rng_loss)
    run(tmp_path / "a", rng_loss)  # (warned once: warnings are errors here)
    stored = (tmp_path / "a" / "sweep.json").read_text()
    assert "numpy.random._generator.Generator" in stored and "0x" not in stored
    bpjax.fingerprint._warned.clear()
    run(tmp_path / "b", rng_loss, options=bpjax.Options(fingerprint={"rng": 0}))


def test_a_fingerprint_that_is_not_json_is_refused_before_running():
    with pytest.raises(TypeError, match="fingerprint=.*JSON value"):
        run(None, options=bpjax.Options(fingerprint={1, 2}))


def test_digests_follow_wrappers_stop_at_cycles_and_name_libraries():
    cycle = {"a": 1}
    cycle["self"] = cycle
    assert digest(cycle) == digest(cycle)
    assert digest(jax.jit(nested(0.5))) != digest(jax.jit(nested(0.7)))
    assert digest(jax.vmap(nested(0.5))) != digest(jax.vmap(nested(0.7)))
    assert digest(jax.grad(nested(0.5))) == digest(jax.grad(nested(0.5)))
    # a library function is named, not walked; what it closes over is walked
    unseen = []
    assert digest(jnp.sin, unseen) != digest(jnp.cos, unseen) and not unseen
    assert digest(bpjax.nets.mlp([2, 3, 1]).init) != digest(bpjax.nets.mlp([2, 5, 1]).init)
    deep = [1.0]
    for _ in range(40):
        deep = [deep]
    digest(deep, unseen, "deep")
    assert unseen and "nested deeper than" in unseen[0]
    assert digest_parts(Quadratic(0.5))["center"] == 0.5
