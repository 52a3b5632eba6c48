"""Every core and every process: CPU devices per core, and a grid split over 2 processes."""

import os
import socket
import subprocess
import sys
import time

import numpy as np

import bpjax

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
import resume_case  # noqa: E402


def python(code: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "BPJAX_CPU_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() + out.stderr.strip()


def test_import_gives_jax_one_cpu_device_per_core():
    cores = len(os.sched_getaffinity(0))
    count = "import bpjax, jax; print(len(jax.devices('cpu')))"
    assert python(count) == str(cores)
    assert python(count, BPJAX_CPU_DEVICES="1") == "1"
    assert python(count, BPJAX_CPU_DEVICES="3") == "3"
    # The user's own choice wins.
    assert python(count, XLA_FLAGS="--xla_force_host_platform_device_count=5") == "5"


def test_too_late_says_how():
    said = python("import jax, jax.numpy as jnp; jnp.zeros(1); import bpjax; "
                  "print(len(jax.devices('cpu')))", BPJAX_CPU_DEVICES="4")
    assert said.startswith("1") and "XLA_FLAGS=--xla_force_host_platform_device_count=4" in said


def workers(tmp_path, *args) -> list[subprocess.Popen]:
    """Starts the 2 processes of distributed_case.py (process r saves to tmp_path/r.npz)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    worker = os.path.join(HERE, "distributed_case.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return [subprocess.Popen([sys.executable, worker, str(r), "2", str(port),
                              str(tmp_path / f"{r}.npz"), *map(str, args)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(2)]


def finish(procs) -> list[str]:
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    return outs


def test_two_processes_give_the_single_process_result(tmp_path):
    folder = tmp_path / "out"
    finish(workers(tmp_path, folder))
    alone = resume_case.run_distributed(shard=False)  # one device, as each process has
    # every process holds the whole grid, gathered; with out=, streamed to each process's
    # folder, then written by process 0 as one result (and found finished the 2nd time)
    for name in [f"{r}{how}.npz" for r in range(2) for how in ("", "-out", "-again")]:
        got = np.load(tmp_path / name)
        assert int(got["processes"]) == 2
        np.testing.assert_array_equal(got["loss"], alone.loss)
        np.testing.assert_array_equal(got["w"], alone.final_params["layers"][0]["w"])
        np.testing.assert_array_equal(got["diverged_at"], alone.diverged_at)
        np.testing.assert_array_equal(got["reached_at"], alone.reached_at)
    files = [f"history-{i}.npy" for i in range(5)] + ["result.npz", "sweep.json"]
    assert sorted(os.listdir(folder)) == files  # the slices' folders are gone
    saved = bpjax.load(folder / "result.npz")
    np.testing.assert_array_equal(saved.loss, alone.loss)
    np.testing.assert_array_equal(saved.final_params["layers"][0]["w"],
                                  alone.final_params["layers"][0]["w"])
    # the same sweep in one process finds it finished too
    np.testing.assert_array_equal(resume_case.run_distributed(shard=False, out=folder).loss,
                                  alone.loss)


def test_two_processes_killed_mid_sweep_resume_from_their_slices(tmp_path):
    folder, steps = tmp_path / "out", 3000
    procs = workers(tmp_path, folder, steps)
    first = folder / "process-1" / "chunk-0-0.npz"  # a finished chunk, more to come
    deadline = time.monotonic() + 240
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for p in procs:
        p.kill()
        p.communicate()
    assert first.exists() and not (folder / "result.npz").exists()
    outs = finish(workers(tmp_path, folder, steps))
    assert all("resuming the sweep in" in out for out in outs)
    alone = resume_case.run_distributed(steps, shard=False)
    for r in range(2):
        got = np.load(tmp_path / f"{r}.npz")
        np.testing.assert_array_equal(got["loss"], alone.loss)
        np.testing.assert_array_equal(got["w"], alone.final_params["layers"][0]["w"])
        np.testing.assert_array_equal(got["diverged_at"], alone.diverged_at)
    assert not any(n.startswith("process-") for n in os.listdir(folder))
