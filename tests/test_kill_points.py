"""The exhaustive kill test (issue 19, item 2): a small 3-optimizer, multi-chunk streamed
sweep is run once with every file operation bpjax performs in its folder recorded
(tests/kill_case.py); the folder as a SIGKILL before or after each operation leaves it
is resumed, and must finish bit-identical to the uninterrupted sweep. Real SIGKILLs and
SIGINTs at some of those points check that the recorded folders are what a kill leaves.
The small sweep has 129 operations (258 kill points, 73 distinct folders); CI resumes
all 73 (~8 s) and sends 8 real SIGKILLs and 3 SIGINTs (~30 s).

``BPJAX_KILL_TEST=full`` SIGKILLs and SIGINTs a process at every one of the 258 points
(about 6 + 7 minutes on 2 cores), and ``KILL_CASE=big`` runs a bigger sweep (12
configurations in 3 chunks of 4, 4 segments: 500 points, 142 distinct folders).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bpjax
from bpjax import io

sys.path.insert(0, os.path.dirname(__file__))
import kill_case  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "kill_case.py")
FULL = os.environ.get("BPJAX_KILL_TEST") == "full"


def child(out, mode, arg, timeout=120):
    return subprocess.run([sys.executable, WORKER, str(out), mode, str(arg)], timeout=timeout,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The recorded run: its operations and the distinct folders they passed through."""
    where = tmp_path_factory.mktemp("kill")
    states = where / "states"
    states.mkdir()
    proc = child(where / "out", "record", states)
    assert proc.returncode == 0 and proc.stdout.strip() == "finished", proc.stderr[-3000:]
    ops = json.loads((states / "ops.json").read_text())
    return where, states, ops, bpjax.load(where / "out" / "result.npz")


@pytest.fixture(scope="module")
def reference():
    return kill_case.run()


def same(a, b):
    for name in ("loss", "params", "final_params", "diverged_at", "min_loss", "min_step",
                 "final_loss"):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, dict):
            x, y = x["w"], y["w"]
        np.testing.assert_array_equal(x, y, err_msg=name)


def resumes(folder, reference) -> None:
    """Resumes ``folder`` (in this process) and checks it finishes exactly, cleanly."""
    same(kill_case.run(folder), reference)
    left = sorted(os.listdir(folder))
    assert left == ["history-0.npy", "history-1.npy", "result.npz", "sweep.json"], left


def test_a_kill_before_or_after_any_file_operation_resumes_bit_identically(
        recorded, reference, tmp_path):
    where, states, ops, finished = recorded
    same(finished, reference)
    # Every operation, in both threads: the lock, sweep.json, the history files' creation,
    # each progress.npz and chunk file (temporary file, np.savez, fsync, rename, folder
    # fsync), each chunk's rows (open, write, fsync), result.npz and the clean-up.
    kinds = {(op["what"], op["file"]) for op in ops}
    assert {("replace", "progress.npz"), ("replace", "chunk-2-1.npz"), ("replace", "result.npz"),
            ("write", "history-1.npy"), ("fsync", "history-0.npy"), ("remove", ".lock"),
            ("np.savez", ".tmp-*"), ("flock", ".lock")} <= kinds
    assert {op["label"].split(":")[0] for op in ops} == {"main", "writer"}
    points = 2 * len(ops)  # before and after each
    distinct = sorted({op[when] for op in ops for when in ("before", "after")})
    if not kill_case.BIG:  # (a new file operation in bpjax adds points: update these)
        assert (points, len(ops), len(distinct)) == (258, 129, 73)
    for state in distinct:
        folder = tmp_path / state
        shutil.copytree(states / state, folder) if os.listdir(states / state) else None
        try:
            resumes(folder, reference)
        except Exception as e:
            op = next(op for op in ops if state in (op["before"], op["after"]))
            raise AssertionError(f"{state} (around {op}) did not resume: {e}") from e
        shutil.rmtree(folder)
    print(f"\n{points} kill points ({len(ops)} operations), {len(distinct)} distinct folders")


def _labels(ops, n: int | None) -> list[str]:
    """Where the real signals go: every point (``n`` None), or ``n`` spread over them."""
    points = [op["label"] + end for op in ops for end in ("", ":after")]
    return points if n is None else points[len(points) // (2 * n)::len(points) // n]


def _contents(folder) -> dict:
    """A folder's files, comparable across runs: arrays for .npz (a zip holds times),
    bytes for the others, a count of temporary files, no lock (it holds the pid)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        kind = kill_case._kind(name)
        if kind == ".lock":
            continue
        if kind != name:
            out[kind] = out.get(kind, 0) + 1
        elif name.endswith(".npz"):
            out[name] = {k: v.tobytes() for k, v in io.read_npz(folder / name).items()}
        else:
            out[name] = (folder / name).read_bytes()
    return out


@pytest.mark.parametrize("mode", ["kill", "int"])
def test_real_signals_leave_the_recorded_folders_and_resume(recorded, reference, tmp_path,
                                                            mode):
    where, states, ops, _ = recorded
    labels = _labels(ops, None if FULL else {"kill": 8, "int": 3}[mode])
    by_label = {op["label"]: op for op in ops}
    interrupted = 0
    alone = next(i for i, op in enumerate(ops) if op["label"].startswith("writer"))
    for label in labels:
        out = tmp_path / label.replace(":", "-")
        proc = child(out, mode, label)
        if mode == "kill":
            assert proc.returncode == -9, (label, proc.stderr[-2000:])
            # (the other thread may be elsewhere than in the recorded run: each thread's
            # operations come in one order, their interleaving varies)
            op = by_label[label.removesuffix(":after")]
            if ops.index(op) < alone:  # the writer has not started: one order of operations
                kept = states / op["after" if label.endswith(":after") else "before"]
                assert (_contents(out) if out.exists() else {}) == _contents(kept), label
        else:  # one clean line, and the process ends (130, as after Ctrl-C)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            if proc.returncode == 0:  # (the signal came as the sweep ended: it finished)
                assert proc.stdout.strip() == "finished"
            else:
                interrupted += 1
                assert proc.returncode == 130, (label, proc.stderr[-2000:])
                assert lines == [f"bpjax: interrupted; rerun the same sweep to resume from "
                                 f"{out}"], (label, lines)
        if out.exists():
            resumes(out, reference)
    assert mode == "kill" or interrupted >= len(labels) // 2  # (the rest: at the very end)
