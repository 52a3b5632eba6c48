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

from jax.extend import core as jcore

CALLBACKS = frozenset({"pure_callback", "io_callback"})


class HostCallbackWarning(UserWarning):
    """A sweep with host callbacks runs on one device (see ``bpjax.sweep.callbacks``)."""


def devices(found: set[str], n_dev: int) -> int:
    """``n_dev``, or 1 (with a ``HostCallbackWarning``) where the sweep calls back:
    ``found``, the host callback primitives that its configurations' start (init,
    loss, gradient, first records) and one step (the optimizer) call, as
    ``bpjax.sweep.trace.shapes`` finds them."""
    if not found:
        return n_dev
    warnings.warn(HostCallbackWarning(
        f"this sweep calls {' and '.join(sorted(found))}: it runs on one device, not "
        f"{n_dev}, because a callback that raises on one of several devices hangs the "
        "others, and XLA aborts the process after 60 s (shard=False silences this)"),
        stacklevel=5)
    return 1


def found(closed) -> set[str]:
    """The host callback primitives in a ``ClosedJaxpr`` (and the jaxprs inside it)."""
    return primitives(closed.jaxpr) & CALLBACKS


def primitives(jaxpr) -> set[str]:
    """The names of every primitive in ``jaxpr`` and the jaxprs inside it."""
    out, todo = set(), [jaxpr]
    while todo:
        j = todo.pop()
        out.update(eqn.primitive.name for eqn in j.eqns)
        todo.extend(jcore.subjaxprs(j))
    return out
