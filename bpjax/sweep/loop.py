"""Running a planned sweep: its output folder (resume, lock, finish), optimizers and
chunks; each chunk's segments are ``segments.run_chunk``."""

import os
import sys
import threading
import time
from functools import partial

import jax
import numpy as np

from bpjax import checkpoint
from bpjax.progress import Progress
from bpjax.result import Result, load
from bpjax.sweep import distributed
from bpjax.sweep.compiled import compiled, unroll
from bpjax.sweep.host import Host, Writer, assemble
from bpjax.sweep.plan import Options, Plan, chunk_configs, describe, relayout, size
from bpjax.sweep.segments import Chunk, check_initial, compile_first, run_chunk
from bpjax.sweep.sizing import check_fits


def execute(plan: Plan, options: Options, out=None) -> Result:
    """Trains every chunk of every optimizer of ``plan`` (resuming from ``out``)."""
    stores: list[checkpoint.Store] = []
    try:
        return _execute(plan, options, out, stores)
    except KeyboardInterrupt:
        if out is not None:
            _say(f"bpjax: interrupted; rerun the same sweep to resume from {os.fspath(out)}")
        raise
    finally:
        for store in stores:  # the folders' locks go now, not with the traceback
            store.close()


def _execute(plan: Plan, options: Options, out,
             stores: list) -> Result:
    store = top = None
    if out is None:
        check_fits(plan)
    else:
        # With several processes (jax.distributed), each checkpoints its slice of the
        # grid in a folder of its own inside ``out`` (which they must all see), and
        # process 0 writes the result of the whole grid in ``out`` at the end. Every
        # process opens ``out``, so only the slices' folders are locked.
        wanted = {"chunk": plan.chunk, "seg_records": plan.seg_records,
                  "fast_compile": plan.fast_compile}  # what a resume must reuse
        top = store = checkpoint.Store(out, describe(plan), lock=plan.procs == 1)
        stores.append(top)
        if not top.finished():  # before sweep.json commits the folder to this sweep
            check_fits(plan, out)
        layout = top.open(wanted)
        if top.finished():
            _say(f"bpjax: {top.out} holds this finished sweep; loading it")
            top.tidy()
            result = load(top.path(checkpoint.RESULT), like=plan.carry_shape.params)
            distributed.drop_slice(top, plan)
            return result
        if plan.procs > 1:
            store = checkpoint.Store(distributed.slice_folder(top, jax.process_index()),
                                     describe(plan) | {"process": jax.process_index(),
                                                       "processes": plan.procs})
            stores.append(store)
            layout = store.open(wanted)
        elif distributed.slices(top):
            raise ValueError(f"{top.out} holds a sweep in progress across processes "
                             f"({', '.join(distributed.slices(top))}); run it again with as "
                             "many processes, or delete that folder to start over")
        if layout is not None:
            plan = relayout(plan, layout)
            _say(f"bpjax: resuming the sweep in {store.out}")
    inputs = plan.inputs
    if inputs.data is not None and plan.replicated is not None:
        inputs = inputs._replace(**jax.device_put(
            {"data": inputs.data, "val_data": inputs.val_data}, plan.replicated))
    base_seed = np.uint32(plan.seed)
    resume = store.load_progress() if store else None
    started = (-1, -1) if resume is None else tuple(resume["position"][:2].tolist())

    def ran(c):  # chunk c of the first optimizer committed or started: its start was checked
        return started >= (0, c) or (store is not None
                                      and os.path.exists(store.chunk_name(0, c)))

    start = _compiled(plan, plan.specs[0]).start
    # every chunk, before any trains (where the first to train is a resumed one, too)
    check_initial(plan, base_seed, inputs, ran, start, first_checks_itself=resume is None)

    bar = Progress(len(plan.specs) * plan.n * plan.steps, "sweep", options.progress)
    t0 = time.perf_counter()
    # host arrays in the run's own dtypes (float64 under x64)
    host = Host(plan, jax.tree.map(lambda x: jax.ShapeDtypeStruct((plan.chunk,) + x.shape,
                                                                  x.dtype), plan.carry_shape),
                store.out if store else None, store.committed() if store else ())
    files = [os.path.basename(a.filename) for a in host.files().values()]
    # Trajectories streamed to files are written (then the chunk's checkpoint) by one
    # thread while the next chunk trains; a chunk is fetched from the device only once
    # the one before it is written, so host memory holds one chunk, as without it.
    writer = Writer(threaded=store is not None and plan.specs[0].histories)

    def keep(at: Chunk, fetched, loss0):
        blocks = host.put(at.opt, at.lo, at.hi, *fetched, loss0)
        if store:
            store.save_chunk(at.opt, at.index, host.chunk(at.opt, at.lo, at.hi),
                             rows=(at.lo, at.hi), blocks=blocks)

    todo = [o for o in range(len(plan.specs)) if resume is None
            and not (store and os.path.exists(store.chunk_name(o, 0)))]
    with Ahead(plan, todo, base_seed, inputs) as ahead, writer:
        for o, spec in enumerate(plan.specs):
            functions = _compiled(plan, spec)
            for c in range(plan.n_chunks):
                at = Chunk(o, c, c * plan.chunk, min((c + 1) * plan.chunk, plan.n))
                saved = store.load_chunk(o, c, (at.lo, at.hi), files) if store else None
                if saved is not None:
                    host.put_chunk(o, at.lo, at.hi, saved)
                    bar.update((at.hi - at.lo) * plan.steps, "(from checkpoint)")
                    continue
                mid = resume is not None and tuple(resume["position"][:2]) == (o, c)
                carry, hist, loss0 = run_chunk(plan, spec, functions, host,
                                               chunk_configs(plan, at.lo, at.hi), base_seed,
                                               inputs, at, resume if mid else None, store,
                                               options, bar, partial(ahead.wait, o))
                writer.wait()  # (raises what the last write raised)
                writer.submit(keep, at, host.fetch(carry, hist), loss0)
    bar.close()
    if plan.procs > 1:
        host.gather(plan.grid.size)
        if top is not None:
            return distributed.finish_slices(plan, host, top, time.perf_counter() - t0)
    result = assemble(plan, host, time.perf_counter() - t0)
    result.meta["fingerprint"] = (store.fingerprint if store
                                  else checkpoint.fingerprint(describe(plan)))
    if store:
        store.finish(result, external=host.files())
    return result


