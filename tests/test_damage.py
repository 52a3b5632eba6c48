"""Nothing damaged is accepted (issue 19, item 4): each chunk file holds the sha256 of
its rows in every history file, checked on resume and before result.npz seals the
files; a missing, truncated or altered history file, or a chunk file in the wrong place,
is refused by name, saying what to do, and doing it gives the undamaged result."""

import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import checkpoint, io

# 8 configurations in 4 chunks of 2 (on 1 or 2 devices), for SGD and Adam: 8 chunk files
GRID = bpjax.Grid(lr=[0.05, 0.1], x0=[0.5, 1.0, 1.5, 2.0])


def loss(p):
    return jnp.sum((p["w"] - 0.3) ** 2)


def init(config, key):
    return {"w": jnp.array([1.0, -1.0]) * config["x0"]}


def run(out=None, **kw):
    return bpjax.sweep(loss, init, ["sgd", "adam"], GRID, 20, record_every=5,
                       chunk_size=2, out=out, progress=False, **kw)


@pytest.fixture(scope="module")
def reference():
    return run()


def same(a, b):
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.params["w"], b.params["w"])
    np.testing.assert_array_equal(a.final_params["w"], b.final_params["w"])
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A folder whose every chunk committed, killed before result.npz."""

    def killed(self, result, external=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(checkpoint.Store, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "o")
    names = sorted(os.listdir(tmp_path / "o"))
    assert [n for n in names if n.startswith("chunk-")] == [
        f"chunk-{o}-{c}.npz" for o in range(2) for c in range(4)]
    assert [n for n in names if n.startswith("history-")] == ["history-0.npy", "history-1.npy"]
    return tmp_path / "o"


def flip(path, offset=-1):
    """Flips one bit of the byte at ``offset``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def row_offset(path, o, row):
    """The byte where row ``row`` of optimizer ``o`` starts in a history file."""
    a = np.load(path, mmap_mode="r")
    return a.offset + (o * a.shape[1] + row) * a[0, 0].nbytes


def finishes_like(out, reference):
    same(run(out), reference)
    assert not any(n.startswith(("chunk-", "progress", ".")) for n in os.listdir(out))


def test_an_altered_history_row_is_refused_naming_its_chunk_and_recomputed(committed,
                                                                           reference):
    path = committed / "history-1.npy"  # the params: Adam's configuration 5, in chunk 2
    flip(path, row_offset(path, 1, 5) + 3)
    with pytest.raises(ValueError, match=r"history-1\.npy: rows 4-5 of optimizer 1, committed "
                                         r"by chunk-1-2\.npz, differ from the checksum "
                                         r"chunk-1-2\.npz holds of them; the file was changed "
                                         r"after that chunk finished: delete chunk-1-2\.npz"):
        run(committed)
    assert not (committed / "result.npz").exists()
    os.remove(committed / "chunk-1-2.npz")  # as told: that chunk alone is recomputed
    finishes_like(committed, reference)


