"""bpjax.sweep against bpjax.train run alone on each configuration, and its invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import initializers, losses, nets, problems

NET = nets.mlp([2, 4, 1], activation="tanh")
LOSS = losses.supervised(NET.apply, "half_mse")
DATA = problems.xor()


def init_fn(config, key):
    return NET.init(key, w_init=initializers.uniform(config["scale"]))


GRID = bpjax.Grid(lr=[0.05, 0.2, 0.5], scale=[0.5, 1.0], seed=[0, 1])


@pytest.fixture(scope="module")
def result():
    return bpjax.sweep(LOSS, init_fn, ["sgd", "adam"], GRID, 200, record_every=10, data=DATA)


def test_result_has_named_axes(result):
    assert result.dims == ("optimizer", "lr", "scale", "seed")
    assert result.loss.shape == (2, 3, 2, 2, 21)
    assert result.coords["step"].tolist() == list(range(0, 201, 10))
    assert result.params["layers"][0]["w"].shape == (2, 3, 2, 2, 21, 2, 4)
    assert result.final_params["layers"][1]["b"].shape == (2, 3, 2, 2, 1)
    np.testing.assert_array_equal(result.final_loss, result.loss[..., -1])


def test_every_configuration_equals_a_single_run(result):
    for opt, make in [("sgd", bpjax.optim.sgd), ("adam", bpjax.optim.adam)]:
        for lr in GRID.axes["lr"]:
            for scale in GRID.axes["scale"]:
                for seed in GRID.axes["seed"]:
                    one = result.sel(optimizer=opt, lr=lr, scale=scale, seed=seed)
                    start = jax.tree.map(lambda a: a[0], one.params)
                    run = bpjax.train(LOSS, start, make(lr), 200, record_every=10, data=DATA)
                    w_run = run.final_params["layers"][0]["w"]
                    w_one = one.final_params["layers"][0]["w"]
                    if opt == "sgd" and jax.default_backend() == "cpu":  # bit-identical
                        np.testing.assert_array_equal(run.loss, one.loss)
                        np.testing.assert_array_equal(w_run, w_one)
                    else:  # Adam's sqrt/divide fuse differently under vmap, and GPU code
                        # depends on the batch size (SGD on an H100: 3e-5 apart): rounding
                        np.testing.assert_allclose(run.loss, one.loss, rtol=1e-3, atol=1e-6)
                        np.testing.assert_allclose(w_run, w_one, rtol=1e-3, atol=1e-4)


def test_seeds_give_different_inits_and_the_same_seed_the_same_init(result):
    w0 = result.params["layers"][0]["w"][..., 0, :, :]  # (opt, lr, scale, seed, 2, 4)
    assert not np.allclose(w0[..., 0, :, :], w0[..., 1, :, :])
    np.testing.assert_array_equal(w0[0], w0[1])  # same init for both optimizers
    np.testing.assert_array_equal(w0[:, 0], w0[:, 2])  # and for every lr
    again = bpjax.sweep(LOSS, init_fn, "sgd", GRID, 10, data=DATA)
    np.testing.assert_array_equal(again.params["layers"][0]["w"][..., 0, :, :], w0[0])


def test_a_diverging_configuration_poisons_nothing():
    grid = bpjax.Grid(lr=[0.01, 0.1, 0.3, 1.0], x0=[0.5, 1.5])
    res = bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, "sgd", grid, 300)
    # Analytic: GD on x^4 diverges iff |1 - 4 lr x^2| > 1 at the start (the sequence grows).
    lr, x0 = np.meshgrid(grid.axes["lr"], grid.axes["x0"], indexing="ij")
    expected = np.abs(1 - 4 * lr * x0**2) > 1
    np.testing.assert_array_equal(res.diverged, expected)
    assert np.all(np.isfinite(res.loss)) and np.all(np.isfinite(res.params["x"]))
    assert np.isfinite(res.final_loss.mean())
    for i, j in zip(*np.nonzero(~expected)):
        alone = bpjax.train(problems.quartic, {"x": x0[i, j]}, bpjax.optim.sgd(lr[i, j]), 300)
        np.testing.assert_array_equal(alone.loss, res.loss[i, j])
    # diverged_at is the first step whose iterate is not finite, as a NumPy loop finds it.
    for i, j in zip(*np.nonzero(expected)):
        x, t = np.float32(x0[i, j]), 0
        with np.errstate(over="ignore", invalid="ignore"):
            while np.isfinite(x) and np.isfinite(x**4) and np.isfinite(4 * x**3):
                x, t = np.float32(x - np.float32(lr[i, j]) * 4 * x**3), t + 1
        assert res.diverged_at[i, j] == t
        frozen = res.params["x"][i, j, t:]
        assert np.all(frozen == res.params["x"][i, j, t - 1])  # frozen at its last finite state


def test_chunks_segments_and_padding_do_not_change_a_bit(result):
    kwargs = dict(record_every=10, data=DATA)
    assert result.meta["segments"] == 1  # a short sweep: one segment (see the next test)
    for extra in [dict(chunk_size=5), dict(segments=10), dict(segments=7, chunk_size=4)]:
        other = bpjax.sweep(LOSS, init_fn, ["sgd", "adam"], GRID, 200, **kwargs, **extra)
        np.testing.assert_array_equal(other.loss, result.loss)
        np.testing.assert_array_equal(other.final_params["layers"][0]["w"],
                                      result.final_params["layers"][0]["w"])
        np.testing.assert_array_equal(other.diverged_at, result.diverged_at)


def test_segments_are_fewer_for_short_sweeps_unless_asked_for():
    # each segment costs a dispatch and a sync; by default a chunk is cut into at most
    # 10, each estimated at >= SEGMENT_SECONDS (a per-step floor + FLOPs at a fixed rate)
    init = lambda c, k: {"x": c["x0"]}  # noqa: E731
    grid = bpjax.Grid(lr=[0.01], x0=[0.5, 1.0])
    kw = dict(record_every=10, progress=False)
    assert bpjax.sweep(problems.quartic, init, "sgd", grid, 100, **kw).meta["segments"] == 1
    assert bpjax.sweep(problems.quartic, init, "sgd", grid, 100, segments=5,
                       **kw).meta["segments"] == 5
    steps = 10 * 2000  # x 5 us: 0.1 s estimated, 10 segments of 0.01 s
    assert bpjax.sweep(problems.quartic, init, "sgd", grid, steps, record_every=2000,
                       progress=False).meta["segments"] == 10
    assert bpjax.sweep(problems.quartic, init, "sgd", grid, steps // 2, record_every=1000,
                       progress=False).meta["segments"] == 5


def test_memory_budget_bounds_the_chunk():
    grid = bpjax.Grid(lr=np.linspace(0.01, 0.1, 64))
    small = bpjax.sweep(LOSS, init_fn_fixed, "sgd", grid, 20, data=DATA, max_memory=20_000)
    big = bpjax.sweep(LOSS, init_fn_fixed, "sgd", grid, 20, data=DATA)
    assert big.meta["n_chunks"] == 1 and small.meta["n_chunks"] > 1
    assert small.meta["chunk_size"] * small.meta["n_chunks"] >= 64
    np.testing.assert_array_equal(small.loss, big.loss)


def init_fn_fixed(config, key):
    return NET.init(jax.random.key(3))


def test_a_second_sweep_of_the_same_shape_does_not_recompile(compiles):
    grid = lambda lo: bpjax.Grid(lr=np.linspace(lo, 0.5, 6), seed=[0, 1])  # noqa: E731
    bpjax.sweep(LOSS, init_fn_fixed, "momentum", grid(0.1), 40, data=DATA)
    with compiles:
        res = bpjax.sweep(LOSS, init_fn_fixed, "momentum", grid(0.2), 40, data=DATA)
    assert compiles.count == 0
    assert res.sel(lr=0.2, seed=0).loss[-1] < res.sel(lr=0.2, seed=0).loss[0]


def test_loss_may_depend_on_the_configuration():
    def loss(params, config):
        return problems.sontag_loss(params["x"], config["a"])

    res = bpjax.sweep(loss, lambda c, k: {"x": c["x0"]}, "sgd",
                      bpjax.Grid(a=[-5.0, 2.0], x0=[0.0], lr=[0.02]), 50)
    for i, a in enumerate([-5.0, 2.0]):
        x, ref = np.float32(0.0), []
        for _ in range(51):  # E'(x) by hand: 2 (th(x) - 1) th'(x) + 2 a (th(ax) - 1) th'(ax)
            t1, t2 = np.tanh(x), np.tanh(np.float32(a) * x)
            ref.append((t1 - 1) ** 2 + (t2 - 1) ** 2)
            g = 2 * (t1 - 1) * (1 - t1**2) + 2 * np.float32(a) * (t2 - 1) * (1 - t2**2)
            x = np.float32(x - np.float32(0.02) * g)
        np.testing.assert_allclose(res.loss[i, 0, 0], ref, rtol=1e-5)


@pytest.mark.parametrize("every,segments", [(12, 1), (3, 4)])
def test_mini_batches_follow_a_numpy_sgd_loop(every, segments):
    # (3, 4): segments of 3 steps over epochs of 2, so a segment starts mid-epoch and the
    # epoch's permutation the loop keeps must be drawn again there, and moved on inside.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    lin = lambda p, b: jnp.mean((b[0] @ p["w"] - b[1]) ** 2)  # noqa: E731
    res = bpjax.sweep(lin, lambda c, k: {"w": jnp.zeros((3, 1))}, "sgd",
                      bpjax.Grid(lr=[0.05], seed=[0, 1]), 12, data=(x, y), batch_size=4,
                      record=bpjax.Record(every=every),
                      options=bpjax.Options(segments=segments, progress=False))
    from bpjax.engine import Batching
    from bpjax.sweep.compiled import bind, compiled  # noqa: F401 - the key each config gets

    for s in range(2):
        key = jax.random.fold_in(jax.random.key(0), s)
        _, data_key = jax.random.split(key)
        b = Batching((np.arange(10),), 4)
        idx = [np.asarray(b.batch(data_key, jnp.int32(t))[0]) for t in range(12)]
        # Every epoch (2 batches of 4, the remaining 2 dropped) visits 8 distinct examples.
        for e in range(6):
            assert len(set(np.concatenate(idx[2 * e:2 * e + 2]).tolist())) == 8
        w = np.zeros((3, 1), np.float32)
        for t in range(12):
            if t % every == 0:  # the loss on all the data at each record
                np.testing.assert_allclose(res.loss[0, s, t // every],
                                           np.mean((x @ w - y) ** 2), rtol=1e-5)
            xb, yb = x[idx[t]], y[idx[t]]
            w = w - np.float32(0.05) * (2 / 4) * xb.T @ (xb @ w - yb)
        np.testing.assert_allclose(res.final_params["w"][0, s], w, rtol=1e-5, atol=1e-6)
        full = np.mean((x @ res.final_params["w"][0, s] - y) ** 2)
        np.testing.assert_allclose(res.final_loss[0, s], full, rtol=1e-5)
    assert not np.allclose(res.final_params["w"][0, 0], res.final_params["w"][0, 1])


def test_save_and_load_round_trip(result, tmp_path):
    path = tmp_path / "r.npz"
    result.save(path)
    back = bpjax.load(path)
    assert back.dims == result.dims
    np.testing.assert_array_equal(back.loss, result.loss)
    np.testing.assert_array_equal(back.params["layers"][1]["w"], result.params["layers"][1]["w"])
    assert back.coords["optimizer"].tolist() == ["sgd", "adam"]
    assert back.meta["versions"]["jax"] == jax.__version__
    assert back.meta["fingerprint"] == result.meta["fingerprint"] and back.meta["format_version"]
    # numpy alone reads it, without pickle
    raw = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(raw["final_loss"], result.final_loss)


def test_load_rejects_truncated_and_tampered_files(result, tmp_path):
    path = tmp_path / "r.npz"
    result.save(path)
    blob = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        bpjax.load(tmp_path / "cut.npz")
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["loss"] = arrays["loss"].copy()
    arrays["loss"][0, 0, 0, 0, 0] += 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="checksum mismatch in 'loss'"):
        bpjax.load(tmp_path / "bad.npz")


def test_initial_params_are_the_params_a_sweep_starts_from(result):
    start = bpjax.initial_params(init_fn, GRID)
    recorded = result.params["layers"][0]["w"][0, ..., 0, :, :]  # optimizer 0, step 0
    np.testing.assert_array_equal(start["layers"][0]["w"], recorded)


def test_a_first_segment_that_fails_to_compile_ahead_is_compiled_by_the_call(monkeypatch):
    # the ahead thread's compile is an optimization: where it fails, the sweep compiles
    # the segment itself and gets the same bits
    import sys

    loop = sys.modules["bpjax.sweep.loop"]
    grid = bpjax.Grid(lr=[0.1, 0.3], seed=np.arange(4))
    run = lambda: bpjax.sweep(LOSS, lambda c, k: NET.init(k), ["sgd", "adam"], grid,  # noqa: E731
                              30, data=DATA, progress=False, fast_compile=True)
    ahead = run()
    failed = []

    def broken(plan, o, *args):
        failed.append(o)
        raise RuntimeError("no")

    monkeypatch.setattr(loop, "compile_first", broken)
    jax.clear_caches()
    itself = run()
    assert failed == [0, 1]
    np.testing.assert_array_equal(itself.loss, ahead.loss)


def test_a_thread_local_jax_context_compiles_each_segment_once():
    # the ahead thread cannot see a context of the caller's thread (here the matmul
    # precision): it compiles nothing, and the calls compile their own programs once
    import threading

    seen = []

    def listen(event, secs, fun_name=None, **kw):
        if event == "/jax/core/compile/backend_compile_duration" and fun_name == "jit(segment)":
            seen.append(threading.current_thread().name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    grid = bpjax.Grid(lr=[0.1, 0.2], seed=np.arange(3))
    try:
        with jax.default_matmul_precision("highest"):
            bpjax.sweep(LOSS, lambda c, k: NET.init(k), ["sgd", "adam"], grid, 17, data=DATA,
                        progress=False)
        assert seen == ["MainThread", "MainThread"]
        seen.clear()
        bpjax.sweep(LOSS, lambda c, k: NET.init(k), ["sgd", "adam"], grid, 17, data=DATA,
                    progress=False)
        assert seen == ["bpjax-compile-ahead", "bpjax-compile-ahead"]
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
