"""Every core and every process: CPU devices per core, and a grid split over 2 processes."""

import os
import socket
import subprocess
import sys

import numpy as np

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


def test_two_processes_give_the_single_process_result(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    worker = os.path.join(HERE, "distributed_case.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, worker, str(r), "2", str(port),
                               str(tmp_path / f"{r}.npz")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    alone = resume_case.run_distributed(shard=False)  # one device, as each process has
    for r in range(2):  # every process holds the whole grid, gathered
        got = np.load(tmp_path / f"{r}.npz")
        assert int(got["processes"]) == 2
        np.testing.assert_array_equal(got["loss"], alone.loss)
        np.testing.assert_array_equal(got["w"], alone.final_params["layers"][0]["w"])
        np.testing.assert_array_equal(got["diverged_at"], alone.diverged_at)
        np.testing.assert_array_equal(got["reached_at"], alone.reached_at)
