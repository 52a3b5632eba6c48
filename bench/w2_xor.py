"""W2: a 2-8-1 tanh MLP on XOR, 1024 configs x 2000 steps of SGD (not a test).

Compares in one run: bpjax.sweep (guards on, loss recorded every 20 steps), a
plain jit(vmap(lax.scan)) written by hand, a hand-batched kernel (weights stacked
as (configs, ...) arrays, einsum, fori_loop), and a loop of jitted single runs
(timed on 16 configurations and scaled, as stated); GFLOP/s from XLA's count of
one vmapped step, against the matmul peak measured in the same run.

    python bench/w2_xor.py [--configs 1024] [--steps 2000]
"""

import jax
import jax.numpy as jnp
import numpy as np
from common import best_of, cli, header, loop_seconds, matmul_ceiling, report, step_flops

import bpjax
from bpjax import losses, nets

LR = 0.1  # (at 0.5, 99% of these runs diverge by step ~25: measured)


def main(n: int, steps: int) -> None:
    peak = header(f"W2: 2-8-1 tanh MLP on XOR, {n} configs x {steps} steps, SGD lr {LR}")
    x, y = bpjax.problems.xor()
    net = nets.mlp([2, 8, 1], activation="tanh")
    loss = losses.supervised(net.apply, "mse")
    init = lambda c, k: net.init(k, w_init=bpjax.initializers.normal(1.0))  # noqa: E731
    grid = bpjax.Grid(lr=[LR], seed=np.arange(n))
    starts = bpjax.initial_params(init, grid)
    starts = jax.tree.map(lambda a: jnp.asarray(a[0]), starts)  # (n, ...)
    rows = {}
    rows["bpjax.sweep"] = best_of(repeats=10, fn=lambda: bpjax.sweep(
        loss, init, "sgd", grid, steps, record_every=20, data=(x, y), record_params=False,
        progress=False).loss)
    rows["bpjax.sweep, fast_compile=False"] = best_of(repeats=10, fn=lambda: bpjax.sweep(
        loss, init, "sgd", grid, steps, record_every=20, data=(x, y), record_params=False,
        progress=False, fast_compile=False).loss)

    def sgd_step(p):
        return jax.tree.map(lambda a, g: a - LR * g, p, jax.grad(loss)(p, (x, y)))

    @jax.jit
    def plain(p0):
        def one(p):
            return jax.lax.scan(lambda p, _: (sgd_step(p), None), p, None, steps)[0]
        return jax.vmap(one)(p0)

    rows["plain jit(vmap(scan))"] = best_of(lambda: plain(starts), 10)

    def batched_loss(p):  # summed over configs: each config's gradient is its own
        (l1, l2) = p["layers"]
        h = jnp.tanh(jnp.einsum("ed,cdh->ceh", x, l1["w"]) + l1["b"][:, None])
        out = jnp.einsum("ceh,cho->ceo", h, l2["w"]) + l2["b"][:, None]
        return jnp.sum(jnp.mean(jnp.sum((out - y[None]) ** 2, -1), -1))

    @jax.jit
    def kernel(p0):
        return jax.lax.fori_loop(0, steps, lambda _, p: jax.tree.map(
            lambda a, g: a - LR * g, p, jax.grad(batched_loss)(p)), p0)

    rows["hand-batched kernel"] = best_of(lambda: kernel(starts), 10)
    np.testing.assert_allclose(np.asarray(kernel(starts)["layers"][1]["b"]),
                               np.asarray(plain(starts)["layers"][1]["b"]), atol=2e-3)
    single = jax.jit(lambda p: jax.lax.scan(lambda p, _: (sgd_step(p), None), p, None, steps)[0])
    k = 16
    rows[f"loop of jitted runs (x{n // k} of {k})"] = loop_seconds(
        lambda i: single(jax.tree.map(lambda a: a[i], starts)), n, k)
    flops = step_flops(jax.vmap(sgd_step), starts) * steps
    report(rows, n * steps, flops, peak, "plain jit(vmap(scan))")
    matmul_ceiling(x, [layer["w"] for layer in starts["layers"]], steps, peak)


if __name__ == "__main__":
    main(*cli(__doc__, 1024, 2000))
