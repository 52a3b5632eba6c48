"""``sweep``: every configuration of a grid trained in one compiled, vmapped call.

The grid is flattened to N configurations (split across processes under
``jax.distributed``) and cut into equal chunks (sized from a memory estimate),
each chunk sharded over the local devices; each chunk runs in segments of whole
records. The rooms, in the order a sweep goes through them:

- ``plan``: checks every argument and sizes the work (chunks, segments); nothing
  compiles there; ``describe`` is what an output folder's fingerprint hashes.
- ``compiled``: one configuration bound (its keys, optimizer, loss) and its
  ``jit(vmap)`` functions, cached on the static settings, so a new grid of the
  same shape does not recompile.
- ``loop``: chunks and segments, optimistic runs and guarded replays,
  compaction, run ahead, checkpoints.
- ``host``: the host's arrays (in memory or streamed to ``.npy`` files), the
  writer thread, and the ``Result``.
- ``distributed``: ``out=`` across processes.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.compilation_cache import jit_once
from bpjax.grid import Grid
from bpjax.recorders import KEYWORDS, Record
from bpjax.result import Result
from bpjax.sweep import static
from bpjax.sweep.compiled import config_keys
from bpjax.sweep.loop import execute
from bpjax.sweep.options import Options, SegmentInfo
from bpjax.sweep.plan import make_plan

__all__ = ["Options", "SegmentInfo", "config_keys", "initial_params", "sweep"]


def initial_params(init: Callable, grid: Grid | Mapping, seed: int = 0):
    """The params every configuration of a sweep starts from, shaped like the grid.

    Static axes reach ``init`` as Python values, as in a sweep; their combinations'
    params stack when their shapes agree (else a ValueError says to ask for one
    combination at a time, e.g. ``grid.part``).

    >>> import bpjax
    >>> p = initial_params(lambda c, k: {"x": c["x0"]}, {"x0": [1.0, 2.0], "seed": [0, 1]})
    >>> p["x"].shape
    (2, 2)
    >>> p = initial_params(lambda c, k: {"x": c["x0"] * len(c["act"])},
    ...                    {"act": ["tanh", "relu"], "x0": [1.0, 2.0]})
    >>> p["x"].tolist()
    [[4.0, 8.0], [4.0, 8.0]]
    """
    grid = Grid(**grid) if isinstance(grid, Mapping) else grid
    if not grid.static_dims:
        return _initial(init, grid, seed)
    traced = grid.part(grid.traced_dims)
    combos = static.combinations(grid)
    parts = [_initial(init, traced, seed, combo) for combo in combos]
    if not static.same_shapes(parts):
        shapes = {static.name(c): jax.tree.map(np.shape, p) for c, p in zip(combos, parts)}
        raise ValueError(f"init gives params of different shapes for the static combinations "
                         f"({shapes}): ask for one combination at a time")
    return jax.tree.map(static.stacker(grid), *parts)


def _initial(init: Callable, grid: Grid, seed: int, fixed=()):
    flat = {k: jnp.asarray(v) for k, v in grid.flat().items()}

    def one(config):
        config = {**config, **dict(fixed)}
        return init(config, config_keys(config, np.uint32(seed))[0])

    params = jit_once(jax.vmap(one))(flat)  # the same program as a sweep's init
    return jax.tree.map(lambda x: np.asarray(x).reshape(grid.shape + x.shape[1:]), params)


def sweep(
    loss_fn: Callable,
    init: Callable,
    optimizer,
    grid: Grid | Mapping,
    steps: int,
    *,
    data=None,
    batch_size: int | None = None,
    val_data=None,
    seed: int = 0,
    record: Record | str | None = None,
    out=None,
    options: Options | None = None,
    **keywords,
) -> Result:
    """Trains every configuration of ``grid`` and returns a ``Result`` with named axes.

    The science is in the arguments; what to record is a ``bpjax.Record``; how to
    run it is a ``bpjax.Options``.

    Args:
      loss_fn: ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``data`` is
        given; returns a scalar. If it has a ``config`` parameter it also gets the
        configuration (a dict of axis name -> traced value), e.g. to sweep a
        property of the problem.
      init: ``init(config, key) -> params``. ``key`` depends on ``seed`` and on the
        grid's ``seed`` axis, if any (never on the optimizer or other axes).
      optimizer: a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"rmsprop"``), an
        optax ``GradientTransformation``, a callable that takes hyperparameters by
        keyword (every grid axis its signature names is passed to it, ``lr`` and
        ``learning_rate`` alike), or a list/dict of those: the result then has a
        leading ``optimizer`` axis.
      grid: a ``Grid`` or a dict of axes.
      steps: optimizer steps per configuration.
      data: a pytree of arrays with a leading example axis, passed to ``loss_fn``.
      batch_size: mini-batch size; each configuration shuffles with its own key
        every epoch. Default: full batch.
      val_data: held-out data like ``data``. At every record step each
        configuration evaluates ``loss_fn(params, val_data)`` and keeps the best
        (lowest) value, its step and the params there: early stopping, returned
        as ``val_loss``, ``best_val_loss``, ``best_step`` and ``best_params``.
      seed: base PRNG seed.
      record: what to record, a ``bpjax.Record`` (record step, params,
        trajectories or summaries only, loss target, metrics). Its fields are also
        accepted as the keywords ``record_every``, ``record_params``, ``target``,
        ``stop_at_target`` and ``metrics``, and ``record="summary"`` (or
        ``"full"``) sets ``trajectories``.
      out: a folder to checkpoint into (at most every ``checkpoint_seconds``, at
        segment boundaries, and after each chunk) and to write ``result.npz``
        to. Running the same sweep with the same ``out`` resumes it; a different
        sweep there is refused, naming what differs. Trajectories are streamed
        into ``.npy`` files there, chunk by chunk, so host memory holds one
        chunk of them at a time; the result maps them from disk. Across
        processes (``jax.distributed``), ``out`` must be a folder they all
        see: each keeps its slice in ``out/process-K`` until process 0 writes
        the whole result in ``out``.
      options: how to run it (memory, chunking, segments, sharding, compaction,
        checkpoint cadence, progress bar): a ``bpjax.Options``; none of it changes
        a result on the CPU. Its fields are also accepted as keywords
        (``chunk_size=16``, ``progress=False``).

    Example:
      >>> import bpjax, jax.numpy as jnp
      >>> res = bpjax.sweep(lambda p: p["x"] ** 4, lambda c, k: {"x": c["x0"]}, "sgd",
      ...                   bpjax.Grid(lr=[0.01, 0.2], x0=[0.5, 2.0]), steps=100,
      ...                   record=bpjax.Record(every=10, target=1e-2))
      >>> res.diverged.tolist(), res.reached_at.tolist()
      ([[False, False], [False, True]], [[80, -1], [10, -1]])
    """
    record, options = _record(record, keywords), _options(options, keywords)

    def plan(grid, combo=()):
        return make_plan(loss_fn, init, optimizer, grid, steps, record_every=record.every,
                         seed=seed, data=data, batch_size=batch_size, val_data=val_data,
                         record_params=record.params,
                         record="full" if record.trajectories else "summary",
                         target=record.target, stop_at_target=record.stop_at_target,
                         metrics=record.metrics, options=options, static=combo)

    grid = Grid(**grid) if isinstance(grid, Mapping) else grid
    if isinstance(grid, Grid) and grid.static_dims:
        return static.run(grid, plan, lambda p, folder: execute(p, options, folder),
                          out)
    return execute(plan(grid), options, out)


def _record(record, keywords: dict) -> Record:
    """The ``Record`` of ``record=`` and the old keywords (removed from ``keywords``)."""
    fields = {KEYWORDS[k]: keywords.pop(k) for k in list(keywords) if k in KEYWORDS}
    if isinstance(record, Record):
        if fields:
            raise TypeError(f"record= is a bpjax.Record and {sorted(fields)} were given as "
                            "keywords too: set them in the Record")
        return record
    if record not in (None, "full", "summary"):
        raise ValueError(f"record must be 'full' (trajectories), 'summary' (none: min, first "
                         f"step below target, final) or a bpjax.Record, got {record!r}")
    return Record(trajectories=record != "summary")._replace(**fields)


def _options(options: Options | None, how: dict) -> Options:
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a bpjax.Options, got {options!r}")
    unknown = sorted(set(how) - set(Options._fields))
    if unknown:
        raise TypeError(f"sweep() got unexpected keyword arguments {unknown}; what to record "
                        f"is set by bpjax.Record fields {list(Record._fields)}, how to run a "
                        f"sweep by bpjax.Options fields {list(Options._fields)}")
    return (options or Options())._replace(**how)


