"""Fail early and cleanly (issue 19, item 6): a configuration not finite at its start is
refused before any chunk trains, a sweep that cannot fit before anything compiles, and a
host callback that raises is an error, not a 60 s hang and an abort."""

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.sweep import callbacks, sizing

X0 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0]  # log(-1) is nan: the last chunk's


def log_loss(p):
    return jnp.log(p["x"]) ** 2


def start(config, key):
    return {"x": config["x0"]}


def log_sweep(out=None, x0=X0, **kw):
    return bpjax.sweep(log_loss, start, "sgd",
                       bpjax.Grid(lr=[0.1], x0=x0), steps=100, chunk_size=2, out=out,
                       progress=False, **kw)


def test_a_bad_start_in_the_last_chunk_is_refused_before_any_chunk_trains(tmp_path):
    segments = []
    for _ in range(2):  # and again at once on a rerun
        with pytest.raises(ValueError, match=r"not finite at the initial params for 1 "
                                             r"configuration\(s\), e.g. \[\{'lr': 0.1, "
                                             r"'x0': -1.0\}\]"):
            log_sweep(tmp_path, on_segment=segments.append)
        assert segments == []
        assert not any(n.startswith(("chunk-", "progress")) for n in os.listdir(tmp_path))
    # a resumed folder checks only the chunks that have not run
    good = log_sweep(tmp_path / "good", x0=X0[:-1] + [8.0])
    assert good.loss.shape == (1, 8, 101)


def test_the_upfront_check_is_one_small_program_cached_with_the_sweep(compiles):
    log_sweep(x0=X0[:-1] + [8.0])
    with compiles:
        log_sweep(x0=X0[:-1] + [9.0])
    assert compiles.count == 0


def test_a_sweep_whose_trajectories_cannot_fit_is_refused_before_compiling(tmp_path, compiles):
    run = lambda out, steps=10**10: bpjax.sweep(  # noqa: E731
        lambda p: p["x"] ** 2, lambda c, k: {"x": c["x0"]}, "sgd",
        bpjax.Grid(lr=[0.1, 0.2], x0=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), steps=steps, out=out,
        progress=False)
    with compiles:
        t0 = time.perf_counter()
        # 12 runs x (10**10 + 1) records of a float32 loss and x: 960 GB of files
        with pytest.raises(ValueError, match=r"this sweep's trajectories need 960 GB \(12 runs "
                                             r"x 10000000001 records x 8 bytes\) in "
                                             r"history-\*\.npy files in .*out, more than the "
                                             r".* free there: record less often .*"
                                             r"Record\(trajectories=False\)"):
            run(tmp_path / "out")
        with pytest.raises(ValueError, match=r"this sweep needs .* TB of memory, more than the "
                                             r".* available \(trajectories 960 GB .*\): record "
                                             r"less often .*; or give out= a folder"):
            run(None)
        assert time.perf_counter() - t0 < 5.0
    assert compiles.count == 0
    assert os.listdir(tmp_path / "out") == []  # no sweep.json: a smaller sweep may use it


def test_sizes_are_the_arrays_allocated(tmp_path, monkeypatch):
    run = lambda out: bpjax.sweep(  # noqa: E731
        lambda p: jnp.sum(p["w"] ** 2), lambda c, k: {"w": jnp.ones(3) * c["x0"]}, "adam",
        bpjax.Grid(lr=[0.1], x0=[1.0, 2.0]), steps=40, out=out, record_params=True,
        record_every=10, progress=False)
    done = run(tmp_path / "a")
    files = sum(os.path.getsize(tmp_path / "a" / f"history-{i}.npy") for i in range(2))
    # 2 runs x 5 records x (a loss and 3 params) x 4 bytes, and two 128-byte .npy headers
    assert files == 2 * 5 * 16 + 2 * 128
    monkeypatch.setattr(sizing, "free_disk", lambda folder: 100)
    with pytest.raises(ValueError, match=r"trajectories need 160 bytes \(2 runs x 5 records "
                                         r"x 16 bytes\) in history-\*\.npy files in .*b, more "
                                         r"than the 100 bytes free"):
        run(tmp_path / "b")
    np.testing.assert_array_equal(run(tmp_path / "a").loss, done.loss)  # finished: loads
    monkeypatch.setattr(sizing, "available_memory", lambda: 100)
    with pytest.raises(ValueError, match=r"needs \d+ bytes of memory, more than the 100 bytes "
                                         r"available \(trajectories 160 bytes"):
        run(None)


CALLBACK = """
import sys, warnings
import jax, jax.numpy as jnp, numpy as np
from jax.experimental import io_callback
import bpjax

def host(x):
    if float(x) > 2.5:
        raise RuntimeError("bad configuration on the host")
    return np.ones((), x.dtype)

def loss(p):
    x, out = jax.lax.stop_gradient(p["x"]), jax.ShapeDtypeStruct((), p["x"].dtype)
    if sys.argv[1] == "pure":
        s = jax.pure_callback(host, out, x, vmap_method="sequential")
    else:
        s = io_callback(host, out, x)
    return s * p["x"] ** 2

print(len(jax.devices()), "devices", flush=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        bpjax.sweep(loss, lambda c, k: {"x": c["x0"]}, "sgd",
                    bpjax.Grid(lr=[0.1], x0=[1.0, 2.0, 3.0, 4.0]), steps=20, progress=False)
    except Exception as e:
        print("raised", type(e).__name__, str(e).splitlines()[-1], flush=True)
print(*[str(w.message) for w in caught], sep="\\n")
"""


