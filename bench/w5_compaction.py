"""W5: compaction. W2 (2-8-1 tanh MLP on XOR, SGD) where 90% of the grid diverges early.

1024 configs x 2000 steps: 10 learning rates, 0.1 and 9 far past stability
(those runs overflow within the first 10% of the steps), x 102 seeds, plus
padding seeds to 1024. The same sweep with ``compact=True`` (the default: dead
runs are dropped between segments, live ones re-packed into a power-of-two
batch) and ``compact=False``; prints both times, the ratio, the config-steps each
computed, and how far the live runs' losses moved (XLA may round differently
per batch size).

    python bench/w5_compaction.py [--configs 1024] [--steps 2000]
"""

import numpy as np
from common import best_of, cli, header

import bpjax
from bpjax import losses, nets


def main(n: int, steps: int) -> None:
    header(f"W5: compaction, 2-8-1 tanh MLP on XOR, {n} configs x {steps} steps, SGD")
    net = nets.mlp([2, 8, 1], activation="tanh")
    loss = losses.supervised(net.apply, "mse")
    init = lambda c, k: net.init(k, w_init=bpjax.initializers.normal(1.0))  # noqa: E731
    lrs = [0.1] + list(np.geomspace(50, 500, 9))  # 0.1: no run diverges; 50+: all do
    grid = bpjax.Grid(lr=lrs, seed=np.arange(n // len(lrs)))
    results = {}

    def run(compact):
        results[compact] = bpjax.sweep(loss, init, "sgd", grid, steps, record_every=20,
                                       data=bpjax.problems.xor(), record_params=False,
                                       compact=compact, progress=False)
        return results[compact].loss

    times = {c: best_of(lambda c=c: run(c)) for c in (False, True)}
    off, on = results[False], results[True]
    dead = off.diverged
    assert np.array_equal(off.diverged_at, on.diverged_at)
    assert np.array_equal(off.loss[dead], on.loss[dead])
    moved = np.max(np.abs(on.loss[~dead] - off.loss[~dead]))  # (losses go to ~0: absolute)
    print(f"  diverged {dead.mean():.1%} of {grid.size}, all by step "
          f"{off.diverged_at[dead].max()} of {steps}")
    for c in (False, True):
        print(f"  compact={c!s:5}: {times[c]:8.3f} s, {results[c].meta['config_steps']:.3g} "
              f"config-steps computed")
    print(f"  compaction: x{times[False] / times[True]:.2f} faster; diverged runs' records "
          f"identical, live runs' losses within {moved:.1e} (absolute; they start near 0.25-1)")


if __name__ == "__main__":
    main(*cli(__doc__, 1020, 2000))
