"""``out=`` across processes (``jax.distributed``): each process checkpoints its
slice of the grid in ``out/process-K``; process 0 then writes the whole grid's
result into ``out``, and every process loads it."""

import os
import shutil

import jax

from bpjax import checkpoint
from bpjax.result import Result, load
from bpjax.sweep.host import Host, assemble
from bpjax.sweep.plan import Plan


def slice_folder(top: checkpoint.Store, process: int) -> str:
    return top.path(f"process-{process}")


def slices(top: checkpoint.Store) -> list[str]:
    return sorted(n for n in os.listdir(top.out) if n.startswith("process-"))


def finish_slices(plan: Plan, host: Host, top: checkpoint.Store, elapsed: float) -> Result:
    """Process 0 writes the whole grid's trajectories (from the slices' files) and
    ``result.npz`` into ``top``; then every process loads it and drops its slice."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("bpjax: slices written")
    if jax.process_index() == 0:
        if host.folder is not None:
            host.combine(top.out, [slice_folder(top, p) for p in range(plan.procs)],
                         plan.grid.size)
        result = assemble(plan, host, elapsed)
        result.meta["fingerprint"] = top.fingerprint
        top.finish(result, external=host.files())
    multihost_utils.sync_global_devices("bpjax: result written")
    result = load(top.path(checkpoint.RESULT), like=plan.carry_shape.params)
    drop_slice(top, plan)
    return result


def drop_slice(top: checkpoint.Store, plan: Plan) -> None:
    """Removes this process's slice folder (its result is in ``top`` now)."""
    folder = slice_folder(top, jax.process_index())
    if plan.procs > 1 and os.path.isdir(folder):
        shutil.rmtree(folder)
