"""``bpjax.Record``: what a sweep records, one object; the old keywords give the same bits."""

import jax
import numpy as np
import pytest

import bpjax
from bpjax import engine, recorders


def quartic_sweep(**kw):
    return bpjax.sweep(lambda p: p["x"] ** 4, lambda c, k: {"x": c["x0"]}, "sgd",
                       bpjax.Grid(lr=[0.01, 0.2], x0=[0.5, 2.0]), 100, progress=False, **kw)


def test_a_record_and_the_old_keywords_give_the_same_bits():
    new = quartic_sweep(record=bpjax.Record(every=10, params=False, target=1e-2,
                                            stop_at_target=True, metrics=["grad_norm"]))
    old = quartic_sweep(record_every=10, record_params=False, target=1e-2, stop_at_target=True,
                        metrics=["grad_norm"])
    for name in ("loss", "final_loss", "reached_at", "min_loss", "min_step", "diverged_at"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name))
    np.testing.assert_array_equal(new.metrics["grad_norm"], old.metrics["grad_norm"])
    assert new.params is None
    # d/dx x^4 = 4 x^3 at every record, by hand, for a run that does not stop early
    x = np.float32(2.0)
    norms = [abs(4 * x**3)]
    for t in range(1, 101):
        x = x - np.float32(0.01) * 4 * x**3
        if t % 10 == 0:
            norms.append(abs(4 * x**3))
    np.testing.assert_allclose(new.metrics["grad_norm"][0, 1], norms, rtol=1e-5)
    summary = quartic_sweep(record=bpjax.Record(every=10, trajectories=False))
    np.testing.assert_array_equal(summary.loss, quartic_sweep(record_every=10,
                                                              record="summary").loss)
    assert summary.loss.shape == (2, 2, 2)  # the start and the end only


def test_record_given_twice_or_wrong_is_refused_before_compiling():
    with pytest.raises(TypeError, match=r"\['every'\] were given as keywords too"):
        quartic_sweep(record=bpjax.Record(every=10), record_every=5)
    with pytest.raises(ValueError, match=r"record must be 'full' .*, 'summary' .* or a bpjax"):
        quartic_sweep(record="everything")
    with pytest.raises(TypeError, match="Record fields"):
        quartic_sweep(recrd_every=10)


def test_a_recorder_is_two_pure_functions_a_segment_runs_at_every_record():
    # a recorder of one's own, run by the engine: the running maximum of |x| and x itself
    peak = recorders.Recorder(
        lambda obs: abs(obs.params["x"]),
        lambda state, obs: (jax.numpy.maximum(state, abs(obs.params["x"])), obs.params["x"]))
    kept = {"peak": peak, "summary": recorders.summary(0.0)}
    tx = bpjax.optim.sgd(0.3)
    loss = lambda p, batch: (p["x"] - 1.0) ** 2  # noqa: E731

    def run(x0):
        carry = engine.init_carry({"x": x0}, tx, loss, engine.Batching(), None, kept)
        return engine.run_segment(carry, 0, 4, 2, tx, loss, recorders=kept)

    carry, records, _ = jax.jit(run)(np.float32(-3.0))
    xs = [np.float32(-3.0)]
    for _ in range(8):  # x <- x - 0.3 * 2 (x - 1)
        xs.append(xs[-1] - np.float32(0.3) * 2 * (xs[-1] - 1))
    np.testing.assert_allclose(records["peak"], xs[2::2], rtol=1e-6)
    assert float(carry.recorded["peak"]) == pytest.approx(3.0)  # |x0|, the largest
    assert records["summary"] is None and int(carry.summary.argmin) == 8
