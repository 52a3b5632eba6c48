"""An optimizer wrapper built on Sontag's "log rule" (seed 001): extrapolate weights that
grow like a + b log t instead of walking there one shrinking step at a time.

For each coordinate it keeps an effective time tau (steps, advanced by every jump)
and b = tau * update. Every ``every`` steps, where b has kept its sign and changed
by less than ``rtol`` since the last check, the coordinate is in log-growth mode:
it is moved by b log(1 + jump), where it would be after ``jump * tau`` more steps of
the log law, and its tau is multiplied by (1 + jump).

>>> import optax, jax.numpy as jnp
>>> tx = log_extrapolate(optax.sgd(0.1), every=10)
>>> state = tx.init({"x": jnp.zeros(2)})
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class LogExtrapolateState(NamedTuple):
    inner: Any
    count: jax.Array
    tau: Any  # per-coordinate effective time
    rate: Any  # b = tau * update at the last check


def log_extrapolate(inner: optax.GradientTransformation, every: int = 100, jump=1.0,
                    rtol=0.05) -> optax.GradientTransformation:
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return LogExtrapolateState(inner.init(params), jnp.zeros((), jnp.int32),
                                   jax.tree.map(jnp.zeros_like, params), zeros)

    def update(grads, state, params=None):
        updates, inner_state = inner.update(grads, state.inner, params)
        count = state.count + 1
        check = count % every == 0
        tau = jax.tree.map(lambda t: t + 1, state.tau)

        def one(u, t, old):
            b = t * u
            steady = check & (jnp.sign(b) == jnp.sign(old)) & (b != 0) \
                & (jnp.abs(b - old) <= rtol * jnp.abs(b))
            extra = jnp.where(steady, b * jnp.log1p(jump), 0.0)
            return u + extra, jnp.where(steady, t * (1 + jump), t), jnp.where(check, b, old)

        out = jax.tree.map(one, updates, tau, state.rate)
        is_triple = lambda x: isinstance(x, tuple) and len(x) == 3  # noqa: E731
        pick = lambda i: jax.tree.map(lambda x: x[i], out, is_leaf=is_triple)  # noqa: E731
        return pick(0), LogExtrapolateState(inner_state, count, pick(1), pick(2))

    return optax.GradientTransformation(init, update)
