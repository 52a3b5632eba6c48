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

from bpjax.grid import Grid
from bpjax.result import Result
from bpjax.sweep import static
from bpjax.sweep.compiled import config_keys
from bpjax.sweep.loop import execute
from bpjax.sweep.plan import Options, SegmentInfo, make_plan

__all__ = ["Options", "SegmentInfo", "config_keys", "initial_params", "sweep"]


def initial_params(init: Callable, grid: Grid | Mapping, seed: int = 0):
    """The params every configuration of a sweep starts from, shaped like the grid.

    >>> import bpjax
    >>> p = initial_params(lambda c, k: {"x": c["x0"]}, {"x0": [1.0, 2.0], "seed": [0, 1]})
    >>> p["x"].shape
    (2, 2)
    """
    grid = Grid(**grid) if isinstance(grid, Mapping) else grid
    flat = {k: jnp.asarray(v) for k, v in grid.flat().items()}
    one = lambda config: init(config, config_keys(config, np.uint32(seed))[0])  # noqa: E731
    params = jax.jit(jax.vmap(one))(flat)
    return jax.tree.map(lambda x: np.asarray(x).reshape(grid.shape + x.shape[1:]), params)


def sweep(
    loss_fn: Callable,
    init: Callable,
    optimizer,
    grid: Grid | Mapping,
    steps: int,
    *,
    record_every: int = 1,
    seed: int = 0,
    data=None,
    batch_size: int | None = None,
    val_data=None,
    record_params: bool = True,
    record: str = "full",
    target: float | None = None,
    stop_at_target: bool = False,
    metrics=None,
    progress: bool | None = None,
    out=None,
    options: Options | None = None,
    **how,
) -> Result:
    """Trains every configuration of ``grid`` and returns a ``Result`` with named axes.

    Args:
      loss_fn: ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``data`` is
        given; returns a scalar. If it has a ``config`` parameter it also gets the
        configuration (a dict of axis name -> traced value), e.g. to sweep a
        property of the problem.
      init: ``init(config, key) -> params``. ``key`` depends on ``seed`` and on the
        grid's ``seed`` axis, if any (never on the optimizer or other axes).
      optimizer: a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``), an
        optax ``GradientTransformation``, a callable taking hyperparameters by
        keyword (axes named ``lr``, ``momentum``, ``b1``, ``b2``, ``eps`` are passed
        to it), or a list/dict of those: the result then has a leading
        ``optimizer`` axis.
      grid: a ``Grid`` or a dict of axes.
      steps: optimizer steps per configuration.
      record_every: record loss (and params) every this many steps; must divide
        ``steps``. Records are at steps 0, k, ..., steps.
      seed: base PRNG seed.
      data: a pytree of arrays with a leading example axis, passed to ``loss_fn``.
      batch_size: mini-batch size; each configuration shuffles with its own key
        every epoch. Default: full batch.
      val_data: held-out data like ``data``. At every record step each
        configuration evaluates ``loss_fn(params, val_data)`` and keeps the best
        (lowest) value, its step and the params there: early stopping, returned
        as ``val_loss``, ``best_val_loss``, ``best_step`` and ``best_params``.
      record_params: record params at each record step (else only final params).
      record: ``"full"`` keeps the loss (and params) at every record step;
        ``"summary"`` keeps no trajectories, only per run the loss at the start
        and end and the summaries below: memory per run then does not grow
        with ``steps``, for grids of tens of millions.
      target: a loss threshold. Every sweep returns, from the recorded losses,
        ``min_loss``, ``min_step`` and ``reached_at``: the first record step
        with loss <= ``target`` (-1 if never, or with no target).
      stop_at_target: a run stops at the record step where it reaches
        ``target`` (its later records repeat that one), like a diverged run.
      metrics: quantities evaluated at every record step inside the compiled sweep,
        returned as ``res.metrics[name]`` (grid + (records,) + the metric's own
        shape): a dict ``name -> metric(params, loss)``, where ``loss`` is the
        configuration's full-batch loss ``params -> scalar``, or a built-in name
        (``"sharpness"``, ``"grad_norm"``, ``"param_norm"``: see ``bpjax.metrics``);
        or a list of built-in names. Saved, checkpointed and resumed like ``loss``.
      progress: show a progress bar (default: when stderr is a terminal).
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
        checkpoint cadence): a ``bpjax.Options``; none of it changes a result on
        the CPU. Its fields are also accepted as keywords (``chunk_size=16``).

    Example:
      >>> import bpjax, jax.numpy as jnp
      >>> res = bpjax.sweep(lambda p: p["x"] ** 4, lambda c, k: {"x": c["x0"]}, "sgd",
      ...                   bpjax.Grid(lr=[0.01, 0.2], x0=[0.5, 2.0]), steps=100)
      >>> res.diverged.tolist()
      [[False, False], [False, True]]
    """
    options = _options(options, how)

    def plan(grid, combo=()):
        return make_plan(loss_fn, init, optimizer, grid, steps, record_every=record_every,
                         seed=seed, data=data, batch_size=batch_size, val_data=val_data,
                         record_params=record_params, record=record, target=target,
                         stop_at_target=stop_at_target, metrics=metrics, options=options,
                         static=combo)

    grid = Grid(**grid) if isinstance(grid, Mapping) else grid
    if isinstance(grid, Grid) and grid.static_dims:
        return static.run(grid, plan, lambda p, folder: execute(p, options, progress, folder),
                          out)
    return execute(plan(grid), options, progress, out)


def _options(options: Options | None, how: dict) -> Options:
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a bpjax.Options, got {options!r}")
    unknown = sorted(set(how) - set(Options._fields))
    if unknown:
        raise TypeError(f"sweep() got unexpected keyword arguments {unknown}; how to run a "
                        f"sweep is set by Options fields {list(Options._fields)}")
    return (options or Options())._replace(**how)


