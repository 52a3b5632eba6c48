"""One writer per folder, dead writers' leftovers removed, and every damaged, misplaced
or crafted file refused by name (issue 19)."""

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import checkpoint, io
from bpjax.result_file import _digest

LAYOUT = {"chunk": 1, "seg_records": 2}
# Holds a Store on a folder, with a killed atomic_write's temporary file in it, until killed.
HOLDER = """
import sys, time
from bpjax import checkpoint, io
store = checkpoint.Store(sys.argv[1], {"x": 1})
def stall(f):
    f.write(b"half a file")
    f.flush()
    print("held", flush=True)
    time.sleep(120)
io.atomic_write(store.path(checkpoint.PROGRESS), stall, ".npz")
"""


def tiny(out, x0=(1.0, 2.0), **kw):
    return bpjax.sweep(lambda p: jnp.sum(p["w"] ** 2), lambda c, k: {"w": jnp.ones(2) * c["x0"]},
                       "sgd", bpjax.Grid(lr=[0.1], x0=list(x0)), steps=4, out=out,
                       progress=False, **kw)


def test_a_folder_held_by_another_process_is_refused_until_it_dies(tmp_path):
    folder = tmp_path / "big"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for attempt in (lambda: checkpoint.Store(folder, {"x": 1}), lambda: tiny(folder)):
            with pytest.raises(ValueError, match=rf"big is in use by process {holder.pid} "
                                                 r"\(a sweep is writing there\)"):
                attempt()
        assert [n for n in os.listdir(folder) if n.startswith(".tmp-")] != []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    # the OS dropped the dead holder's lock; its half-written file is removed, unread
    with checkpoint.Store(folder, {"x": 1}) as store:
        assert sorted(os.listdir(folder)) == [".lock"]
        assert store.load_progress() is None
    assert os.listdir(folder) == []


def test_one_store_per_folder_in_a_process_too(tmp_path):
    first = checkpoint.Store(tmp_path, {"x": 1})
    with pytest.raises(ValueError, match=rf"in use by process {os.getpid()}, this one"):
        checkpoint.Store(tmp_path, {"x": 1})
    first.close()
    with checkpoint.Store(tmp_path, {"x": 1}):
        pass
    checkpoint.Store(tmp_path, {"x": 1})  # dropped at once: its lock goes with it
    checkpoint.Store(tmp_path, {"x": 1})
    # the top folder under jax.distributed is opened by every process: no lock
    shared = [checkpoint.Store(tmp_path, {"x": 1}, lock=False) for _ in range(2)]
    assert shared[0].open(LAYOUT) is None and shared[1].open(LAYOUT) == LAYOUT


def test_leftovers_are_removed_only_by_the_lock_holder(tmp_path):
    names = [".tmp-k2j3.npz", ".tmp-x", ".write-test-4242"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    store = checkpoint.Store(tmp_path, {"x": 1})
    assert [n for n in os.listdir(tmp_path) if n.startswith((".tmp", ".write"))] == []
    store.close()
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    checkpoint.Store(tmp_path, {"x": 1}, lock=False)  # another process may be writing them
    assert sorted(os.listdir(tmp_path)) == names


def test_a_refused_folder_is_released(tmp_path):
    checkpoint.Store(tmp_path, {"x": 1}).open(LAYOUT)
    store = checkpoint.Store(tmp_path, {"x": 2})
    with pytest.raises(ValueError, match="holds a different sweep"):
        store.open(LAYOUT)
    checkpoint.Store(tmp_path, {"x": 1}).open(LAYOUT)  # (the refused one let go)


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\xff\xfe" + b,
                                    lambda b: b"[1, 2]", lambda b: b"{}"])
def test_a_damaged_sweep_json_is_refused_by_name(tmp_path, damage):
    checkpoint.Store(tmp_path, {"x": 1}).open(LAYOUT)
    path = tmp_path / checkpoint.SWEEP_JSON
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=r"sweep\.json is damaged .*delete the folder"):
        checkpoint.Store(tmp_path, {"x": 1}).open(LAYOUT)


def test_a_chunk_file_copied_over_another_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "o"

    def killed(self, result, external=None):
        raise KeyboardInterrupt

    # two chunks (of two: the CPU may show two devices, and a chunk spans them)
    run = lambda out: tiny(out, x0=(1.0, 2.0, 3.0, 4.0), chunk_size=2)  # noqa: E731
    monkeypatch.setattr(checkpoint.Store, "finish", killed)  # every chunk committed
    with pytest.raises(KeyboardInterrupt):
        run(out)
    monkeypatch.undo()
    assert {"chunk-0-0.npz", "chunk-0-1.npz"} <= set(os.listdir(out))
    shutil.copy(out / "chunk-0-0.npz", out / "chunk-0-1.npz")
    with pytest.raises(ValueError, match=r"chunk-0-1\.npz holds optimizer 0 chunk 0, expected "
                                         r"optimizer 0 chunk 1: delete it to recompute"):
        run(out)
    os.remove(out / "chunk-0-1.npz")
    again = run(out)  # that chunk recomputed
    np.testing.assert_array_equal(again.loss, run(None).loss)
    left = os.listdir(out)
    assert "result.npz" in left and not any(n.startswith(("chunk-", ".")) for n in left)


