"""The optimistic segment (plain steps between records) against the per-step guard."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np

import bpjax
from bpjax import engine, problems, recorders

SWEEP = importlib.import_module("bpjax.sweep.segments")  # where segments are run


def segment(optimistic, stop=False, unroll=1):
    """Quartic GD over a grid of (lr, x0), one segment of 6 records x 5 steps, vmapped."""

    def one(x0, lr, target):
        tx = bpjax.optim.sgd(lr)
        loss = lambda p, batch: problems.quartic(p)  # noqa: E731
        kept = {"loss": recorders.loss(), "params": recorders.params(),
                "summary": recorders.summary(target)}
        carry = engine.init_carry({"x": x0}, tx, loss, engine.Batching(), None, kept)
        return engine.run_segment(carry, jnp.int32(0), 6, 5, tx, loss, recorders=kept,
                                  stop=stop, optimistic=optimistic, unroll=unroll)

    lr, x0 = (a.ravel() for a in np.meshgrid(np.geomspace(0.001, 3.0, 12),
                                             np.linspace(0.2, 2.0, 10), indexing="ij"))
    return jax.jit(jax.vmap(one, (0, 0, None)))(jnp.asarray(x0, jnp.float32),
                                                jnp.asarray(lr, jnp.float32), 1e-3)


def test_runs_that_stay_finite_get_the_guarded_bits_and_the_others_are_flagged():
    for stop in (False, True):
        (guarded, rec_g, _), (fast, rec_f, broken) = segment(False, stop), segment(True, stop)
        diverged = np.asarray(guarded.diverged_at) >= 0
        assert 0 < diverged.sum() < diverged.size  # both kinds in the grid
        # flagged: exactly the runs the guard froze in this segment
        np.testing.assert_array_equal(np.asarray(broken), diverged)
        ok = ~diverged
        for g, f in zip(jax.tree.leaves((guarded, rec_g)), jax.tree.leaves((fast, rec_f))):
            np.testing.assert_array_equal(np.asarray(f)[ok], np.asarray(g)[ok])
        if stop:  # some runs stopped at the target, and kept their carry in both modes
            stopped = np.asarray(guarded.summary.reached_at) > 0
            assert stopped[ok].any()


def test_a_sweep_replays_only_segments_where_a_run_diverges():
    init = lambda c, k: {"x": c["x0"]}  # noqa: E731
    calm = bpjax.sweep(problems.quartic, init, "sgd", bpjax.Grid(lr=[0.01, 0.02], x0=[0.5, 1.0]),
                       100, record_every=10, progress=False)
    assert calm.meta["replays"] == 0 and not calm.diverged.any()
    # x0 = 1.5 diverges at lr 0.3 within 4 steps, at lr 0.1 never; 10 segments of 10 steps
    wild = bpjax.sweep(problems.quartic, init, "sgd", bpjax.Grid(lr=[0.1, 0.3], x0=[0.5, 1.5]),
                       100, record_every=10, progress=False, compact=False, segments=10)
    assert wild.diverged.sum() == 1 and wild.diverged_at[1, 1] <= 10
    assert wild.meta["replays"] == 1


def test_unrolling_the_steps_between_records_changes_nothing():
    # (sweep unrolls 10 steps per loop iteration for small nets on GPU)
    for optimistic in (False, True):
        plain, unrolled = segment(optimistic), segment(optimistic, unroll=5)
        for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(unrolled)):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def square(p):
    return p["x"] ** 2


def test_late_divergence_replays_and_discards_the_segment_run_ahead(monkeypatch):
    # GD on x^2 grows like |1 - 2 lr|^t for lr > 1: these runs overflow at steps ~130 to
    # ~900 of 1000, in different segments, while the segment after each is running ahead
    # (as on GPU; on the CPU a sweep does not run ahead unless told to).
    monkeypatch.setitem(SWEEP.RUN_AHEAD, jax.default_backend(), True)
    grid = bpjax.Grid(lr=[0.1, 0.4, 1.025, 1.05, 1.1, 1.2], x0=[1.0, 3.0])
    init = lambda c, k: {"x": c["x0"]}  # noqa: E731
    kw = dict(record_every=10, progress=False)
    runs = {compact: bpjax.sweep(square, init, "sgd", grid, 1000, compact=compact, segments=10,
                                 **kw)
            for compact in (False, True)}
    one = bpjax.sweep(square, init, "sgd", grid, 1000, segments=1, compact=False, **kw)
    for res in runs.values():
        for name in ("loss", "diverged_at", "min_loss", "final_loss"):
            np.testing.assert_array_equal(getattr(res, name), getattr(one, name))
        np.testing.assert_array_equal(res.params["x"], one.params["x"])
    ahead = runs[False].meta
    assert ahead["replays"] >= 3 and ahead["discarded"] >= 3  # one per segment with a death
    # diverged_at as a NumPy loop finds it
    for i, lr in enumerate(grid.axes["lr"]):
        for j, x0 in enumerate(grid.axes["x0"]):
            x, t = np.float32(x0), 0
            with np.errstate(over="ignore", invalid="ignore"):
                while np.isfinite(x) and np.isfinite(x**2) and np.isfinite(2 * x) and t < 1000:
                    x, t = np.float32(x - np.float32(lr) * (2 * x)), t + 1
            expected = t if t < 1000 or not np.isfinite(x**2) else -1
            assert one.diverged_at[i, j] == expected, (lr, x0)
    assert (one.diverged_at[2:] > 100).all()  # late, as intended


def test_only_the_runs_that_broke_are_replayed(monkeypatch):
    # 280 runs; the 80 with lr > 1 overflow at steps ~440-520 (lr 1.05) and ~880-920
    # (lr 1.025): each segment where some break is run again on those rows only (a batch
    # of 64), and the result is the bits of replaying every row.
    grid = bpjax.Grid(lr=[0.1, 0.2, 0.3, 0.4, 0.45, 1.025, 1.05], x0=np.linspace(0.5, 3, 40))
    init = lambda c, k: {"x": c["x0"]}  # noqa: E731
    kw = dict(record_every=10, segments=10, compact=False, progress=False)
    part = bpjax.sweep(square, init, "sgd", grid, 1000, **kw)
    monkeypatch.setattr(SWEEP, "REPLAY_ROWS", 10**9)  # every row, as before
    full = bpjax.sweep(square, init, "sgd", grid, 1000, **kw)
    assert part.diverged.sum() == 80 and part.meta["replays"] == full.meta["replays"] >= 2
    assert part.meta["replayed_config_steps"] == part.meta["replays"] * 64 * 100
    assert full.meta["replayed_config_steps"] == full.meta["replays"] * 280 * 100
    for name in ("loss", "diverged_at", "min_loss", "min_step", "final_loss"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name))
    np.testing.assert_array_equal(part.final_params["x"], full.final_params["x"])
    assert part.meta["config_steps"] == full.meta["config_steps"] == 280 * 1000


def band(p):
    """-x, but infinite for x in (5, 5.5): GD with lr 1 walks x up by exactly 1 a step,
    so a run whose path lands in the band meets one infinite loss (its gradient and the
    next step stay finite) and goes on finite after it."""
    x = p["x"]
    return -x + jnp.where((x > 5) & (x < 5.5), jnp.inf, 0.0)


def test_a_non_finite_loss_met_between_records_is_flagged_though_the_run_recovers():
    x0 = np.arange(0, 1, 0.05, dtype=np.float32)  # 5 + frac(x0) in the band iff frac < .5

    def one(x0, optimistic):
        tx = bpjax.optim.sgd(1.0)
        loss = lambda p, batch: band(p)  # noqa: E731
        kept = {"loss": recorders.loss()}
        carry = engine.init_carry({"x": x0}, tx, loss, engine.Batching(), None, kept)
        return engine.run_segment(carry, jnp.int32(0), 1, 8, tx, loss, recorders=kept,
                                  optimistic=optimistic)

    guarded, _, _ = jax.vmap(lambda x: one(x, False))(x0)
    fast, _, broken = jax.vmap(lambda x: one(x, True))(x0)
    hit = (x0 > 0) & (x0 < 0.5)  # x = 5 + x0 at step 5
    np.testing.assert_array_equal(np.asarray(guarded.diverged_at), np.where(hit, 5, -1))
    # the optimistic pass ends finite for every run, yet flags exactly those
    assert np.isfinite(np.asarray(fast.loss)[~hit]).all()
    np.testing.assert_array_equal(np.asarray(broken), hit)
    ok = ~hit
    np.testing.assert_array_equal(np.asarray(fast.params["x"])[ok],
                                  np.asarray(guarded.params["x"])[ok])
    # and a sweep replays that segment: its runs freeze at step 5 as the guard says
    res = bpjax.sweep(band, lambda c, k: {"x": c["x0"]}, "sgd", bpjax.Grid(lr=[1.0], x0=x0),
                      20, record_every=4, segments=5, progress=False)
    np.testing.assert_array_equal(res.diverged_at[0], np.where(hit, 5, -1))
    x = [x0.copy()]
    for _ in range(20):  # a NumPy loop: x <- x - 1 * (-1), in float32
        x.append(x[-1] + np.float32(1.0))
    np.testing.assert_array_equal(res.final_params["x"][0], np.where(hit, x[4], x[20]))
    assert res.meta["replays"] == 1


def test_runs_dead_at_the_start_keep_their_carry_and_records_without_a_select_per_record():
    # optimistic and not stopping, dead runs step along and are put back at the end;
    # their records (loss, params, validation loss) must repeat their frozen state
    lr, x0 = (a.ravel() for a in np.meshgrid(np.geomspace(0.001, 0.1, 6),
                                             np.linspace(0.2, 1.0, 5), indexing="ij"))
    dead = np.arange(lr.size) % 3 == 0

    def one(x0, lr, dead, optimistic):
        tx = bpjax.optim.sgd(lr)
        loss = lambda p, batch: problems.quartic(p)  # noqa: E731
        val = lambda p: 2 * problems.quartic(p) + 1  # noqa: E731
        kept = {"loss": recorders.loss(), "params": recorders.params(),
                "best": recorders.best(val), "summary": recorders.summary(1e-3)}
        carry = engine.init_carry({"x": x0}, tx, loss, engine.Batching(), None, kept)
        carry = carry._replace(diverged_at=jnp.where(dead, 0, -1))
        return engine.run_segment(carry, jnp.int32(0), 6, 5, tx, loss, recorders=kept,
                                  optimistic=optimistic)[:2]

    args = (jnp.asarray(x0, jnp.float32), jnp.asarray(lr, jnp.float32), jnp.asarray(dead))
    guarded = jax.vmap(lambda *a: one(*a, False))(*args)
    fast = jax.vmap(lambda *a: one(*a, True))(*args)
    for g, f in zip(jax.tree.leaves(guarded), jax.tree.leaves(fast)):
        np.testing.assert_array_equal(np.asarray(f), np.asarray(g))
    carry, records = fast
    params = records["params"]
    start = np.float32(x0)
    np.testing.assert_array_equal(np.asarray(params["x"])[dead], start[dead, None].repeat(6, 1))
    assert (np.asarray(params["x"])[~dead, -1] != start[~dead]).all()  # the others moved
    assert (np.asarray(carry.best.step)[dead] == 0).all()  # and found no better params


def test_a_poisoned_step_changes_no_bit_where_finite_and_marks_what_is_not():
    # the optimistic loop's poison: a non-finite gradient element makes its own param
    # NaN, a non-finite loss every param; finite ones leave the update's bits (-0 too)
    tx = bpjax.optim.sgd(0.5)
    loss = lambda p, batch: jnp.sum(jnp.sqrt(jnp.abs(p["a"]))) + p["b"] ** 2  # noqa: E731
    params = {"a": jnp.array([0.0, 4.0, -0.0], jnp.float32), "b": jnp.float32(-0.0)}
    carry = engine.init_carry(params, tx, loss, engine.Batching(), None, {})
    assert np.isinf(np.asarray(carry.grad["a"])[[0, 2]]).all() and np.isfinite(carry.loss)
    plain, _ = engine.advance(carry, 0, tx, loss, engine.Batching(), None)
    new, finite = engine.advance(carry, 0, tx, loss, engine.Batching(), None, poison=True)
    a = np.asarray(new.params["a"])
    assert np.isnan(a[[0, 2]]).all() and a[1] == np.float32(4.0) - np.float32(0.5 * 0.25)
    assert np.asarray(new.params["b"]).tobytes() == np.asarray(plain.params["b"]).tobytes()
    assert not finite and not engine.finite(new)
    # finite loss and gradient: bit for bit the unpoisoned step, the sign of -0 kept
    ok = carry._replace(grad={"a": jnp.array([1.0, 0.25, 0.0], jnp.float32),
                              "b": jnp.float32(0.0)})
    plain, _ = engine.advance(ok, 0, tx, loss, engine.Batching(), None)
    new, _ = engine.advance(ok, 0, tx, loss, engine.Batching(), None, poison=True)
    for x, y in zip(jax.tree.leaves(new.params), jax.tree.leaves(plain.params)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert np.signbit(np.asarray(new.params["b"]))
    # a non-finite loss: every param
    bad = ok._replace(loss=jnp.float32(jnp.inf))
    new, _ = engine.advance(bad, 0, tx, loss, engine.Batching(), None, poison=True)
    assert all(np.isnan(np.asarray(x)).all() for x in jax.tree.leaves(new.params))
