"""Sweeps killed at random points resume to exactly the uninterrupted result."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import bpjax
from bpjax import checkpoint

sys.path.insert(0, os.path.dirname(__file__))
import resume_case  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "resume_case.py")


@pytest.fixture(scope="module")
def reference():
    return resume_case.run()


def same(a, b):
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    np.testing.assert_array_equal(a.params["layers"][0]["w"], b.params["layers"][0]["w"])
    np.testing.assert_array_equal(a.final_params["layers"][1]["b"],
                                  b.final_params["layers"][1]["b"])


def test_out_folder_gives_the_same_result_and_reloads_it(reference, tmp_path, capsys):
    res = resume_case.run(tmp_path / "s")
    same(res, reference)
    # trajectories (loss, 4 params leaves) streamed to .npy files, the rest in result.npz
    assert sorted(os.listdir(tmp_path / "s")) == [f"history-{i}.npy" for i in range(5)] + [
        "result.npz", "sweep.json"]
    again = resume_case.run(tmp_path / "s")
    assert "holds this finished sweep" in capsys.readouterr().err
    same(again, reference)
    assert again.meta["fingerprint"] == res.meta["fingerprint"]


# Real SIGKILLs at random moments (tests/test_kill_points.py kills at every point in the
# code where a file changes); 20 with BPJAX_KILL_TEST=full.
KILLS = 20 if os.environ.get("BPJAX_KILL_TEST") == "full" else 8


def test_killed_at_random_points_resumes_bit_identically(reference, tmp_path):
    rng = np.random.default_rng(0)
    out, runs, kills, finished = tmp_path / "run0", 0, 0, 0
    while kills < KILLS:
        proc = subprocess.Popen([sys.executable, WORKER, str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.2, 2.0))  # during compile, segments or saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kills += 1
        # Resume a copy of whatever the kill left, in this process: it must finish exactly.
        copy = tmp_path / f"copy{kills}"
        shutil.copytree(out, copy) if out.exists() else None
        same(resume_case.run(copy), reference)
        shutil.rmtree(copy)
        if (out / checkpoint.RESULT).exists():  # it finished between kills: start another
            same(resume_case.run(out), reference)
            runs, finished = runs + 1, finished + 1
            out = tmp_path / f"run{runs}"
    assert kills == KILLS


def test_a_different_sweep_in_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "s"
    bpjax.sweep(resume_case.LOSS, resume_case.init, "sgd", {"lr": [0.1], "scale": [1.0]}, 20,
                data=bpjax.problems.xor(), out=out)
    with pytest.raises(ValueError, match=r"holds a different sweep \(.*steps: stored 20, now 40"):
        bpjax.sweep(resume_case.LOSS, resume_case.init, "sgd", {"lr": [0.1], "scale": [1.0]},
                    40, data=bpjax.problems.xor(), out=out)
    with pytest.raises(ValueError, match=r"grid: stored .*0.1.*now .*0.2"):
        bpjax.sweep(resume_case.LOSS, resume_case.init, "sgd", {"lr": [0.2], "scale": [1.0]},
                    20, data=bpjax.problems.xor(), out=out)
    x, y = bpjax.problems.xor()
    with pytest.raises(ValueError, match="data: stored"):
        bpjax.sweep(resume_case.LOSS, resume_case.init, "sgd", {"lr": [0.1], "scale": [1.0]},
                    20, data=(x, 1 - y), out=out)
    with pytest.raises(ValueError, match="loss_fn: stored"):
        bpjax.sweep(lambda p, b: resume_case.LOSS(p, b) * 2, resume_case.init, "sgd",
                    {"lr": [0.1], "scale": [1.0]}, 20, data=bpjax.problems.xor(), out=out)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    store = checkpoint.Store(tmp_path, {"x": 1})
    store.open({"chunk": 1, "seg_records": 1})
    store.save_progress(0, 0, 3, [np.arange(4.0)], {"loss": np.ones((2, 4))})
    before = (tmp_path / checkpoint.PROGRESS).read_bytes()

    real = np.savez

    def disk_full(f, **arrays):
        real(f, **arrays)
        f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save_progress(0, 0, 5, [np.arange(4.0) * 2], {"loss": np.zeros((2, 6))})
    monkeypatch.undo()
    assert (tmp_path / checkpoint.PROGRESS).read_bytes() == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp")] == []
    back = store.load_progress()
    assert back["position"].tolist() == [0, 0, 3]
    np.testing.assert_array_equal(back["carry/0"], np.arange(4.0))


def test_unwritable_out_is_refused_before_compiling(tmp_path, compiles):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with compiles, pytest.raises(ValueError, match="not a writable folder"):
        bpjax.sweep(resume_case.LOSS, resume_case.init, "sgd", {"lr": [0.1], "scale": [1.0]},
                    20, data=bpjax.problems.xor(), out=blocker / "sub")
    assert compiles.count == 0


def test_killed_mid_chunk_of_a_later_optimizer_resumes_bit_identically(reference, tmp_path,
                                                                          monkeypatch):
    # SGD's state has no arrays, Adam's has three per param: a resume must read the
    # carry of the optimizer it was killed in (it used the first optimizer's).
    real = checkpoint.Store.save_progress

    def crash_in_adam(self, o, c, done, *a, **k):
        real(self, o, c, done, *a, **k)
        if o == 1 and c == 1 and done >= 40:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_progress", crash_in_adam)
    with pytest.raises(KeyboardInterrupt):
        resume_case.run(tmp_path / "s")
    monkeypatch.setattr(checkpoint.Store, "save_progress", real)
    saved = np.load(tmp_path / "s" / checkpoint.PROGRESS)
    assert saved["position"][:2].tolist() == [1, 1]  # killed inside Adam's second chunk
    same(resume_case.run(tmp_path / "s"), reference)