def test_chunk_rows_are_checked(tmp_path):
    store = checkpoint.Store(tmp_path, {"x": 1})
    store.open({"chunk": 16, "seg_records": 2})
    store.save_chunk(0, 1, {"diverged_at": np.zeros(16, np.int32)})
    assert store.load_chunk(0, 1)["diverged_at"].shape == (16,)
    with pytest.raises(ValueError, match=r"holds rows 16-31, expected 16-23: delete it"):
        store.load_chunk(0, 1, rows=(16, 24))


def test_a_full_disk_names_the_file_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    store = checkpoint.Store(tmp_path, {"x": 1})
    store.open(LAYOUT)
    store.save_progress(0, 0, 3, [np.arange(4.0)], {"loss": np.ones((2, 4))})
    before = (tmp_path / checkpoint.PROGRESS).read_bytes()

    def disk_full(f, **arrays):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    for write in (lambda: store.save_progress(0, 0, 5, [np.arange(4.0)], {}),
                  lambda: store.save_chunk(0, 0, {"diverged_at": np.zeros(1, np.int32)})):
        with pytest.raises(OSError, match=rf"could not write {re.escape(str(tmp_path))}/"
                                          r"(progress|chunk-0-0)"
                                          r"\.npz: No space left on device; the previous "
                                          "checkpoint is intact; free space and rerun to "
                                          "resume") as e:
            write()
        assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert (tmp_path / checkpoint.PROGRESS).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [".lock", "progress.npz", "sweep.json"]


def _npy_header(shape, dtype="<f8", head: bytes | None = None) -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (or saying ``head``)."""
    head = head or repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    pad = 64 - (10 + len(head) + 1) % 64
    return b"\x93NUMPY\x01\x00" + (len(head) + pad + 1).to_bytes(2, "little") + head + \
        b" " * pad + b"\n"


def _result_zip(path, members: dict[str, bytes], meta: dict,
                compress=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
        meta_npy = tmp = path.parent / "meta.npy"
        np.save(tmp, np.array(json.dumps(meta)))
        z.writestr("meta.json.npy", meta_npy.read_bytes())
        os.remove(tmp)


def _meta(sha256, **extra):
    return {"format": "bpjax-result", "format_version": 2, "dims": [], "trees": {},
            "sha256": sha256, **extra}


def test_load_refuses_a_crafted_huge_shape_without_allocating(tmp_path):
    path = tmp_path / "result.npz"
    _result_zip(path, {"loss": _npy_header((10**6, 10**6)) + b"\0" * 64},
                _meta({"loss": "0" * 64}))
    rss, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ValueError, match=r"result\.npz is not a readable bpjax result .*"
                                         r"'loss' declares shape \(1000000, 1000000\)"):
        bpjax.load(path)
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # KiB
    # the checkpoint's files are read the same way
    store = checkpoint.Store(tmp_path / "o", {"x": 1})
    store.open(LAYOUT)
    shutil.copy(path, store.chunk_name(0, 0))
    with pytest.raises(ValueError, match=r"chunk-0-0\.npz is damaged .*declares shape"):
        store.load_chunk(0, 0)


def test_load_refuses_a_zip_bomb_before_inflating_it(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_INFLATED", 1 << 20, raising=False)
    zeros = np.zeros(1 << 18)  # 2 MiB that deflate to 2 KiB
    path = tmp_path / "result.npz"
    _result_zip(path, {"loss": _npy_header(zeros.shape) + zeros.tobytes()},
                _meta({"loss": _digest(zeros)}), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 20_000
    with pytest.raises(ValueError, match=r"compressed arrays expand to more than 1048576"):
        bpjax.load(path)


def test_load_refuses_external_files_outside_its_folder(tmp_path):
    secret = np.arange(3.0)
    np.save(tmp_path / "secret.npy", secret)
    (tmp_path / "r").mkdir()
    for file in ["../secret.npy", str(tmp_path / "secret.npy"), "sub/secret.npy", ".."]:
        path = tmp_path / "r" / "result.npz"
        _result_zip(path, {}, _meta({"loss": _digest(secret)},
                                    external={"loss": [file, [3]]}))
        where = re.escape(f"refers to {file!r} outside its folder (for 'loss'): refused")
        with pytest.raises(ValueError, match=where):
            bpjax.load(path)


def test_a_garbage_npy_header_is_refused_by_name(tmp_path):
    # an unbalanced header: numpy's parser raises tokenize.TokenError (not a ValueError)
    header = _npy_header((2,), head=b"{'descr': '<f8', 'fortran_order': False, 'shape': (((")
    path = tmp_path / "r.npz"
    _result_zip(path, {"loss": header + bytes(16)}, _meta({"loss": "0" * 64}))
    with pytest.raises(ValueError, match=r"r\.npz is not a readable bpjax result .*'loss' has "
                                         "a damaged header"):
        bpjax.load(path)
