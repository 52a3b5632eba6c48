"""How a sweep runs (``Options``) and what it tells a hook after each segment."""

from collections.abc import Callable
from typing import Any, NamedTuple


class UnusedAxisWarning(UserWarning):
    """A grid axis that nothing in the computation reads."""


class Options(NamedTuple):
    """How a sweep runs; on the CPU none of it but ``compact`` and ``fast_compile`` can
    change a bit of the result (and those only in the last bits).

    Attributes:
      max_memory: device bytes a chunk may use (default: half the device memory,
        or 1 GiB on CPU). ``chunk_size`` overrides the estimate.
      chunk_size: configurations per chunk.
      segments: how many pieces each chunk's run is cut into: for progress,
        checkpoints and compaction, each costing a dispatch and a sync (~0.2-0.5
        ms). Default: 10, or fewer where a chunk is estimated to take less
        than 10 x ``SEGMENT_SECONDS`` (one for a sweep of a few milliseconds).
      shard: shard the configuration axis over all local devices.
      compact: between segments, drop the runs that have diverged or stopped
        and run only the live ones, re-packed into a batch whose size is a
        power of two (so recompiles stay few). Their records are what they
        would have been; live runs may differ from an uncompacted sweep in the
        last bits where XLA's code depends on the batch size.
      checkpoint_seconds: with ``out=``, the least time between two checkpoints
        of a chunk in progress.
      on_segment: called after every segment with a ``SegmentInfo`` (the step, the
        runs still stepping and diverged, the lowest loss so far): to log to
        TensorBoard, W&B or rich without bpjax depending on them. It costs one more
        device-to-host copy per segment (two numbers per run).
      fingerprint: extra inputs that bpjax cannot see, e.g. a data file's version: a
        string or a JSON value, added to the fingerprint an ``out=`` folder is checked
        against, so that a rerun after it changes is refused instead of resumed.
      progress: show a progress bar (default: when stderr is a terminal, and in
        Jupyter).
      fast_compile: compile the training programs with XLA's older CPU emitters,
        in about half the time, for code that may run up to ~2x slower and round
        differently in the last bit (not the only option here that can: ``compact``
        is another). Default (None): where they are expected to add under
        ``compilation_cache.FAST_COMPILE_SECONDS`` of run time, less than they save
        in compiling (``plan.fast_compile_pays``, from the grid's size alone). No
        effect on a GPU; a resumed sweep keeps the choice it started with.
    """

    max_memory: int | None = None
    chunk_size: int | None = None
    segments: int | None = None
    shard: bool = True
    compact: bool = True
    checkpoint_seconds: float = 30.0
    on_segment: Callable | None = None
    fingerprint: Any = None
    progress: bool | None = None
    fast_compile: bool | None = None


class SegmentInfo(NamedTuple):
    """Where a sweep is, passed to ``Options.on_segment`` after each segment."""

    optimizer: str
    chunk: int  # this chunk, from 0
    n_chunks: int
    step: int  # the steps its runs have taken
    steps: int
    runs: int  # runs in this chunk
    live: int  # still taking steps (not diverged, not stopped at the target)
    diverged: int
    best_loss: float  # the lowest loss recorded so far by any run of this chunk