class Ahead:
    """Each optimizer's first segment (``segments.compile_first``) compiled on a thread,
    in order, while the main thread traces, compiles and runs the rest; ``wait(o)``
    before optimizer ``o``'s first segment, so that its call finds the program instead
    of compiling it a second time. W2 (3 optimizers x 1,024 XOR runs), cold, on 2
    cores: the sweep took 1.80-1.83 s instead of 2.08-2.22 (the same 9 programs, the
    same bits). As a context: on leaving, no new compilation starts and the thread is
    joined (a process must not exit while XLA compiles on another thread: it aborted)."""

    def __init__(self, plan: Plan, todo: list[int], base_seed, inputs):
        self.done = {o: threading.Event() for o in todo}
        self.stop = threading.Event()
        self.thread = None
        if not todo:
            return
        functions = {o: _compiled(plan, plan.specs[o]) for o in todo}  # (on this thread)
        configs = chunk_configs(plan, 0, min(plan.chunk, plan.n))
        x64 = jax.config.jax_enable_x64  # (a context on this thread: the other's may differ)
        context = _trace_context()

        def work():
            with jax.enable_x64(x64):
                # another context on the caller's thread (``with jax.default_matmul_precision``,
                # ...) would trace another program here: then the calls compile their own
                same = _trace_context() == context
                for o in todo:
                    if same and not self.stop.is_set():
                        try:
                            compile_first(plan, o, functions[o], configs, base_seed, inputs)
                        except Exception:  # noqa: BLE001 - the call compiles it itself
                            pass
                    self.done[o].set()

        self.thread = threading.Thread(target=work, name="bpjax-compile-ahead", daemon=True)
        self.thread.start()

    def wait(self, o: int) -> None:
        """Before optimizer ``o``'s first segment: waits for its compilation. One that
        failed is not raised: the call then traces and compiles the segment itself, and
        raises whatever is really wrong."""
        if o in self.done:
            self.done[o].wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _trace_context():
    """JAX's settings that a trace depends on, as this thread sees them (private API;
    None where it is missing, and then two threads compare equal)."""
    try:
        from jax._src import config
        return config.trace_context()
    except (ImportError, AttributeError):
        return None


def _compiled(plan: Plan, spec):
    """``spec``'s compiled functions as ``plan`` runs them (sharding, unroll, emitters)."""
    return compiled(spec, plan.sharding, unroll(size(plan.carry_shape.params),
                                                plan.record_every), plan.fast_compile)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