@pytest.mark.parametrize("damage", ["missing", "truncated", "header"])
def test_a_lost_history_file_is_refused_naming_the_chunks_that_need_it(committed, reference,
                                                                      damage):
    path = committed / "history-0.npy"
    if damage == "missing":
        os.remove(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(b"\x93NUMPY\x01\x00" + path.read_bytes()[8:20])
    problem = "is missing" if damage == "missing" else "is damaged or truncated"
    with pytest.raises(ValueError, match=rf"history-0\.npy {problem}.*, but 8 committed chunk "
                                         r"file\(s\) \(chunk-0-0\.npz, chunk-0-1\.npz, "
                                         r"chunk-0-2\.npz, \.\.\.\) hold rows of it: delete "
                                         r"those chunk files to recompute"):
        run(committed)
    assert not path.exists() or damage != "missing"  # nothing recreated
    for name in os.listdir(committed):
        if name.startswith("chunk-"):
            os.remove(committed / name)
    finishes_like(committed, reference)


def test_history_rows_changed_mid_sweep_are_refused_before_the_result_seals(tmp_path,
                                                                             monkeypatch):
    real = checkpoint.Store.finish

    def damaged_then_finish(self, result, external=None):
        path = tmp_path / "o" / "history-0.npy"
        flip(path, row_offset(path, 0, 0))
        return real(self, result, external)

    monkeypatch.setattr(checkpoint.Store, "finish", damaged_then_finish)
    with pytest.raises(ValueError, match=r"history-0\.npy: rows 0-1 of optimizer 0, committed "
                                         r"by chunk-0-0\.npz, differ from the checksum"):
        run(tmp_path / "o")
    assert not (tmp_path / "o" / "result.npz").exists()


def test_a_history_file_deleted_mid_sweep_is_refused_before_the_result_seals(tmp_path,
                                                                              monkeypatch):
    real = checkpoint.Store.finish

    def deleted_then_finish(self, result, external=None):
        os.remove(tmp_path / "o" / "history-1.npy")
        return real(self, result, external)

    monkeypatch.setattr(checkpoint.Store, "finish", deleted_then_finish)
    with pytest.raises(ValueError, match=r"history-1\.npy: rows 0-1 of optimizer 0, committed "
                                         r"by chunk-0-0\.npz, cannot be read: the file is "
                                         r"missing; .*delete chunk-0-0\.npz"):
        run(tmp_path / "o")
    assert not (tmp_path / "o" / "result.npz").exists()


def test_chunk_files_moved_or_altered_are_refused_by_name(committed, reference):
    keep = committed.parent / "keep"
    shutil.copytree(committed, keep)
    shutil.copy(committed / "chunk-1-0.npz", committed / "chunk-0-0.npz")
    with pytest.raises(ValueError, match=r"chunk-0-0\.npz holds optimizer 1 chunk 0, expected "
                                         r"optimizer 0 chunk 0: delete it to recompute"):
        run(committed)
    shutil.copy(keep / "chunk-0-0.npz", committed / "chunk-0-0.npz")
    flip(committed / "chunk-0-3.npz", 200)  # inside an array: the zip's CRC-32 sees it
    with pytest.raises(ValueError, match=r"chunk-0-3\.npz is damaged .*delete it"):
        run(committed)
    # a chunk file without checksums (an older bpjax's) is not trusted either
    arrays = io.read_npz(keep / "chunk-0-3.npz")
    del arrays["blocks/files"], arrays["blocks/sha256"]
    np.savez(committed / "chunk-0-3.npz", **arrays)
    with pytest.raises(ValueError, match=r"chunk-0-3\.npz holds no checksum of its rows in "
                                         r"history-0\.npy .*: delete it to recompute"):
        run(committed)
    os.remove(committed / "chunk-0-3.npz")
    finishes_like(committed, reference)


def test_rows_not_yet_committed_are_recomputed_whatever_they_hold(tmp_path, monkeypatch,
                                                                  reference):
    # killed as chunk 2 of Adam was about to commit: its rows are written, not final
    real = checkpoint.Store.save_chunk

    def killed_at(self, o, c, *a, **k):
        if (o, c) == (1, 2):
            raise KeyboardInterrupt
        return real(self, o, c, *a, **k)

    monkeypatch.setattr(checkpoint.Store, "save_chunk", killed_at)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "o")
    monkeypatch.undo()
    for i in range(2):
        path = tmp_path / "o" / f"history-{i}.npy"
        for row in (4, 5, 7):  # chunk 2's rows and chunk 3's (never written)
            flip(path, row_offset(path, 1, row))
    finishes_like(tmp_path / "o", reference)


def test_a_history_file_half_created_before_any_chunk_committed_is_recreated(tmp_path,
                                                                             monkeypatch,
                                                                             reference):
    def killed(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_chunk", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "o")
    monkeypatch.undo()
    path = tmp_path / "o" / "history-1.npy"
    path.write_bytes(path.read_bytes()[:90])  # (killed while open_memmap wrote it)
    finishes_like(tmp_path / "o", reference)
