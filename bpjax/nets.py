"""Networks as pairs of pure functions, ``Net(init, apply)``, as in stax.

``init(key) -> params`` builds a pytree of arrays; ``apply(params, x) -> y``
maps one example to outputs; batch it with ``jax.vmap(apply, (None, 0))``.
Any pytree of the same structure works as params, so explicit values such as
``{"w1": 0.1, "w2": -0.5}`` for a hand-written net are as good as an init.

>>> import jax, jax.numpy as jnp
>>> net = mlp([2, 3, 1], activation="tanh")
>>> params = net.init(jax.random.key(0))
>>> jax.vmap(net.apply, (None, 0))(params, jnp.ones((5, 2))).shape
(5, 1)
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bpjax import initializers

Params = Any
Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "identity": lambda z: z,
    "softmax": jax.nn.softmax,
}


class Net(NamedTuple):
    init: Callable[..., Params]
    apply: Callable[[Params, jax.Array], jax.Array]


def activation_fn(activation: str | Activation | None) -> Activation:
    if activation is None:
        return ACTIVATIONS["identity"]
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)} or a callable"
        )
    return ACTIVATIONS[activation]


def chosen(index, activations) -> Activation:
    """The activation ``activations[index]`` for a traced ``index``: a grid axis of
    activations that compiles one program, not one per activation as a static axis does.
    Under vmap every branch is computed and one selected (the matmuls are shared); the
    selected values are the branch's own.

    Example:
      >>> import jax.numpy as jnp
      >>> f = chosen(jnp.int32(1), ["sigmoid", "relu"])
      >>> f(jnp.array([-1.0, 2.0])).tolist()
      [0.0, 2.0]
    """
    fns = [activation_fn(a) for a in activations]
    return lambda z: jax.lax.switch(jnp.asarray(index, jnp.int32), fns, z)


def mlp(
    sizes,
    activation: str | Activation = "tanh",
    bias: bool = True,
    output_activation: str | Activation | None = None,
) -> Net:
    """A fully connected net with layer widths ``sizes`` (inputs first).

    Params are ``{"layers": [{"w": (n_in, n_out), "b": (n_out,)}, ...]}``.
    ``init(key, w_init=xavier(), b_init=zeros)`` takes any initializers from
    ``bpjax.initializers``; biases are left out entirely when ``bias=False``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
    hidden = activation_fn(activation)
    last = activation_fn(output_activation)

    def init(key, w_init=None, b_init=initializers.zeros) -> Params:
        w_init = initializers.xavier() if w_init is None else w_init
        keys = jax.random.split(key, 2 * (len(sizes) - 1))
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layer = {"w": w_init(keys[2 * i], (n_in, n_out), jnp.float32)}
            if bias:
                layer["b"] = b_init(keys[2 * i + 1], (n_out,), jnp.float32)
            layers.append(layer)
        return {"layers": layers}

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return forward(params, x, hidden, last)[1][-1]

    return Net(init, apply)


def forward(params: Params, x: jax.Array, activation: str | Activation = "tanh",
            output_activation: str | Activation | None = None):
    """Every layer's pre-activation z_l = a_{l-1} W_l + b_l and activation a_l = f_l(z_l)
    of an ``mlp`` (``x`` is a_0, not included): ``(zs, acts)``, lists with one entry per
    layer. ``mlp(...).apply`` is ``acts[-1]``; ``bpjax.backprop`` keeps them all.

    >>> import jax, jax.numpy as jnp
    >>> p = mlp([2, 3, 1]).init(jax.random.key(0))
    >>> [z.shape for z in forward(p, jnp.ones((5, 2)))[0]]
    [(5, 3), (5, 1)]
    """
    hidden, last = activation_fn(activation), activation_fn(output_activation)
    layers = params["layers"]
    zs, acts = [], []
    for i, layer in enumerate(layers):
        z = x @ layer["w"]
        if "b" in layer:  # (a batch's leading axes made explicit: rank promotion may raise)
            z = z + jnp.expand_dims(layer["b"], tuple(range(z.ndim - 1)))
        x = last(z) if i == len(layers) - 1 else hidden(z)
        zs.append(z)
        acts.append(x)
    return zs, acts


def preactivations(params: Params, x: jax.Array, activation: str | Activation = "relu"):
    """The pre-activations z_l of every layer of an ``mlp`` (``forward``'s ``zs``).

    >>> import jax, jax.numpy as jnp
    >>> p = mlp([2, 3, 1]).init(jax.random.key(0))
    >>> [z.shape for z in preactivations(p, jnp.ones(2), "tanh")]
    [(3,), (1,)]
    """
    return forward(params, x, activation, activation)[0]
