"""One JAX CPU device per core, so that a sweep's configuration axis uses every core.

XLA runs one CPU device's program mostly on one core when the arrays are small,
as a sweep's per-step arrays are; with one device per core, ``sweep`` shards the
configuration axis over them and the cores work in parallel. JAX fixes its CPU
device count when it first initializes a backend, so ``import bpjax`` asks for
one device per core at import time, unless:

- the user already chose (``XLA_FLAGS=--xla_force_host_platform_device_count=N``
  or ``jax.config.update("jax_num_cpu_devices", N)``), or
- ``BPJAX_CPU_DEVICES`` is set (a number; ``1`` keeps JAX's default), or
- JAX already initialized its backends, in which case bpjax warns once and says
  how to do it.
"""

import os
import warnings

import jax

ENV = "BPJAX_CPU_DEVICES"
FLAG = "--xla_force_host_platform_device_count"


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _initialized() -> bool:
    try:
        from jax._src import xla_bridge
        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without it: assume the worst
        return True


def arrange(n: int | None = None) -> int | None:
    """Asks JAX for ``n`` CPU devices (default: ``BPJAX_CPU_DEVICES``, else one per
    core). Returns the count set, or None where the user already chose or it is too
    late (then it warns with what to do instead)."""
    if n is None:
        if os.environ.get(ENV):
            n = int(os.environ[ENV])
        elif FLAG in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices > 0:
            return None
        else:
            n = cores()
    if n < 1:
        raise ValueError(f"{ENV} must be a positive number of CPU devices, got {n}")
    if _initialized():
        if n > 1 and len(jax.devices("cpu")) != n:
            warnings.warn(
                f"bpjax: JAX initialized before bpjax could give it {n} CPU devices (one per "
                f"core), so CPU sweeps use {len(jax.devices('cpu'))}. Import bpjax before any "
                f"JAX computation, or start with XLA_FLAGS={FLAG}={n} (or "
                f"jax.config.update('jax_num_cpu_devices', {n}) before the first computation); "
                f"{ENV}=1 silences this.", stacklevel=3)
        return None
    jax.config.update("jax_num_cpu_devices", n)
    return n
