"""JAX's persistent compilation cache, on by default, so a new process need not recompile.

A sweep compiles a few programs (the initial carry, the optimistic and the
guarded segment, ...): a few seconds on a CPU, often more than the sweep itself
takes to run. JAX can keep compiled executables on disk and load them in the
next process that compiles the same program (same HLO, devices, compile
options and jaxlib); by default it caches nothing (no directory) and, once a
directory is set, only programs that took over a second to compile. So
``import bpjax`` points the cache at ``$XDG_CACHE_HOME/bpjax`` (else
``~/.cache/bpjax``) and caches every program, unless:

- the user already chose a cache directory (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)``) or turned JAX's
  cache off (``JAX_ENABLE_COMPILATION_CACHE=false``): their settings win, or
- ``BPJAX_CACHE=0``: nothing is changed, or
- the directory cannot be created or written: bpjax warns once and leaves the
  cache off.

The cache has no size limit (JAX evicts only with ``jax_compilation_cache_max_size``
and the ``filelock`` package); delete the directory to empty it. JAX's cache keys
include the directory's path (for XLA's GPU autotuning cache), so a copy of the
directory moved elsewhere is not read. Its entries run
as code when loaded: do not share the directory with users you do not trust.
Setting the directory does not initialize a JAX backend, so ``bpjax.devices``
can still choose the CPU device count.
"""

import os
import warnings
from functools import partial

import jax

from bpjax.devices import cores

ENV = "BPJAX_CACHE"

SPLIT = "xla_cpu_parallel_codegen_split_count"
XLA_DEFAULT_SPLIT = 32


def codegen_split(flags: str | None = None) -> dict:
    """The compiler option that splits a program's LLVM module into as many parts as
    this process has cores (``devices.cores()``), which XLA compiles in parallel;
    XLA's default is 32 parts, whatever the cores. Same code, same bits (a test
    compares a sweep's losses under both); on a 2-core CPU, three alternating fresh
    processes each: W2's 9 programs compiled in 1.05-1.12 s instead of 1.19-1.36,
    W1's 3 in 0.23-0.27 s instead of 0.26-0.34. Nothing where the user set it in
    ``XLA_FLAGS`` (theirs wins) or the machine has 32 cores or more."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    if SPLIT in flags or cores() >= XLA_DEFAULT_SPLIT:
        return {}
    return {SPLIT: cores()}


# The options of every program bpjax compiles (``jit``, and the two below with theirs).
CODEGEN = codegen_split()

# XLA's compiler options for a program that runs once: LLVM's optimization level 1,
# not XLA's default 3. A vmapped init's random-number code (vanishing_gradients')
# compiled in 0.7 s, not 3-4.5 s; 1,024 inits of a 64-128-10 net compiled in 0.5 s,
# not 2.8, and ran in 188 ms, not 138 (level 0: 842 ms).
#
# And XLA's older CPU emitters (``xla_cpu_use_fusion_emitters=False``), which compile
# in about half the time of its default fusion emitters (a 2-8-1 XOR training loop
# 0.20 s instead of 0.44; a 64-128-10 one 0.23 s instead of 0.45), for code that
# runs up to about 2x slower (W1's 4,096 x 1,000 loop: 22 ms instead of 10; W2 15%
# slower; the XOR loop the same). So sweeps use them where they are expected to add
# less than ``FAST_COMPILE_SECONDS`` of run time (``Options.fast_compile``), and so
# do programs run once. All 15 quick experiments in one process, cold: XLA compiled
# for 92.4 s instead of 99.6 (most of their compiling is elsewhere); with them for
# every program of the process (``XLA_FLAGS``, eager ops too) a cold `bpjax reproduce
# --quick` took 65-80 s instead of 95.
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, **CODEGEN}
FAST_COMPILE_SECONDS = 0.3  # the most run time they may be expected to add to a sweep
ONCE = {"xla_backend_optimization_level": 1, **FAST_COMPILE}

# The thresholds bpjax lowers, each unless the user set it through JAX's env variable.
_THRESHOLDS = {"jax_persistent_cache_min_compile_time_secs": 0.0,
               "jax_persistent_cache_min_entry_size_bytes": 0}

_warned = False


def jit_once(fun=None, **jit_kwargs):
    """``jax.jit`` for a program that runs once (an init, a one-off diagnostic):
    compiled at LLVM's optimization level 1 by XLA's older CPU emitters (``ONCE``),
    several times faster, at some speed that a program run once does not miss. Use
    ``jit_fast`` or plain ``jax.jit`` for anything in a loop, and for code whose bits
    must match a loop's: the same float code may round differently at another level
    (a full-batch loss differed in its last bit).

    >>> import jax.numpy as jnp
    >>> from bpjax.compilation_cache import jit_once
    >>> float(jit_once(lambda x: jnp.sum(x ** 2))(jnp.arange(3.0)))
    5.0
    """
    if fun is None:  # @jit_once(static_argnums=...)
        return partial(jit_once, **jit_kwargs)
    return jax.jit(fun, compiler_options=ONCE, **jit_kwargs)


def loop_options(fast_compile: bool) -> dict | None:
    """The compiler options of a program run in a loop: ``FAST_COMPILE`` where
    ``fast_compile``, else XLA's default code (``CODEGEN``'s split only)."""
    return FAST_COMPILE if fast_compile else CODEGEN or None


def jit(fun=None, **jit_kwargs):
    """``jax.jit`` with bpjax's compiler options (``CODEGEN``): for the programs in a
    loop whose code must be XLA's default (the training segments, where
    ``Options.fast_compile`` is off).

    >>> import jax.numpy as jnp
    >>> float(jit(lambda x: jnp.sum(x ** 2))(jnp.arange(3.0)))
    5.0
    """
    if fun is None:
        return partial(jit, **jit_kwargs)
    return jax.jit(fun, compiler_options=loop_options(False), **jit_kwargs)


def jit_fast(fun=None, **jit_kwargs):
    """``jax.jit`` by XLA's faster-compiling CPU emitters (``FAST_COMPILE``), at LLVM's
    full optimization: for a program run a few times whose arithmetic is short, where
    compiling is most of the wait (a sweep chooses this itself: ``Options.fast_compile``).

    >>> import jax.numpy as jnp
    >>> float(jit_fast(lambda x: jnp.sum(x ** 2))(jnp.arange(3.0)))
    5.0
    """
    if fun is None:
        return partial(jit_fast, **jit_kwargs)
    return jax.jit(fun, compiler_options=FAST_COMPILE, **jit_kwargs)


def unroll_threefry() -> bool:
    """Lowers JAX's threefry random-number hash on the CPU as on other backends:
    unrolled, in a function of its own reused by every draw of the same shape (JAX's
    CPU rule is a loop over its 20 rounds, inlined at every draw). The bits are the
    same (integer arithmetic); XLA compiles and runs the unrolled form faster: 4,096
    vmapped inits of a 64-128-10 net compiled in 0.5 s instead of 5.9 s (1.3 s at
    ``ONCE``) and ran in 0.28 s instead of 1.5 s; 1,024 permutations of 1,797
    examples compiled in 0.3 s instead of 1.2 s. ``import bpjax`` calls it.

    Returns whether it could: the rule is private JAX API (``jax._src``); where it is
    missing nothing changes.
    """
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as threefry
        prim, rule = threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule
    except (ImportError, AttributeError):
        return False
    mlir.register_lowering(prim, rule, platform="cpu", inline=False)
    return True


def directory() -> str:
    """Where bpjax keeps compiled programs: ``$XDG_CACHE_HOME/bpjax``, else ``~/.cache/bpjax``.

    >>> from bpjax import compilation_cache
    >>> compilation_cache.directory().endswith("bpjax")
    True
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bpjax")


