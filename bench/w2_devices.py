"""W2 on one CPU device and on one device per core (not a test).

The same bpjax.sweep (2-8-1 tanh MLP on XOR, 1024 configs x 2000 steps, SGD,
loss every 20 steps) in two fresh processes: ``BPJAX_CPU_DEVICES=1`` (JAX's
default single CPU device) and bpjax's default (one device per core, the
configuration axis sharded over them). Prints both times and the ratio, and
checks the two results agree.

    python bench/w2_devices.py [--configs 1024] [--steps 2000]
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def one(n: int, steps: int, out: str) -> None:
    from common import best_of

    import bpjax
    from bpjax import losses, nets

    net = nets.mlp([2, 8, 1], activation="tanh")
    loss = losses.supervised(net.apply, "mse")
    init = lambda c, k: net.init(k, w_init=bpjax.initializers.normal(1.0))  # noqa: E731
    grid = bpjax.Grid(lr=[0.1], seed=np.arange(n))  # no run diverges (measured)
    res = {}

    def run():
        res["r"] = bpjax.sweep(loss, init, "sgd", grid, steps, record_every=20,
                               data=bpjax.problems.xor(), record_params=False, progress=False)
        return res["r"].loss

    t = best_of(run, 10)
    np.save(out, res["r"].loss)
    print(json.dumps({"seconds": t, "devices": len(res["r"].meta["devices"])}))


def main() -> None:
    from common import cli

    n, steps = cli(__doc__, 1024, 2000)
    import jax

    from bpjax import devices

    print(f"W2 on CPU devices: {n} configs x {steps} steps; {devices.cores()} cores, "
          f"jax {jax.__version__}")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, env in (("1 device", {"BPJAX_CPU_DEVICES": "1"}), ("1 per core", {})):
            clean = {k: v for k, v in os.environ.items()
                     if k not in ("BPJAX_CPU_DEVICES", "XLA_FLAGS")}
            out = subprocess.run([sys.executable, __file__, "--one", str(n), str(steps),
                                  f"{tmp}/{len(times)}.npy"], env=clean | env,
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            times[label] = r["seconds"]
            print(f"  {label:>10} ({r['devices']} device(s)): {r['seconds']:.3f} s", flush=True)
        a, b = np.load(f"{tmp}/0.npy"), np.load(f"{tmp}/1.npy")
    print(f"  one device per core: x{times['1 device'] / times['1 per core']:.2f} faster; "
          f"losses agree to {np.max(np.abs(a - b)):.1e} absolute")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        sys.path.insert(0, os.path.dirname(__file__))
        one(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
