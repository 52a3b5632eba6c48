"""Host callbacks (``jax.pure_callback``, ``io_callback``) in a sweep's computation.

Under sharding, XLA runs such a callback on one device and sends its result to the
others through a collective. If the callback raises, that device's program stops,
the others wait in the collective, and after 20 + 40 s XLA aborts the whole process
(SIGABRT, "Termination timeout for all reduce"; measured on 2 CPU devices with jax
0.10.2). Unsharded, the same exception is a clean ``JaxRuntimeError`` at once. So a
sweep whose init, loss, optimizer or metrics call back to the host runs on one
device (``jax.debug.callback`` runs on every device, with no collective: it is left
alone).
"""

import warnings
from collections.abc import Mapping

import jax
import numpy as np
from jax.extend import core as jcore

from bpjax import engine
from bpjax.sweep.compiled import Inputs, Spec, bind, start_one
from bpjax.sweep.trace import remembered

CALLBACKS = frozenset({"pure_callback", "io_callback"})


class HostCallbackWarning(UserWarning):
    """A sweep with host callbacks runs on one device (see ``bpjax.sweep.callbacks``)."""


def devices(specs: list[Spec], flat: Mapping, seed: int, inputs: Inputs, n_dev: int) -> int:
    """``n_dev``, or 1 (with a ``HostCallbackWarning``) where a spec calls back."""
    names = set().union(*(found(spec, flat, seed, inputs) for spec in specs))
    if not names:
        return n_dev
    warnings.warn(HostCallbackWarning(
        f"this sweep calls {' and '.join(sorted(names))}: it runs on one device, not "
        f"{n_dev}, because a callback that raises on one of several devices hangs the "
        "others, and XLA aborts the process after 60 s (shard=False silences this)"),
        stacklevel=5)
    return 1


def found(spec: Spec, flat: Mapping, seed: int, inputs: Inputs) -> set[str]:
    """The host callback primitives that one configuration's start (init, loss, gradient,
    first records) and one step (the optimizer) call; traced abstractly, not compiled,
    and remembered for the same code and argument shapes (~16 ms for a small MLP)."""
    return remembered(_FOUND, spec, inputs, lambda: _trace(spec, flat, seed, inputs))


_FOUND: dict = {}


def _trace(spec: Spec, flat: Mapping, seed: int, inputs: Inputs) -> set[str]:
    config = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in flat.items()}

    def one(config, base_seed, inputs):
        bound = bind(spec, config, base_seed, inputs)
        carry, records = start_one(spec, config, base_seed, inputs, bound)
        return engine.advance(carry, 0, bound.tx, bound.loss, bound.batching,
                              bound.data_key)[0], records

    closed = jax.make_jaxpr(one)(config, np.uint32(seed), inputs)
    return primitives(closed.jaxpr) & CALLBACKS


def primitives(jaxpr) -> set[str]:
    """The names of every primitive in ``jaxpr`` and the jaxprs inside it."""
    out, todo = set(), [jaxpr]
    while todo:
        j = todo.pop()
        out.update(eqn.primitive.name for eqn in j.eqns)
        todo.extend(jcore.subjaxprs(j))
    return out
