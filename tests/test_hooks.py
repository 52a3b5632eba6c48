"""``on_segment``: a callback at every segment boundary, with numbers the result confirms."""

import pytest

import bpjax
from bpjax import problems


def test_on_segment_reports_steps_runs_and_the_lowest_loss():
    seen = []
    grid = bpjax.Grid(lr=[0.01, 0.1, 0.3], x0=[0.5, 1.0, 1.5])  # lr 0.3, x0 1.5 diverges
    res = bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, ["sgd", "momentum"], grid,
                      100, record_every=10, segments=5, chunk_size=4, progress=False,
                      on_segment=seen.append)
    last = {}  # each chunk's last report: its end, or where every run had stopped
    for info in seen:
        last[info.optimizer, info.chunk] = info
    assert len(last) == 2 * res.meta["n_chunks"] and len(seen) <= 2 * res.meta["n_chunks"] * 5
    assert [i.step for i in seen[:5]] == [20, 40, 60, 80, 100]
    flat_min = res.min_loss.reshape(2, -1)
    flat_div = res.diverged.reshape(2, -1)
    for (name, chunk), info in last.items():
        assert info.step == 100 or info.live == 0
        o = ["sgd", "momentum"].index(name)
        lo = chunk * res.meta["chunk_size"]
        rows = slice(lo, lo + info.runs)
        assert info.diverged == flat_div[o, rows].sum()
        assert info.live == info.runs - info.diverged
        assert info.best_loss == flat_min[o, rows].min()
    assert sum(i.diverged for i in last.values()) == res.diverged.sum() > 0


def test_on_segment_must_be_callable():
    with pytest.raises(TypeError, match="on_segment must be callable"):
        bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, "sgd",
                    bpjax.Grid(lr=[0.1], x0=[1.0]), 10, on_segment="print")


def test_the_progress_bar_shows_in_a_terminal_and_in_jupyter_by_default():
    import io

    from bpjax.progress import Progress

    OutStream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    notebook, pipe = OutStream(), io.StringIO()
    for stream in (notebook, pipe):
        bar = Progress(10, "sweep", stream=stream)
        bar.update(10)
        bar.close()
    assert "100.0%" in notebook.getvalue() and pipe.getvalue() == ""
