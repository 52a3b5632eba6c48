"""Whether a planned sweep fits where it will run: its trajectory files on disk, its
host arrays in memory, one chunk on the device. Checked before anything compiles or
is written, so that a sweep that cannot fit (``steps=10**10`` with trajectories) is
refused at once, naming the bytes, instead of filling a disk or being killed later.

The counts are of the arrays bpjax allocates: exact for the host's arrays and files; for
a chunk, its carry (twice: donated), trajectory buffers and their fetched copy, not XLA's
temporaries. So a refused sweep could not fit, or only just.
"""

import math
import os
import shutil

import jax
import numpy as np

from bpjax import history_files
from bpjax.sweep.host import history_names
from bpjax.sweep.plan import Plan, device_limit, size_bytes

HINT = ("record less often (bpjax.Record(every=k), k a divisor of steps), keep summaries "
        "only (bpjax.Record(trajectories=False)), or sweep fewer configurations at a time")


class Sizes:
    """The bytes a plan's arrays take: ``histories`` (every trajectory; with
    ``out=`` in files), ``finals`` (per-run values, in memory and in the chunk files),
    and one chunk's trajectories on the device (``chunk_device``) and fetched
    (``chunk_host``)."""

    def __init__(self, plan: Plan):
        spec = plan.specs[0]
        self.runs = len(plan.specs) * plan.n
        self.n_cols = plan.n_records + 1 if spec.histories else 2
        if spec.histories:
            self.record = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
                              for _, x in history_names(plan.record_shapes))
        else:
            self.record = np.dtype(plan.carry_shape.loss.dtype).itemsize
        self.histories = self.runs * self.n_cols * self.record
        carry = plan.carry_shape
        self.finals = self.runs * (4 + size_bytes(carry.params) + size_bytes(carry.recorded))
        kept = (plan.n_records + 1) * self.record if spec.histories else 0
        self.chunk_host = plan.chunk * kept
        self.chunk_device = plan.chunk * (
            2 * max(size_bytes(c) for c in plan.carry_shapes) + kept
            + (plan.seg_records * self.record if spec.histories else 0))

    def describe_histories(self) -> str:
        return (f"{_bytes(self.histories)} ({self.runs} runs x {self.n_cols} records x "
                f"{self.record} bytes)")


def check_fits(plan: Plan, out=None) -> None:
    """Refuses ``plan`` (``ValueError``) if its files or arrays cannot fit: the
    trajectory files in ``out``'s free disk space, the host's arrays in the available
    memory, one chunk in the device's memory."""
    sizes = Sizes(plan)
    streamed = out is not None and plan.specs[0].histories
    if out is not None:
        folder = os.fspath(out)
        need = 2 * sizes.finals + (sizes.histories if streamed else 0)  # chunk files, result
        if streamed and plan.procs > 1 and jax.process_index() == 0:
            need += sizes.histories * plan.grid.size // plan.n  # the whole grid's copy
        free = free_disk(folder)
        free = None if free is None else free + _allocated(folder)
        if free is not None and need > free:
            what = (f"trajectories need {sizes.describe_histories()} in history-*.npy files"
                    if streamed else f"per-run values need {_bytes(need)}")
            raise ValueError(f"this sweep's {what} in {folder}, more than the "
                             f"{_bytes(free)} free there: {HINT}")
    cpu = jax.default_backend() == "cpu"
    need = sizes.finals + (0 if streamed else sizes.histories) + sizes.chunk_host + (
        sizes.chunk_device if cpu else 0)  # a CPU device's buffers are host memory
    free = available_memory()
    if free is not None and need > free:
        where = ("" if streamed or not plan.specs[0].histories else
                 "; or give out= a folder, to stream the trajectories there")
        raise ValueError(
            f"this sweep needs {_bytes(need)} of memory, more than the {_bytes(free)} "
            f"available (trajectories {sizes.describe_histories()}"
            f"{' in files' if streamed else ''}, per-run values {_bytes(sizes.finals)}, "
            f"one chunk of {plan.chunk} configurations {_bytes(sizes.chunk_device)}): "
            f"{HINT}{where}")
    limit = None if cpu else device_limit(jax.local_devices()[0])
    n_dev = 1 if plan.sharding is None else len(plan.sharding.mesh.devices.flat)
    if limit is not None and sizes.chunk_device > limit * n_dev:
        raise ValueError(
            f"one chunk of {plan.chunk} configurations needs {_bytes(sizes.chunk_device)} "
            f"of device memory (its trajectories: {sizes.n_cols} records of "
            f"{sizes.record} bytes each per configuration), more than the "
            f"{_bytes(limit * n_dev)} of {n_dev} device(s): {HINT}")


def free_disk(folder: str) -> int | None:
    """Free bytes on the disk ``folder`` is (or would be created) on."""
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _allocated(folder: str) -> int:
    """Bytes the history files already in ``folder`` hold on disk (a resumed sweep
    reuses them)."""
    try:
        return sum(os.stat(os.path.join(folder, n)).st_blocks * 512
                   for n in history_files.names(folder))
    except OSError:
        return 0


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable (or the free physical pages),
    and less under a cgroup (v2) memory limit, not counting its reclaimable file cache."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                used = int(f.read())
            with open("/sys/fs/cgroup/memory.stat") as f:
                stat = dict(line.split() for line in f if line.count(" ") == 1)
            used -= int(stat.get("inactive_file", 0))
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, free)


def _bytes(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