def enable(path: str | None = None) -> str | None:
    """Turns JAX's persistent compilation cache on and caches every compiled program
    (``import bpjax`` calls it; ``BPJAX_CACHE=0 python run.py`` keeps it off).

    Args:
      path: the cache directory; default ``directory()``.

    Returns:
      The directory, or None where the cache was left as it was: ``BPJAX_CACHE=0``,
      the user's own JAX cache settings, or a directory that cannot be written
      (after a warning, once per process).
    """
    global _warned
    if os.environ.get(ENV, "").strip() == "0":
        return None
    if (os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir
            or not jax.config.jax_enable_compilation_cache):
        return None
    path = path or directory()
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {path}")
    except OSError as e:
        if not _warned:
            _warned = True
            warnings.warn(f"bpjax: no persistent compilation cache ({e}); each new process "
                          f"compiles its sweeps again. Set XDG_CACHE_HOME or "
                          f"JAX_COMPILATION_CACHE_DIR to a writable directory, or {ENV}=0 "
                          f"to silence this.", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    for name, value in _THRESHOLDS.items():
        if name.upper() not in os.environ:
            jax.config.update(name, value)
    _write_entries_atomically()
    return path


def _write_entries_atomically() -> None:
    """JAX writes a cache entry in place (``Path.write_bytes``): a process killed while
    writing one (a sweep resumes after ``kill -9``) would leave it truncated, and
    every later process would fail to read it and warn. Written to a temporary name
    and renamed, an entry is whole or absent. Only JAX's default cache (no eviction,
    a local directory) is changed; where its private module differs, nothing is."""
    try:
        from jax._src import lru_cache
    except ImportError:
        return
    cls = getattr(lru_cache, "LRUCache", None)
    original = getattr(cls, "put", None)
    if original is None or getattr(original, "_bpjax", False):
        return

    def put(self, key: str, value: bytes) -> None:
        if getattr(self, "eviction_enabled", True) or not isinstance(self.path, os.PathLike):
            return original(self, key, value)
        if not key:
            raise ValueError("key cannot be empty")
        target = os.path.join(os.fspath(self.path), f"{key}{lru_cache._CACHE_SUFFIX}")
        if os.path.exists(target):
            return
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(value)
        os.replace(tmp, target)

    put._bpjax = True
    cls.put = put
