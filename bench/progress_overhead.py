"""What the progress bar costs: one segment, no bar, against 10 and 50 segments with a bar.

Segments are what drive the bar (and checkpoints); each is a separate dispatch plus
a host copy of its records. Workload: the XOR 2-8-1 tanh net, 1024 configs x 2000
steps, SGD, loss recorded every 20 steps. Times are the best of 3, compile excluded.

    python bench/progress_overhead.py
"""

import io
import time

import jax
import numpy as np

import bpjax
from bpjax import initializers, losses, nets, problems
from bpjax.progress import Progress

NET = nets.mlp([2, 8, 1], activation="tanh")
LOSS = losses.supervised(NET.apply, "mse")


def init(config, key):
    return NET.init(key, w_init=initializers.uniform(config["scale"]))


def timed(**kw) -> float:
    grid = bpjax.Grid(lr=np.geomspace(1e-2, 0.2, 32), scale=np.linspace(0.1, 2, 32))
    run = lambda: bpjax.sweep(LOSS, init, "sgd", grid, 2000, record_every=20,  # noqa: E731
                              data=problems.xor(), **kw)
    run()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    print(f"device: {jax.devices()[0].device_kind}, {len(jax.devices())} device(s), "
          f"jax {jax.__version__}")
    base = timed(segments=1, progress=False)
    print(f"1 segment, no bar:    {base:.3f} s")
    # The bar writes to a buffer so the measurement is not of a terminal.
    orig = Progress.__init__

    def to_buffer(self, total, label="", enabled=None, stream=None):
        orig(self, total, label, True, io.StringIO())

    Progress.__init__ = to_buffer
    for segments in (10, 50):
        t = timed(segments=segments)
        print(f"{segments} segments with bar: {t:.3f} s  ({100 * (t / base - 1):+.1f}%)")
    Progress.__init__ = orig


if __name__ == "__main__":
    main()