@pytest.mark.parametrize("kind", ["pure", "io"])
def test_a_raising_host_callback_is_an_error_not_an_abort_on_two_cpu_devices(kind):
    # Sharded over 2 CPU devices this waited 60 s in an all-reduce, then SIGABRT (rc -6).
    env = dict(os.environ, BPJAX_CPU_DEVICES="2")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CALLBACK, kind], env=env, timeout=50,
                          capture_output=True, text=True)
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 devices"
    assert lines[1] == "raised JaxRuntimeError RuntimeError: bad configuration on the host"
    assert lines[2].startswith(f"this sweep calls {kind}_callback: it runs on one device, "
                               "not 2")


def test_a_sweep_with_a_host_callback_runs_on_one_device():
    def loss(p):
        one = jax.pure_callback(lambda x: np.ones((), x.dtype),
                                jax.ShapeDtypeStruct((), p["x"].dtype),
                                jax.lax.stop_gradient(p["x"]), vmap_method="sequential")
        return one * p["x"] ** 2

    run = lambda loss, **kw: bpjax.sweep(  # noqa: E731
        loss, lambda c, k: {"x": c["x0"]}, "sgd", bpjax.Grid(lr=[0.1], x0=[1.0, 2.0, 3.0]),
        steps=20, progress=False, **kw)
    if len(jax.devices()) > 1:
        with pytest.warns(callbacks.HostCallbackWarning, match="runs on one device"):
            res = run(loss)
    else:
        res = run(loss)
    assert len(res.meta["devices"]) == 1
    np.testing.assert_array_equal(res.loss, run(lambda p: p["x"] ** 2, shard=False).loss)
    # jax.debug.callback runs on every device, with no collective: the sweep stays sharded
    debug = lambda p: (jax.debug.callback(lambda x: None, p["x"]), p["x"] ** 2)[1]  # noqa: E731
    assert len(run(debug).meta["devices"]) == len(jax.devices())  # (and no warning)


def test_the_checks_trace_init_and_the_loss_once_each():
    """The checks before a sweep compiles (shapes, unused axes, host callbacks) are one
    abstract trace: init runs twice in all (that trace and the compiled init), the loss
    five times (its first value, the start, one checked step, the compiled start and
    segment); before, the checks traced them part by part (5 and 8 times)."""
    calls = {"init": 0, "loss": 0}

    def init(config, key):
        calls["init"] += 1
        return {"x": config["x0"]}

    def loss(p):
        calls["loss"] += 1
        return p["x"] ** 4

    bpjax.sweep(loss, init, "sgd", bpjax.Grid(lr=[0.1], x0=[1.0, 2.0]), steps=10,
                record_every=5, progress=False)
    assert calls == {"init": 2, "loss": 5}


def test_the_one_trace_finds_what_the_part_by_part_trace_finds(monkeypatch):
    """Where the one trace fails, the checks trace part by part (so that an error names
    its part); on a sweep that works both find the same shapes, unused axes and host
    callbacks."""
    from bpjax.sweep import plan as plans
    from bpjax.sweep import trace

    def loss(p, batch):
        x, y = batch
        one = jax.pure_callback(lambda v: np.ones((), v.dtype),
                                jax.ShapeDtypeStruct((), p["w"].dtype),
                                jax.lax.stop_gradient(p["w"][0, 0]), vmap_method="sequential")
        return one * jnp.mean((x @ p["w"] - y) ** 2)

    def init(config, key):
        return {"w": config["scale"] * jax.random.normal(key, (3, 1))}

    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    grid = bpjax.Grid(lr=[0.1], scale=[1.0, 2.0], unused=[0, 1], seed=[0, 1])

    def found():
        trace._SHAPES.clear()
        with pytest.warns(plans.UnusedAxisWarning, match=r"\[.unused.\]"):
            p = plans.make_plan(loss, init, "adam", grid, 10, record_every=5, seed=0,
                                data=(x, y), batch_size=4, val_data=None,
                                record_params=True, record="full", target=None,
                                stop_at_target=False, metrics=None,
                                options=bpjax.Options(shard=False))
        t = trace.shapes(p.specs[0], p.flat, 0, p.inputs)
        return t._replace(carry=jax.tree.map(lambda s: (s.shape, s.dtype), t.carry),
                          params=jax.tree.map(lambda s: (s.shape, s.dtype), t.params),
                          records=jax.tree.map(lambda s: (s.shape, s.dtype), t.records))

    one = found()
    monkeypatch.setattr(trace, "_probe", lambda *a: 1 / 0)
    parts = found()
    assert one == parts
    assert one.unused >= {"unused"} and "scale" not in one.unused
    assert one.callbacks == {"pure_callback"}
