"""One compiled sweep against a Python loop of jitted single runs (not a test).

The seed-000 net over a 64 x 64 grid of initial (w1, w2), 1000 steps of SGD at
lr 0.1. Both sides are compiled before timing; both record the loss every step.

    python bench/sweep_vs_loop.py [--n 64] [--steps 1000]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import bpjax
from bpjax import problems


def main(n: int, steps: int) -> None:
    w = np.linspace(-2.0, 2.0, n, dtype=np.float32)
    grid = bpjax.Grid(w1=w, w2=w, lr=[0.1])
    init = lambda c, k: {"w1": c["w1"], "w2": c["w2"]}  # noqa: E731

    def do_sweep():
        return bpjax.sweep(problems.seed000_loss, init, "sgd", grid, steps, progress=False)

    do_sweep()  # compile
    t0 = time.perf_counter()
    res = do_sweep()
    t_sweep = time.perf_counter() - t0

    @jax.jit
    def single(w1, w2):
        tx = bpjax.optim.sgd(0.1)
        params = {"w1": w1, "w2": w2}
        state = tx.init(params)

        def step(carry, _):
            params, state = carry
            value, g = jax.value_and_grad(problems.seed000_loss)(params)
            updates, state = tx.update(g, state, params)
            return (jax.tree.map(jnp.add, params, updates), state), value

        _, losses = jax.lax.scan(step, (params, state), None, length=steps)
        return losses

    single(w[0], w[0]).block_until_ready()  # compile
    t0 = time.perf_counter()
    loop = np.array([[np.asarray(single(a, b)) for b in w] for a in w])
    t_loop = time.perf_counter() - t0

    np.testing.assert_allclose(res.loss[:, :, 0, :-1], loop, rtol=1e-5, atol=1e-7)
    configs = n * n
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"seed-000 net, {n}x{n} = {configs} configurations x {steps} steps, SGD lr 0.1")
    print(f"bpjax.sweep (one compiled call): {t_sweep:8.3f} s  "
          f"({configs * steps / t_sweep / 1e6:7.1f} M config-steps/s)")
    print(f"loop of jitted single runs:      {t_loop:8.3f} s  "
          f"({configs * steps / t_loop / 1e6:7.1f} M config-steps/s)")
    print(f"loop / sweep: {t_loop / t_sweep:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    main(args.n, args.steps)
