"""W3: a 64-128-10 ReLU MLP on the digits, 64 configs x 500 steps of Adam (not a test).

Full batch (1347 images). Compares in one run: bpjax.sweep (guards on, loss
recorded every 10 steps), a plain jit(vmap(lax.scan)) written by hand, and a
Python loop of jitted single runs over all configs; GFLOP/s from XLA's count of
one vmapped step, against the matmul peak measured in the same run.

    python bench/w3_digits.py [--configs 64] [--steps 500]
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import best_of, cli, header, loop_seconds, matmul_ceiling, report, step_flops

import bpjax
from bpjax import losses, nets

LR = 1e-3


def main(n: int, steps: int) -> None:
    peak = header(f"W3: 64-128-10 ReLU MLP on digits, {n} configs x {steps} steps, Adam {LR}")
    (x, y), _ = bpjax.problems.digits()
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    net = nets.mlp([64, 128, 10], activation="relu")
    loss = losses.supervised(net.apply, "cross_entropy")
    init = lambda c, k: net.init(k, w_init=bpjax.initializers.he())  # noqa: E731
    grid = bpjax.Grid(lr=[LR], seed=np.arange(n))
    starts = jax.tree.map(lambda a: jnp.asarray(a[0]), bpjax.initial_params(init, grid))
    rows = {}
    rows["bpjax.sweep"] = best_of(lambda: bpjax.sweep(
        loss, init, "adam", grid, steps, record_every=10, data=(x, y), record_params=False,
        progress=False).loss, 2)
    tx = optax.adam(LR)

    def adam_step(c):
        p, s = c
        u, s = tx.update(jax.grad(loss)(p, (x, y)), s, p)
        return optax.apply_updates(p, u), s

    def one(p):
        return jax.lax.scan(lambda c, _: (adam_step(c), None), (p, tx.init(p)), None, steps)[0]

    plain = jax.jit(jax.vmap(one))
    rows["plain jit(vmap(scan))"] = best_of(lambda: plain(starts), 2)
    single = jax.jit(one)
    rows["loop of jitted single runs"] = loop_seconds(
        lambda i: single(jax.tree.map(lambda a: a[i], starts)), n, n)
    states = jax.vmap(tx.init)(starts)
    flops = step_flops(jax.vmap(adam_step), (starts, states)) * steps
    report(rows, n * steps, flops, peak, "plain jit(vmap(scan))")
    matmul_ceiling(x, [layer["w"] for layer in starts["layers"]], steps, peak)


if __name__ == "__main__":
    main(*cli(__doc__, 64, 500))
