"""Backpropagation written out by hand: the delta rule of seed 003, layer by layer.

For an ``mlp`` with pre-activations z_l = a_{l-1} W_l + b_l and a_l = f_l(z_l),
and a loss averaged over the n examples of a batch:

    delta_L = dLoss/da_L * f_L'(z_L)                  (the output error)
    delta_l = (delta_{l+1} W_{l+1}^T) * f_l'(z_l)     (sent back one layer)
    dLoss/dW_l = a_{l-1}^T delta_l,   dLoss/db_l = sum over examples of delta_l

One forward pass stores every z_l and a_l, one backward pass reuses them: two
matrix products per layer going back against one going forward, so a gradient
costs a small constant times a forward pass, O(w) for w weights, where
differentiating each weight separately (finite differences) costs O(w^2).

``gradient`` returns the same pytree as ``jax.grad``; ``loss`` is a loss whose
``jax.grad`` *is* the delta rule (a ``jax.custom_vjp``), so ``bpjax.train`` and
``bpjax.sweep`` can train with it unchanged.

>>> import jax, jax.numpy as jnp
>>> from bpjax import nets, losses
>>> net = nets.mlp([3, 5, 2], activation="sigmoid")
>>> p = net.init(jax.random.key(0))
>>> x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
>>> g = gradient(p, (x, y), "sigmoid")
>>> ref = jax.grad(losses.supervised(net.apply, "mse"))(p, (x, y))
>>> bool(jnp.allclose(g["layers"][0]["w"], ref["layers"][0]["w"], atol=1e-7))
True
"""

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import nets

# f'(z) written with the activation a = f(z) where that is how the textbook has it.
DERIVATIVES = {
    "sigmoid": lambda z, a: a * (1 - a),
    "tanh": lambda z, a: 1 - a**2,
    "relu": lambda z, a: (z > 0).astype(z.dtype),
    "identity": lambda z, a: jnp.ones_like(z),
}
LOSSES = ("mse", "half_mse", "cross_entropy")


def _check(activation, output_activation, loss):
    for name in (activation, output_activation):
        if name not in DERIVATIVES:
            raise ValueError(f"the delta rule is written for activations {list(DERIVATIVES)}, "
                             f"got {name!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "cross_entropy" and output_activation != "identity":
        raise ValueError("cross_entropy takes logits: use output_activation='identity'")


def _output_error(out, y, loss):
    """dLoss/d(output) for the mean over examples of the per-example loss."""
    n = out.shape[0]
    if loss == "mse":
        return 2 * (out - y) / n
    if loss == "half_mse":
        return (out - y) / n
    return (jax.nn.softmax(out, axis=-1) - jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)) / n


def _value(out, y, loss):
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))
    sq = jnp.mean(jnp.sum((out - y) ** 2, axis=-1))
    return sq / 2 if loss == "half_mse" else sq


def gradient(params, batch, activation="tanh", output_activation="identity", loss="mse"):
    """The gradient of the batch loss by the delta rule; same pytree as ``params``."""
    _check(activation, output_activation, loss)
    x, y = batch
    zs, acts = nets.forward(params, x, activation, output_activation)
    layers = params["layers"]
    last = len(layers) - 1
    delta = _output_error(acts[-1], y, loss) * DERIVATIVES[output_activation](zs[-1], acts[-1])
    grads = [None] * len(layers)
    for i in range(last, -1, -1):
        a_prev = x if i == 0 else acts[i - 1]
        g = {"w": a_prev.T @ delta}
        if "b" in layers[i]:
            g["b"] = jnp.sum(delta, axis=0)
        grads[i] = g
        if i > 0:
            delta = (delta @ layers[i]["w"].T) * DERIVATIVES[activation](zs[i - 1], acts[i - 1])
    return {"layers": grads}


def loss(activation="tanh", output_activation="identity", loss="mse"):
    """``loss(params, (x, y))`` of an ``mlp``, whose ``jax.grad`` runs the delta rule."""
    _check(activation, output_activation, loss)
    kind = loss

    @jax.custom_vjp
    def value(params, batch):
        x, y = batch
        return _value(nets.forward(params, x, activation, output_activation)[1][-1], y, kind)

    def fwd(params, batch):
        return value(params, batch), (params, batch)

    def bwd(res, g):
        params, batch = res
        grads = gradient(params, batch, activation, output_activation, kind)
        return jax.tree.map(lambda d: g * d, grads), jax.tree.map(_zero_cotangent, batch)

    value.defvjp(fwd, bwd)
    return value


def _zero_cotangent(a):
    if jnp.issubdtype(a.dtype, jnp.floating):
        return jnp.zeros_like(a)
    return np.zeros(a.shape, dtype=jax.dtypes.float0)
