"""Planning a sweep: every argument checked, the work sized, nothing compiled.

A ``Plan`` says what runs (one ``Spec`` per optimizer, the flattened grid) and how
(chunk size, segment length, sharding). ``describe`` is what defines the
result: its hash is the fingerprint an output folder is checked against.
"""

import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bpjax import fingerprint, optim
from bpjax import metrics as metrics_lib
from bpjax.checks import check_data, positive_int
from bpjax.compilation_cache import FAST_COMPILE_SECONDS
from bpjax.grid import Grid
from bpjax.sweep import callbacks
from bpjax.sweep.compiled import Inputs, Spec
from bpjax.sweep.options import Options, SegmentInfo, UnusedAxisWarning  # noqa: F401 (re-exported)
from bpjax.sweep.trace import shapes

DEFAULT_CPU_MEMORY = 1 << 30  # on CPU the device is the host: its buffers and their copies
# Default segments per chunk, and the fewest estimated seconds each may take: a
# chunk estimated under SEGMENTS * SEGMENT_SECONDS runs in fewer (see auto_segments).
SEGMENTS = 10
SEGMENT_SECONDS = 0.01


class Plan(NamedTuple):
    specs: list[Spec]  # one per optimizer
    multi: bool  # several optimizers: the result has an "optimizer" axis
    grid: Grid
    flat: dict[str, np.ndarray]  # this process's configurations, each axis flattened
    steps: int
    record_every: int
    seed: int
    inputs: Inputs
    chunk: int  # configurations per chunk (a multiple of the device count)
    n_chunks: int
    seg_records: int  # records per segment
    sharding: Any  # NamedSharding over configurations, or None
    replicated: Any
    compact: bool = True
    n: int = 0  # configurations this process runs (all of them, with one process)
    procs: int = 1  # processes sharing the grid (jax.distributed), each a slice of it
    carry_shapes: tuple = ()  # per optimizer, one configuration's Carry (ShapeDtypeStructs)
    metric_shapes: dict = {}  # metric name -> one configuration's value (ShapeDtypeStruct)
    fingerprint: Any = None  # Options.fingerprint, in its JSON form
    record_shapes: Any = None  # one configuration's records at a record step, by recorder
    fast_compile: bool = False  # segments compiled by XLA's faster-compiling emitters

    @property
    def carry_shape(self):  # the first optimizer's: every field but opt_state is shared
        return self.carry_shapes[0]

    @property
    def n_records(self) -> int:
        return self.steps // self.record_every


