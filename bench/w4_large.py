"""W4: W1 at a large grid: 1,048,576 configs x 1000 steps, loss recorded every 10 (not a test).

Reports the time per config-step against the same sweep at 4096 configs, and the
process's peak resident memory (the loss records alone are configs x 101 x 4
bytes; params are not recorded).

    python bench/w4_large.py [--configs 1048576] [--steps 1000]
"""

import resource
import time

import numpy as np
from common import cli, header

import bpjax
from bpjax.problems import seed000_loss


def timed(n: int, steps: int) -> float:
    side = int(round(n ** 0.5))
    w = np.linspace(-3, 3, side, dtype=np.float32)
    grid = bpjax.Grid(w1=w, w2=w, lr=[0.1])
    init = lambda c, k: {"w1": c["w1"], "w2": c["w2"]}  # noqa: E731
    run = lambda: bpjax.sweep(seed000_loss, init, "sgd", grid, steps, record_every=10,  # noqa: E731
                              record_params=False, progress=False)
    run()  # compile (and warm up)
    t0 = time.perf_counter()
    res = run()
    t = time.perf_counter() - t0
    print(f"  {side * side:>9d} configs: {t:8.3f} s, {t / (side * side * steps) * 1e9:7.3f} "
          f"ns per config-step, chunks {res.meta['n_chunks']} x {res.meta['chunk_size']}, "
          f"diverged {res.diverged.mean():.3f}", flush=True)
    return t / (side * side * steps)


def main(n: int, steps: int) -> None:
    header(f"W4: seed-000 net, {n} configs x {steps} steps, loss every 10 steps")
    small = timed(4096, steps)
    large = timed(n, steps)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  per config-step, large / 4096: x{large / small:.2f}; peak resident memory "
          f"{peak_gb:.2f} GB")


if __name__ == "__main__":
    main(*cli(__doc__, 1 << 20, 1000))
