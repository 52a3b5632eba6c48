"""What a run records, as composable pieces (cf. optax's ``GradientTransformation``).

A ``Recorder`` is a pair of pure functions over what one run is at a record step
(an ``Observation``: its params, its recorded loss and the step):

    state = recorder.init(observation)                    # at step 0
    state, record = recorder.update(state, observation)   # at every record step

``state`` is folded along the run and kept in the carry (checkpointed, resumed and
returned at the end, like ``Best`` and ``Summary``); ``record`` (a pytree, or None)
is kept at every record step, as a trajectory with a leading records axis. A sweep
runs an ordered mapping ``name -> Recorder``; the carry holds their states and each
segment returns their records under the same names. The built-ins below are what
``bpjax.sweep`` records: ``loss``, ``params``, ``best`` (early stopping),
``summary`` and one ``metric`` per name in ``metrics=``.

>>> import jax.numpy as jnp
>>> r = summary(target=0.5)
>>> s = r.init(Observation({"x": 1.0}, jnp.float32(2.0), jnp.int32(0)))
>>> s, _ = r.update(s, Observation({"x": 0.5}, jnp.float32(0.25), jnp.int32(10)))
>>> int(s.reached_at), float(s.min)
(10, 0.25)
"""

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

Params = Any
State = Any


class Observation(NamedTuple):
    """What every recorder sees of a run at a record step."""

    params: Params
    loss: jax.Array  # the loss recorded at this step (on all the data with mini-batches)
    step: jax.Array  # int32


class InitFn(Protocol):
    def __call__(self, observation: Observation) -> State:
        """The recorder's state at step 0 (None: it keeps none)."""


class UpdateFn(Protocol):
    def __call__(self, state: State, observation: Observation) -> tuple[State, Any]:
        """The state folded with one record step, and what is kept at that step (None:
        nothing)."""


class Recorder(NamedTuple):
    """A recorded quantity as pure functions: ``init`` and ``update`` (see the module)."""

    init: InitFn
    update: UpdateFn


def _none(observation):
    return None


def stateless(record: Callable[[Observation], Any]) -> Recorder:
    """A recorder that keeps ``record(observation)`` at every record step, no state."""
    return Recorder(_none, lambda state, observation: (None, record(observation)))


def loss() -> Recorder:
    """The recorded loss at every record step."""
    return stateless(lambda observation: observation.loss)


def params() -> Recorder:
    """The params at every record step."""
    return stateless(lambda observation: observation.params)


def metric(fn: Callable[[Params], jax.Array]) -> Recorder:
    """``fn(params)`` at every record step (a ``metrics=`` entry, its loss bound)."""
    return stateless(lambda observation: fn(observation.params))


class Best(NamedTuple):
    loss: jax.Array  # lowest validation loss seen at a record step
    step: jax.Array  # int32, the record step where it was seen (the first, on ties)
    params: Params  # the params at that step


def best(validation: Callable[[Params], jax.Array]) -> Recorder:
    """Early stopping: the validation loss at every record step, and as state the
    lowest one, its step and the params there."""

    def init(observation):
        return Best(validation(observation.params), jnp.int32(0), observation.params)

    def update(state: Best, observation):
        value = validation(observation.params)
        better = value < state.loss  # NaN or inf never counts as better
        new = Best(value, jnp.asarray(observation.step, jnp.int32), observation.params)
        return jax.tree.map(lambda a, b: jnp.where(better, a, b), new, state), value

    return Recorder(init, update)


class Summary(NamedTuple):
    last: jax.Array  # the latest recorded loss
    min: jax.Array  # the lowest recorded loss
    argmin: jax.Array  # int32, the record step where it was seen (the first, on ties)
    reached_at: jax.Array  # int32, the first record step with loss <= target, or -1


def summary(target) -> Recorder:
    """A few numbers per run over its recorded losses, kept as state (no trajectory):
    the last, the lowest and its step, and the first step at or below ``target``."""

    def init(observation):
        first, zero = observation.loss, jnp.int32(0)
        return Summary(first, first, zero, jnp.where(first <= target, zero, jnp.int32(-1)))

    def update(state: Summary, observation):
        value, t = observation.loss, jnp.asarray(observation.step, jnp.int32)
        better = value < state.min  # NaN never counts as better
        first = (state.reached_at < 0) & (value <= target)
        return Summary(value, jnp.where(better, value, state.min),
                       jnp.where(better, t, state.argmin),
                       jnp.where(first, t, state.reached_at)), None

    return Recorder(init, update)


def init_all(recorders: dict, observation: Observation) -> dict:
    """Every recorder's initial state, by name (in the recorders' order)."""
    return type(recorders)((name, r.init(observation)) for name, r in recorders.items())


def update_all(recorders: dict, states: dict, observation: Observation) -> tuple[dict, dict]:
    """Every recorder updated: ``(states, records)``, both by name."""
    out = {name: r.update(states[name], observation) for name, r in recorders.items()}
    kind = type(recorders)
    return (kind((name, s) for name, (s, _) in out.items()),
            kind((name, rec) for name, (_, rec) in out.items()))


class Record(NamedTuple):
    """What a sweep records: the recipe of its recorders (``bpjax.sweep(record=...)``).

    Attributes:
      every: record every this many steps; must divide ``steps``. Records are at
        steps 0, every, ..., steps.
      params: record the params at each record step (else only the final params).
      trajectories: keep the loss (and params, metrics) at every record step; False
        keeps no trajectories, only per run the loss at the start and end and the
        summary (memory per run then does not grow with ``steps``, for grids of
        tens of millions).
      target: a loss threshold. Every sweep returns, from the recorded losses,
        ``min_loss``, ``min_step`` and ``reached_at``: the first record step with
        loss <= ``target`` (-1 if never, or with no target).
      stop_at_target: a run stops at the record step where it reaches ``target``
        (its later records repeat that one), like a diverged run.
      metrics: quantities evaluated at every record step inside the compiled sweep,
        returned as ``res.metrics[name]`` (grid + (records,) + the metric's own
        shape): a dict ``name -> metric(params, loss)``, where ``loss`` is the
        configuration's full-batch loss ``params -> scalar``, or a built-in name
        (``"sharpness"``, ``"grad_norm"``, ``"param_norm"``: see ``bpjax.metrics``),
        or a list of built-in names. Saved, checkpointed and resumed like the loss.
    """

    every: int = 1
    params: bool = True
    trajectories: bool = True
    target: float | None = None
    stop_at_target: bool = False
    metrics: Any = None


# sweep's keywords of before ``Record``, still accepted: keyword -> Record field
KEYWORDS = {"record_every": "every", "record_params": "params", "target": "target",
            "stop_at_target": "stop_at_target", "metrics": "metrics"}
