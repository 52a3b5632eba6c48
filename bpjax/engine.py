"""The training step, written for one configuration; sweeps get grids from vmap.

A run is cut into *segments* of whole records so that a sweep can report
progress, checkpoint, compact or re-shard between them. Everything a run needs
to continue lives in ``Carry``; a segment is a pure function
``(carry, start_step) -> (carry, records)``, so running segments back to back
gives exactly the same numbers as one long scan.

The loss and gradient of the current params are carried, not recomputed: each
step applies the carried gradient, then evaluates ``value_and_grad`` at the
new params. That costs one evaluation per step plus one at the start, and the
recorded loss at a record step comes for free in full-batch mode.

What is recorded is a mapping of ``bpjax.recorders.Recorder``s (pure ``init`` and
``update`` over an ``Observation`` of the run at a record step): the carry holds
their states (``carry.recorded``, e.g. early stopping's ``Best`` and the
``Summary`` of the recorded losses), and a segment returns their records by name.
With ``stop=True`` a run whose ``summary`` reached its target stops there (it is
frozen, like a diverged run, and costs nothing once a sweep compacts it away).

Divergence guard: a step whose new carry fails ``finite`` (a param, the loss or
the gradient is not finite) is not taken. The run stays frozen at its last
finite state (so it never poisons a reduction over the grid) and
``diverged_at`` holds the first step that would have been non-finite. The
guard is a select over the whole carry at every step; a sweep runs a segment
*optimistically* first (plain steps; runs that do not step are put back at
each record, or at its end when nothing stops at a target) and runs it again
with the guard where a run met a non-finite value, so the guard costs little
while runs are finite and the results are the same bits either way. The
optimistic steps need no test each: each folds the carry's loss and gradient
into the new params as ``- 0 * |sum|`` (NaN when not finite), and a non-finite
param stays so, so one test at the record sees any step's failure.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bpjax import optim
from bpjax.recorders import Best, Observation, Recorder, Summary, init_all, update_all

Params = Any
Loss = Callable[[Params, Any], jax.Array]  # loss(params, batch) -> scalar; batch may be None
Recorders = Mapping[str, Recorder]  # name -> recorder, in the order their records are kept


class Carry(NamedTuple):
    params: Params
    opt_state: Any
    loss: jax.Array  # loss of params on the batch of the current step (always finite)
    grad: Params
    diverged_at: jax.Array  # int32, -1 while the run is alive
    recorded: Mapping = {}  # name -> its recorder's state (None: it keeps none)  # noqa: RUF012

    @property
    def best(self) -> Best | None:  # early stopping's state, with a validation loss
        return self.recorded.get("best")

    @property
    def summary(self) -> Summary | None:  # the recorded losses' summary
        return self.recorded.get("summary")


class Batching(NamedTuple):
    """How a run sees its data: all of it every step, or shuffled mini-batches."""

    data: Any = None  # pytree of arrays with a leading example axis, or None
    batch_size: int | None = None

    @property
    def shuffles(self) -> bool:
        return self.data is not None and self.batch_size is not None

    def batch(self, key: jax.Array, step: jax.Array):
        """Step ``step``'s batch: all the data, or its slice of a fresh permutation of the
        examples per epoch. It depends only on (key, step), so segments and resumes see
        the same batches."""
        if not self.shuffles:
            return self.data
        return self.take(self.order(key, step), step)

    def order(self, key: jax.Array, step: jax.Array) -> jax.Array:
        """The permutation of the examples in ``step``'s epoch."""
        n = jax.tree.leaves(self.data)[0].shape[0]
        return jax.random.permutation(jax.random.fold_in(key, step // self._per_epoch), n)

    def next_order(self, key: jax.Array, step: jax.Array, order: jax.Array) -> jax.Array:
        """``order`` (that of step - 1's epoch) moved on to ``step``'s, drawn only where a
        new epoch starts: a loop over steps sorts once an epoch, not once a step (a
        permutation of 1,348 digits cost ~10x a step of a 64-32-32-10 net on 32 of
        them). ``step`` must not be batched (it is not, in a sweep: every run of a
        segment is at the same step), so that ``cond`` stays a branch under vmap."""
        return jax.lax.cond(step % self._per_epoch == 0, lambda: self.order(key, step),
                            lambda: order)

    def take(self, order: jax.Array, step: jax.Array):
        """Step ``step``'s batch from its epoch's permutation ``order``."""
        idx = jax.lax.dynamic_slice_in_dim(order, (step % self._per_epoch) * self.batch_size,
                                           self.batch_size)
        return jax.tree.map(lambda a: a[idx], self.data)

    @property
    def _per_epoch(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0] // self.batch_size


def all_finite(tree) -> jax.Array:
    """Whether every element of ``tree`` is finite, as one reduction: a sum is finite
    iff its terms are (or it overflows float range, itself a sign of divergence)."""
    return jnp.isfinite(_total(tree))


def _total(tree) -> jax.Array:
    return sum(jnp.sum(x) for x in jax.tree.leaves(tree))


def finite(carry: Carry) -> jax.Array:
    """The guard's test of a carry: every param is finite, and the loss plus the sum of
    the gradient is finite (it overflows only for a diverging run). One reduction."""
    return jnp.isfinite(_total((carry.loss, carry.grad)) + _total(
        jax.tree.map(lambda p: 0 * p, carry.params)))


def init_carry(params: Params, tx: optax.GradientTransformation | None, loss: Loss,
               batching: Batching, key, recorders: Recorders = {}) -> Carry:  # noqa: B006
    """The carry at step 0. With ``tx`` None its ``opt_state`` is None (to be set to
    ``tx.init(params)``): the rest is the same computation for every optimizer."""
    value, grad = jax.value_and_grad(loss)(params, batching.batch(key, jnp.int32(0)))
    carry = Carry(params, None if tx is None else tx.init(params), value, grad, jnp.int32(-1))
    return carry._replace(recorded=init_all(recorders, observe(carry, 0, loss, batching)))


def observe(carry: Carry, t, loss: Loss, batching: Batching) -> Observation:
    """The run at record step ``t``, as its recorders see it."""
    if batching.batch_size is None:
        value = carry.loss
    else:  # the mini-batch loss is noisy: record the loss on all the data
        value = loss(carry.params, batching.data)
    return Observation(carry.params, value, jnp.asarray(t, jnp.int32))


def record(carry: Carry, t, recorders: Recorders, loss: Loss, batching: Batching):
    """Every recorder updated at record step ``t``: ``(carry, records)``."""
    states, records = update_all(recorders, carry.recorded, observe(carry, t, loss, batching))
    return carry._replace(recorded=states), records


def running(carry: Carry, stop: bool = False) -> jax.Array:
    """Whether a run still takes steps: not diverged, and (with ``stop``) not at its target."""
    alive = carry.diverged_at < 0
    if stop:
        alive = alive & (carry.summary.reached_at < 0)
    return alive


def advance(carry: Carry, t, tx: optax.GradientTransformation, loss: Loss, batching: Batching,
            key, poison: bool = False, batch=None):
    """Takes step t -> t + 1 with no guard; returns the new carry and whether its params,
    loss and gradient are all finite. ``batch`` is step t + 1's batch when the caller
    has it (``run_segment`` keeps the epoch's permutation), else it is drawn here.

    With ``poison``, a loss or gradient element of ``carry`` that is not finite makes
    new params NaN (all of them for the loss, the element's own for the gradient),
    and finite ones change no bit. A param that is not finite stays so under any
    optax update (``p + u``), so after a loop of poisoned steps ``finite`` of the last
    carry is False iff it was False for some carry on the way: one test per loop
    instead of one per step.
    """
    # (value_fn's batch is traced only by a transformation that calls it: lbfgs)
    updates, opt_state = optim.update(tx, carry.grad, carry.opt_state, carry.params,
                                      value=carry.loss,
                                      value_fn=lambda p: loss(p, batching.batch(key, t)))
    params = optax.apply_updates(carry.params, updates)
    if poison:
        params = _poisoned(params, carry.grad, carry.loss)
    if batch is None:
        batch = batching.batch(key, t + 1)
    value, grad = jax.value_and_grad(loss)(params, batch)
    new = carry._replace(params=params, opt_state=opt_state, loss=value, grad=grad)
    return new, finite(new)


def _poisoned(params: Params, grad: Params, loss) -> Params:
    """``params`` minus 0 * (|grad| + |loss|), element by element with their gradient:
    +0 where both are finite (no bit changes, -0 included), NaN where one is not.
    Elementwise, XLA fuses it into the update. (W1's loop, 4096 x 1000 steps on the
    CPU: 6.0 ms with a test per step, 4.5 ms with a poison, 3.9 ms with neither. W2's,
    1024 x 2000 steps: 0.157-0.167 s poisoned by the gradient's sum, one reduction per
    leaf and step, 0.125 s with no poison.)"""
    off = 0 * jnp.abs(loss)
    return jax.tree.map(lambda p, g: p - (0 * jnp.abs(g) + off).astype(p.dtype), params, grad)


def step(carry: Carry, t, tx: optax.GradientTransformation, loss: Loss, batching: Batching, key,
         stop: bool = False, batch=None):
    """Takes step t -> t + 1, unless the run diverged (or stopped) before or diverges now."""
    new, finite = advance(carry, t, tx, loss, batching, key, batch=batch)
    alive = running(carry, stop)
    ok = alive & finite
    carry = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, carry)
    return carry._replace(diverged_at=jnp.where(alive & ~ok, t + 1, carry.diverged_at))


def run_segment(
    carry: Carry,
    start_step,
    n_records: int,
    record_every: int,
    tx: optax.GradientTransformation,
    loss: Loss,
    batching: Batching = Batching(),  # noqa: B008 - an immutable NamedTuple
    key=None,
    recorders: Recorders = {},  # noqa: B006 - read only
    stop: bool = False,
    keep: bool = True,
    optimistic: bool = False,
    unroll: int = 1,
):
    """Runs ``n_records * record_every`` steps from ``start_step``.

    Returns ``(carry, records, broken)``: the new carry, the records at steps
    ``start_step + record_every``, ..., ``start_step + n_records * record_every``
    (a mapping like ``recorders``, each leaf with a leading records axis), or
    None when not ``keep`` (summaries only), and ``broken`` (below; always False
    when guarded). Every recorder's state in the carry is updated at every
    record; with ``stop`` a run whose ``summary`` reached its target takes no
    more steps.

    With ``optimistic``, the steps between two records are taken without the
    per-step guard (a select over the whole carry at every step, which can cost
    as much as the step itself for small nets): runs that are alive at a record
    step take ``record_every`` plain steps, and only the runs that were not
    alive keep their carry. ``broken`` is True for a run that met a non-finite
    value in this segment. Where no run is broken the
    result is exactly the guarded one; where one is, run the segment again from
    the same carry without ``optimistic`` (``sweep`` does). ``unroll`` unrolls the
    loop over the steps between records (``lax.scan``'s ``unroll``).
    """

    # Optimistic and not stopping, the runs alive at the start stay alive to the end
    # (one that breaks is run again), so the others are put back once, at the end,
    # and their records repeat the start's: no select over the carry per record.
    hold = optimistic and not stop
    if hold:
        alive = running(carry)
        still = record(carry, start_step, recorders, loss, batching)[1]

    def batch(t, order):  # step t + 1's batch and its epoch's order (None: no shuffle)
        if order is None:
            return None, None
        order = batching.next_order(key, t + 1, order)
        return batching.take(order, t + 1), order

    def block(state, b):
        carry, broken, order = state
        first = start_step + b * record_every
        steps = jnp.arange(record_every, dtype=jnp.int32)
        if optimistic:
            def plain(state, i):
                c, order = state
                x, order = batch(first + i, order)
                return (advance(c, first + i, tx, loss, batching, key, poison=True,
                                batch=x)[0], order), None

            (new, order), _ = jax.lax.scan(plain, (carry, order), steps, unroll=unroll)
            if hold:
                carry = new
            else:
                now = running(carry, stop)
                clean = finite(new)  # and so was every carry before it: see advance
                carry = jax.tree.map(lambda a, b: jnp.where(now, a, b), new, carry)
                broken = broken | (now & ~clean)
        else:
            def one(state, i):
                c, order = state
                x, order = batch(first + i, order)
                return (step(c, first + i, tx, loss, batching, key, stop, batch=x), order), None

            (carry, order), _ = jax.lax.scan(one, (carry, order), steps, unroll=unroll)
        carry, records = record(carry, first + record_every, recorders, loss, batching)
        if hold:
            records = jax.tree.map(lambda a, b: jnp.where(alive, a, b), records, still)
        return (carry, broken, order), (records if keep else None)

    start = carry
    # The permutation of the epoch of the segment's first step, moved on as the steps go.
    order = batching.order(key, start_step) if batching.shuffles else None
    (carry, broken, _), records = jax.lax.scan(block, (carry, jnp.bool_(False), order),
                                               jnp.arange(n_records, dtype=jnp.int32))
    if hold:
        broken = alive & ~finite(carry)  # every step's test: see advance
        carry = jax.tree.map(lambda a, b: jnp.where(alive, a, b), carry, start)
    return carry, records, broken
