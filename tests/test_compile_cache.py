"""The persistent compilation cache: a new process loads a sweep's programs from disk.

Each case runs in a fresh process (the cache is read when JAX first compiles, and
``import bpjax`` sets it up), so none depends on this session's JAX state.

JAX times a load from the persistent cache with the same event as a compilation
(``/jax/core/compile/backend_compile_duration`` wraps both in jax 0.10.2), and
records ``/jax/compilation_cache/cache_hits`` for each load: so the XLA
compilations a process pays are the first count less the second.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs the representative sweep once per item of argv[1] (a comma-separated list of
# ``segments``, 0 for the default), each time with a fresh loss lambda (same code), and
# prints per call: events, XLA compilations, programs, final losses (hex).
PROBE = """
import json, sys
import jax
import numpy as np

n = {"compile": 0, "hits": 0, "misses": 0}
names = []

def on_duration(event, secs, fun_name=None, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        n["compile"] += 1
        names.append(fun_name)

def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_hits":
        n["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
        n["misses"] += 1

jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
import jax.numpy as jnp
import bpjax

def run(loss, segments):
    before, names[:] = dict(n), []
    r = bpjax.sweep(loss, lambda c, k: {"w": jnp.ones(3) * c["x0"]}, "sgd",
                    bpjax.Grid(lr=[0.1, 0.2], x0=[1.0, 2.0]), steps=20, progress=False,
                    segments=segments or None)
    out = {k: n[k] - before[k] for k in n}
    out.update(xla=out["compile"] - out["hits"], programs=list(names),
               final_loss=[float(x).hex() for x in np.ravel(r.final_loss)])
    return out

calls = [run(lambda p: jnp.sum(p["w"] ** 2), int(s)) for s in sys.argv[1].split(",")]
print(json.dumps({"calls": calls, "cache_dir": jax.config.jax_compilation_cache_dir,
                  "devices": jax.device_count()}))
"""

# What ``import bpjax`` left in JAX's cache settings.
SETTINGS = """
import json
import bpjax, jax
print(json.dumps({k: getattr(jax.config, k) for k in (
    "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes")}))
"""

_OURS = ("BPJAX_CACHE", "BPJAX_CPU_DEVICES", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR",
         "JAX_ENABLE_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "XDG_CACHE_HOME")


def python(code: str, *args: str, **env: str) -> tuple[dict, str]:
    """Runs ``code`` in a fresh process (2 CPU devices unless ``env`` says otherwise);
    returns its printed JSON and its stderr."""
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=180, env=clean | {"BPJAX_CPU_DEVICES": "2"} | env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A cold process (empty cache, two sweep calls), then a warm one (same cache dir)."""
    home = tmp_path_factory.mktemp("xdg")
    cold, _ = python(PROBE, "0,0", XDG_CACHE_HOME=str(home))
    warm, _ = python(PROBE, "0", XDG_CACHE_HOME=str(home))
    return home, cold, warm


@pytest.fixture(scope="module")
def off(tmp_path_factory):
    home = tmp_path_factory.mktemp("xdg_off")
    out, _ = python(PROBE, "0,2", XDG_CACHE_HOME=str(home), BPJAX_CACHE="0")
    return home, out


def test_a_second_process_compiles_nothing(shared):
    home, cold, warm = shared
    assert cold["cache_dir"] == str(home / "bpjax") == warm["cache_dir"]
    first, again = cold["calls"][0], warm["calls"][0]
    assert first["xla"] == first["misses"] == 3 and first["hits"] == 0  # written to disk
    assert again["xla"] == 0 and again["hits"] == again["compile"] == 3  # loaded from it
    assert again["final_loss"] == first["final_loss"]  # bit for bit
    assert len(list((home / "bpjax").glob("*-cache"))) == 3


def test_a_fresh_lambda_is_served_from_disk(shared):
    # The same code in a new function object misses bpjax's and JAX's in-memory caches
    # (they key on the function), is traced and lowered again, and then loaded.
    _, cold, _ = shared
    second = cold["calls"][1]
    assert second["xla"] == 0 and second["hits"] == 3
    assert second["final_loss"] == cold["calls"][0]["final_loss"]


def test_one_device_does_not_load_two_device_programs(shared):
    # The cache key includes the device assignment: a 1-device process sharing the
    # directory compiles its own programs (3 there: unsharded, the sweep's grid values
    # also go through an eager ``jnp.asarray``, compiled as ``stage``).
    home, cold, _ = shared
    one, _ = python(PROBE, "0", XDG_CACHE_HOME=str(home), BPJAX_CPU_DEVICES="1")
    assert one["devices"] == 1
    assert one["calls"][0]["hits"] == 0 and one["calls"][0]["xla"] > 0
    assert one["calls"][0]["final_loss"] == cold["calls"][0]["final_loss"]


def test_first_sweep_compiles_three_programs(off):
    # 3 compiled programs, on 2 CPU devices with one optimizer and no static axes: the
    # init (``init_one``, compiled for a single run: the random-number code of an init
    # is what a start cost to compile), ``begin`` (initial carry, history buffers, finite
    # test) and the optimistic ``segment`` (all 20 steps in one segment; nothing
    # diverges, so the guarded segment is never compiled). A sweep with mini-batches
    # adds its keys' program (test_mini_batches_compute_their_keys_once). More means a
    # sweep compiles more than it did.
    _, out = off
    call = out["calls"][0]
    assert sorted(call["programs"]) == ["jit(begin)", "jit(init_one)", "jit(segment)"]
    assert call["xla"] == call["compile"] == 3


def test_a_two_segment_sweep_compiles_three_programs_too(off):
    # the start gives its outputs the segments' sharding, so the second segment runs
    # the first one's program (it compiled again, for new input shardings, when the
    # start returned the carry's constant leaves replicated).
    _, out = off
    call = out["calls"][1]
    assert sorted(call["programs"]) == ["jit(begin)", "jit(init_one)", "jit(segment)"]
    assert call["xla"] == call["compile"] == 3


def test_bpjax_cache_0_changes_nothing(off):
    home, out = off
    assert out["cache_dir"] is None
    assert out["calls"][0]["hits"] == out["calls"][0]["misses"] == 0
    assert not (home / "bpjax").exists()


def test_the_users_cache_dir_wins(tmp_path):
    mine = tmp_path / "mine"
    got, _ = python(SETTINGS, XDG_CACHE_HOME=str(tmp_path), JAX_COMPILATION_CACHE_DIR=str(mine))
    assert got["jax_compilation_cache_dir"] == str(mine)
    assert got["jax_persistent_cache_min_compile_time_secs"] == 1.0  # JAX's default, kept
    assert not (tmp_path / "bpjax").exists()


def test_an_unwritable_cache_dir_warns_and_leaves_the_cache_off(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    got, err = python(SETTINGS, XDG_CACHE_HOME=str(tmp_path / "file"))
    assert got["jax_compilation_cache_dir"] is None
    assert err.count("bpjax: no persistent compilation cache") == 1


# A 2-8-1 tanh net on XOR, 3 optimizers x 64 seeds x 200 steps: every loss recorded,
# as hex, and the codegen option bpjax chose.
XOR = """
import json
import numpy as np
import bpjax
from bpjax import compilation_cache, losses, nets

x, y = bpjax.problems.xor()
net = nets.mlp([2, 8, 1], activation="tanh")
r = bpjax.sweep(losses.supervised(net.apply, "mse"), lambda c, k: net.init(k),
                ["sgd", "momentum", "adam"], bpjax.Grid(lr=[0.1], seed=np.arange(64)), 200,
                record_every=10, data=(x, y), progress=False)
print(json.dumps({"codegen": compilation_cache.CODEGEN, "cores": bpjax.devices.cores(),
                  "loss": np.asarray(r.loss).ravel().tobytes().hex()}))
"""


def test_the_codegen_split_changes_no_bit():
    # bpjax compiles with the LLVM module split into one part per core; the user's
    # XLA_FLAGS win (here XLA's default of 32 parts, and 7): the same losses bit for bit
    ours, _ = python(XOR, BPJAX_CACHE="0")
    split = {"xla_cpu_parallel_codegen_split_count": ours["cores"]} if ours["cores"] < 32 else {}
    assert ours["codegen"] == split
    for parts in (32, 7):
        theirs, _ = python(XOR, BPJAX_CACHE="0",
                           XLA_FLAGS=f"--xla_cpu_parallel_codegen_split_count={parts}")
        assert theirs["codegen"] == {}
        assert theirs["loss"] == ours["loss"]


def test_a_cache_entry_is_whole_or_absent(tmp_path, monkeypatch):
    # a process killed while JAX writes an entry must not leave a truncated one
    from jax._src import lru_cache

    import bpjax  # noqa: F401 - its import makes JAX's entries atomic (alone, this test failed)

    cache = lru_cache.LRUCache(str(tmp_path), max_size=-1)

    def killed(src, dst):
        raise KeyboardInterrupt  # dies between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("k", b"x" * 1000)
    monkeypatch.undo()
    assert cache.get("k") is None  # not a truncated entry
    cache.put("k", b"x" * 1000)
    assert cache.get("k") == b"x" * 1000


CHUNKS = """
import json
import jax
import jax.numpy as jnp
import numpy as np

names = []

def on_duration(event, secs, fun_name=None, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        names.append(fun_name)

jax.monitoring.register_event_duration_secs_listener(on_duration)
import bpjax

data = (np.linspace(-1, 1, 16).reshape(8, 2), np.ones((8, 1)))
r = bpjax.sweep(lambda p, batch: jnp.mean((batch[0] @ p["w"] - batch[1]) ** 2),
                lambda c, k: {"w": jax.random.normal(k, (2, 1)) * c["x0"]}, "sgd",
                bpjax.Grid(lr=np.linspace(0.1, 0.2, 8), x0=[1.0, 2.0]), steps=20,
                data=data, batch_size=4, progress=False, chunk_size=4)
print(json.dumps({"programs": [n for n in names if n != "jit(stage)"],
                  "final_loss": [float(x).hex() for x in np.ravel(r.final_loss)]}))
"""


def test_mini_batches_compute_their_keys_once(tmp_path):
    # a mini-batch sweep's keys (its batches' data key) come from a program of their own,
    # read by the others; its 4 chunks' starts are all checked before any trains,
    # through the same programs the chunks then run (a check without the keys would
    # have compiled its own start)
    out, _ = python(CHUNKS, XDG_CACHE_HOME=str(tmp_path), BPJAX_CACHE="0")
    assert sorted(out["programs"]) == ["jit(begin)", "jit(init_one)", "jit(keys_one)",
                                       "jit(segment)"]
    assert len(out["final_loss"]) == 16 and all(x != "nan" for x in out["final_loss"])


OPTIMIZERS = """
import json
import threading
import jax
import jax.numpy as jnp
import numpy as np

names, hits, threads = [], [], []

def on_duration(event, secs, fun_name=None, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        names.append((fun_name, bool(hits)))
        threads.append([fun_name, threading.current_thread().name])
        hits[:] = []

def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_hits":
        hits.append(1)

jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
import bpjax

r = bpjax.sweep(lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2),
                lambda c, k: {"w": jax.random.normal(k, (3,)) * c["x0"]},
                ["sgd", "momentum", "adam"], bpjax.Grid(lr=[0.1, 0.2], x0=[1.0, 2.0]),
                steps=20, progress=False)
print(json.dumps({"programs": [[n, hit] for n, hit in names if n != "jit(stage)"],
                  "threads": threads,
                  "final_loss": [float(x).hex() for x in np.ravel(r.final_loss)]}))
"""


def test_other_optimizers_reuse_the_init_and_first_step(tmp_path):
    # the init and ``begin`` (first loss, gradient, records) do not depend on the
    # optimizer: the second and third optimizers run the first one's programs (no trace,
    # no lowering, nothing loaded from disk), and compile only their segment and their
    # state's init (none for plain SGD). Each segment is compiled once, on the thread
    # that compiles them ahead (loop.Ahead), in any order with the main thread's.
    out, _ = python(OPTIMIZERS, XDG_CACHE_HOME=str(tmp_path))
    compiled = [n for n, hit in out["programs"] if not hit]
    loaded = [n for n, hit in out["programs"] if hit]
    assert sorted(compiled) == sorted(["jit(init_one)", "jit(begin)", "jit(segment)",
                                       "jit(opt_init)", "jit(segment)", "jit(opt_init)",
                                       "jit(segment)"])
    assert compiled.index("jit(init_one)") < compiled.index("jit(begin)")
    assert loaded == []
    # the three segments on that thread, the rest where the sweep was called
    assert sorted((name, thread == "bpjax-compile-ahead") for name, thread in out["threads"]
                  if name != "jit(stage)") == sorted(
        [("jit(segment)", True)] * 3 + [("jit(init_one)", False), ("jit(begin)", False),
                                        ("jit(opt_init)", False), ("jit(opt_init)", False)])
    assert len(out["final_loss"]) == 12 and all(x != "nan" for x in out["final_loss"])
