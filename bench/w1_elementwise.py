"""W1: the seed-000 net (2 weights), 4096 configs x 1000 steps of SGD (not a test).

Compares in one run: bpjax.sweep (guards and loss recording every 10 steps, as
users run it), a plain jit(vmap(lax.scan)) written by hand, the hand-batched
kernel (params as arrays of shape (configs,), gradient of the summed loss,
fori_loop), hand-vectorized NumPy with the analytic gradient, and a loop of
jitted single runs (timed on 64 configurations and scaled, as stated).

    python bench/w1_elementwise.py [--configs 4096] [--steps 1000]
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from common import best_of, cli, header, loop_seconds, report

import bpjax
from bpjax.problems import SEED000_TARGET, SEED000_X, seed000_loss

LR = 0.1


def main(n: int, steps: int) -> None:
    header(f"W1: seed-000 net, {n} configs x {steps} steps, SGD lr {LR}")
    side = int(round(n ** 0.5))
    w = np.linspace(-3, 3, side, dtype=np.float32)
    w1, w2 = (a.ravel() for a in np.meshgrid(w, w, indexing="ij"))
    grid = bpjax.Grid(w1=w, w2=w, lr=[LR])
    init = lambda c, k: {"w1": c["w1"], "w2": c["w2"]}  # noqa: E731
    rows = {}
    rows["bpjax.sweep"] = best_of(repeats=10, fn=lambda: bpjax.sweep(
        seed000_loss, init, "sgd", grid, steps, record_every=10, record_params=False,
        progress=False).loss)
    rows["bpjax.sweep, fast_compile=False"] = best_of(repeats=10, fn=lambda: bpjax.sweep(
        seed000_loss, init, "sgd", grid, steps, record_every=10, record_params=False,
        progress=False, fast_compile=False).loss)

    @jax.jit
    def plain(w1, w2):
        def one(p):
            def body(p, _):
                v, g = jax.value_and_grad(seed000_loss)(p)
                return jax.tree.map(lambda a, b: a - LR * b, p, g), v
            return jax.lax.scan(body, p, None, steps)
        return jax.vmap(one)({"w1": w1, "w2": w2})

    rows["plain jit(vmap(scan))"] = best_of(lambda: plain(w1, w2), 10)

    @jax.jit
    def kernel(w1, w2):
        total = lambda p: jnp.sum(seed000_loss(p))  # noqa: E731 - elementwise over configs
        def body(_, p):
            g = jax.grad(total)(p)
            return {"w1": p["w1"] - LR * g["w1"], "w2": p["w2"] - LR * g["w2"]}
        return jax.lax.fori_loop(0, steps, body, {"w1": w1, "w2": w2})

    rows["hand-batched kernel"] = best_of(lambda: kernel(w1, w2), 10)

    def numpy_loop():
        a, b = w1.copy(), w2.copy()
        for _ in range(steps):
            h = 1 / (1 + np.exp(-a * SEED000_X))
            y = 1 / (1 + np.exp(-b * h))
            d = (y - SEED000_TARGET) * y * (1 - y)
            a, b = a - LR * d * b * h * (1 - h) * SEED000_X, b - LR * d * h
        return a

    t0 = time.perf_counter()
    ref = numpy_loop()
    rows["numpy, vectorized by hand"] = time.perf_counter() - t0
    np.testing.assert_allclose(np.asarray(kernel(w1, w2)["w1"]), ref, rtol=1e-3, atol=1e-4)

    k = min(64, n)  # one configuration at a time: plain over a batch of 1
    rows[f"loop of jitted runs (x{n // k} of {k})"] = loop_seconds(
        lambda i: plain(w1[i:i + 1], w2[i:i + 1]), n, k)
    report(rows, n * steps, None, 1.0, "hand-batched kernel")


if __name__ == "__main__":
    main(*cli(__doc__, 4096, 1000))