def make_plan(loss_fn, init, optimizer, grid, steps, *, record_every, seed, data, batch_size,
         val_data, record_params, record, target, stop_at_target, metrics=None,
         options: Options, static: tuple = ()) -> Plan:
    """Checks every argument (see ``sweep``) and sizes the work; ``static`` is the
    static combination this plan runs ((axis, value) pairs; ``grid`` its other axes)."""
    if isinstance(grid, Mapping):
        grid = Grid(**grid)
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a bpjax.Grid or a dict of axes, got {type(grid).__name__}")
    steps = positive_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    if steps % record_every:
        raise ValueError(
            f"record_every={record_every} does not divide steps={steps}; records are at "
            f"steps 0, k, 2k, ..., steps, so choose a divisor of {steps}"
        )
    if options.on_segment is not None and not callable(options.on_segment):
        raise TypeError(f"on_segment must be callable as on_segment(info), "
                        f"got {options.on_segment!r}")
    segments = options.segments
    if segments is not None:
        segments = positive_int("segments", segments)
    if record not in ("full", "summary"):
        raise ValueError(f"record must be 'full' (trajectories) or 'summary' (min, first step "
                         f"below target, final), got {record!r}")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, (int, float, np.floating,
                                                               np.integer)):
            raise ValueError(f"target must be a number (a loss threshold), got {target!r}")
        if math.isnan(target):
            raise ValueError("target must be a number (a loss threshold), got nan")
    elif stop_at_target:
        raise ValueError("stop_at_target needs target=<loss threshold>")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
    if not callable(init):
        raise TypeError(f"init must be callable as init(config, key), got {init!r}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    opts, multi = optim.resolve(optimizer)
    optim.check_grid(opts, grid.axes | {name: [value] for name, value in static})
    data, batch_size = check_data(data, batch_size)
    if val_data is not None:
        if data is None:
            raise ValueError("val_data needs data: the validation loss is "
                             "loss_fn(params, val_data), so loss_fn must take a batch")
        val_data, _ = check_data(val_data, None)
        if jax.tree.structure(val_data) != jax.tree.structure(data):
            raise ValueError(f"val_data must be structured like data "
                             f"({jax.tree.structure(data)}), got {jax.tree.structure(val_data)}")
    metrics = metrics_lib.check(metrics)
    if metrics and record != "full":
        raise ValueError("metrics are recorded at every record step: they need record='full'")
    takes_config = _takes_config(loss_fn)
    axes = tuple((n, str(v.dtype)) for n, v in grid.axes.items())
    histories = record == "full"
    specs = [Spec(loss_fn, takes_config, init, o, axes, record_every, batch_size,
                  data is not None, bool(record_params) and histories, val_data is not None,
                  histories, bool(stop_at_target), metrics, tuple(static)) for o in opts]

    flat = grid.flat()
    procs = jax.process_count()
    n = grid.size
    if procs > 1:  # this process's slice of the grid, padded so every slice has one shape
        n = math.ceil(grid.size / procs)
        rows = np.arange(jax.process_index() * n, (jax.process_index() + 1) * n)
        flat = {k: v[np.where(rows < grid.size, rows, 0)] for k, v in flat.items()}
    inputs = Inputs(data, val_data, -math.inf if target is None else float(target))
    traced = [shapes(spec, flat, seed, inputs) for spec in specs]
    carry_shape, params_shape = traced[0].carry, traced[0].params
    unused = set.intersection(*(t.unused for t in traced)) - {"seed"}
    if unused:
        warnings.warn(UnusedAxisWarning(
            f"grid axes {sorted(unused)} reach neither init, loss_fn nor any optimizer: "
            "every value along them gives the same result (an optimizer factory gets an "
            "axis by the name of one of its parameters; init and loss_fn read config[name])"),
            stacklevel=3)

    n_rec = steps // record_every
    seg_records = segment_records(n_rec, segments or SEGMENTS)
    devices = jax.local_devices()
    n_dev = len(devices) if options.shard else 1
    if n_dev > 1:
        n_dev = callbacks.devices(set().union(*(t.callbacks for t in traced)), n_dev)
    per_record = 8 + (size_bytes(params_shape) if specs[0].record_params else 0)
    # carry, its donated copy and the optimizer's temporaries; the chunk's trajectories
    # (all records) on the device and their copy on the host, and one segment's records
    per_config = size_bytes(carry_shape) * 4 + (
        (2 * (n_rec + 1) + seg_records) * per_record if histories else 0)
    if data is not None:
        per_config += 2 * size_bytes(data) // max(1, jax.tree.leaves(data)[0].shape[0]) * (
            batch_size or jax.tree.leaves(data)[0].shape[0])
    if options.chunk_size is None:
        max_memory = options.max_memory
        budget = _default_memory(devices[0]) if max_memory is None else int(max_memory)
        if budget <= 0:
            raise ValueError(f"max_memory must be positive bytes, got {max_memory}")
        chunk = max(1, min(n, budget // per_config))
    else:
        chunk = min(positive_int("chunk_size", options.chunk_size), n)
    chunk = max(n_dev, chunk // n_dev * n_dev)
    n_chunks = math.ceil(n / chunk)
    chunk = math.ceil(n / n_chunks / n_dev) * n_dev  # balance the chunks
    examples = examples_per_step(data, batch_size)
    if segments is None:
        few = segment_records(n_rec, auto_segments(chunk, steps, size(params_shape), examples))
        if few != seg_records and (options.chunk_size is not None or chunk * (
                per_config + (few - seg_records) * per_record * histories) <= budget):
            seg_records = few
    fast_compile = options.fast_compile
    if not (fast_compile is None or isinstance(fast_compile, bool)):
        raise TypeError(f"fast_compile must be True, False or None (bpjax decides), got "
                        f"{fast_compile!r}")
    if fast_compile is None:  # from the grid's size, not the chunk's: the same on a resume
        fast_compile = fast_compile_pays(n * len(specs), steps, size(params_shape), examples)
    sharding = replicated = None
    if n_dev > 1:
        mesh = Mesh(np.array(devices), ("config",))
        sharding = NamedSharding(mesh, PartitionSpec("config"))
        replicated = NamedSharding(mesh, PartitionSpec())
    return Plan(specs, multi, grid, flat, steps, record_every, int(seed), inputs, chunk,
                n_chunks, seg_records, sharding, replicated, bool(options.compact), n, procs,
                tuple(t.carry for t in traced), traced[0].metrics,
                fingerprint.user_value(options.fingerprint), traced[0].records,
                bool(fast_compile))


def relayout(plan: Plan, layout: dict) -> Plan:
    """Reuses a stored chunk size, segment length and compiler emitters (a layout written
    before bpjax chose them used XLA's default), so resumed bits match."""
    chunk = int(layout["chunk"])
    sharding, replicated = plan.sharding, plan.replicated
    if sharding is not None and chunk % len(sharding.mesh.devices.flat):
        sharding = replicated = None
    return plan._replace(chunk=chunk, n_chunks=math.ceil(plan.n / chunk),
                         seg_records=int(layout["seg_records"]), sharding=sharding,
                         replicated=replicated,
                         fast_compile=bool(layout.get("fast_compile", False)))


def describe(plan: Plan) -> dict:
    """What defines a sweep's result; its hash is the fingerprint checked on resume.

    Functions are described by their digest and their parts' (``fingerprint.digest_parts``),
    so that a refusal names the part that changed; ``unseen`` lists what the digests
    could not see into (warned of with ``out=``, unless ``Options.fingerprint`` is set).
    """
    spec = plan.specs[0]
    data, val_data = plan.inputs.data, plan.inputs.val_data
    unseen: list[str] = []
    parts = lambda name, fn: fingerprint.digest_parts(fn, unseen, name)  # noqa: E731
    out = {
        "grid": {k: v.tolist() for k, v in plan.grid.axes.items()},
        "dtypes": {k: str(v.dtype) for k, v in plan.grid.axes.items()},
        "optimizers": {s.opt.name: s.opt.source if isinstance(s.opt.source, str)
                       else parts(s.opt.name, s.opt.source) for s in plan.specs},
        "loss_fn": parts("loss_fn", spec.loss_fn),
        "init": parts("init", spec.init),
        "steps": plan.steps,
        "record_every": plan.record_every,
        "seed": plan.seed,
        "batch_size": spec.batch_size,
        "record_params": spec.record_params,
        "record": "full" if spec.histories else "summary",
        "target": None if plan.inputs.target == -math.inf else plan.inputs.target,
        "stop_at_target": spec.stop,
        "x64": bool(jax.config.jax_enable_x64),
        "metrics": {name: parts(name, fn) for name, fn in spec.metrics},
        "static": dict(spec.static),
        "data": None if data is None else fingerprint.digest(jax.tree.leaves(data)),
    }
    if val_data is not None:
        out["val_data"] = fingerprint.digest(jax.tree.leaves(val_data))
    if plan.fingerprint is not None:
        out["fingerprint"] = plan.fingerprint
    if unseen:
        out["unseen"] = unseen
    return out


def chunk_configs(plan: Plan, lo: int, hi: int) -> dict:
    """The configurations of rows ``lo:hi``, padded to a whole chunk, on the devices."""
    pad = plan.chunk - (hi - lo)
    configs = {}
    for k, v in plan.flat.items():
        part = v[lo:hi]
        if pad:  # repeat a real configuration so every chunk has one shape
            part = np.concatenate([part, np.repeat(part[:1], pad)])
        configs[k] = part
    if plan.sharding is not None:
        return jax.device_put(configs, plan.sharding)
    return {k: jnp.asarray(v) for k, v in configs.items()}


def _takes_config(loss_fn) -> bool:
    try:
        return "config" in inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        return False


def examples_per_step(data, batch_size: int | None) -> int:
    """The examples one step's loss sees: the batch, all the data, or 1 without data."""
    return 1 if data is None else batch_size or jax.tree.leaves(data)[0].shape[0]


def estimated_seconds(configs: int, steps: int, params: int, examples: int) -> float:
    """A rough estimate of the seconds ``configs`` runs of ``steps`` steps take in one
    batch: a per-step floor (the loop's ops: ~4 us per step on the CPU for W1's 2-param
    net) plus 6 FLOPs per param and example (forward and backward of a dense layer) at
    10 GFLOP/s (W2 on the CPU: 12-16)."""
    return sum(_estimate(configs, steps, params, examples))


def _estimate(configs: int, steps: int, params: int, examples: int) -> tuple[float, float]:
    return steps * 5e-6, 6 * params * examples * configs * steps / 1e10


def fast_compile_pays(configs: int, steps: int, params: int, examples: int) -> bool:
    """Whether XLA's faster-compiling emitters (``Options.fast_compile``) are expected to
    cost this work less run time than ``FAST_COMPILE_SECONDS``, under what a compile
    saves (0.2-1 s a program): they ran W1's loop, all per-step floor, 2x slower (22 ms
    instead of 10) and W2's, mostly arithmetic, 15% slower. A grid's size decides, not
    a chunk's, so a resumed sweep decides the same."""
    floor, arithmetic = _estimate(configs, steps, params, examples)
    return 1.0 * floor + 0.15 * arithmetic < FAST_COMPILE_SECONDS


def auto_segments(chunk: int, steps: int, params: int, examples: int) -> int:
    """Segments for a chunk, from ``estimated_seconds``. Only the granularity of
    progress, checkpoints and compaction depends on it, never a result."""
    seconds = estimated_seconds(chunk, steps, params, examples)
    return max(1, min(SEGMENTS, int(seconds / SEGMENT_SECONDS)))


def segment_records(n_rec: int, segments: int) -> int:
    target = math.ceil(n_rec / segments)
    # a divisor avoids a 2nd compile (looked for among the next 10**4: a long sweep's
    # n_rec may have none for 10**9 numbers)
    for k in range(target, min(2 * target, n_rec, target + 10**4) + 1):
        if n_rec % k == 0:
            return k
    return target


def size(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def size_bytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def device_limit(device) -> int | None:
    """The device's memory in bytes, where its backend reports it (not the CPU's)."""
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - not every backend reports
        return None
    return int(limit) if limit else None


def _default_memory(device) -> int:
    limit = device_limit(device)
    return limit // 2 if limit else DEFAULT_CPU_MEMORY
