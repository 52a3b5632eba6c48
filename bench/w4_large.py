"""W4: W1 at a large grid: 1,048,576 configs x 1000 steps, loss and params every 10 (not a test).

Each size runs in a fresh process (so that peak resident memory is its own): the
sweep at 4096 configs, then at ``--configs`` with its trajectories streamed to
``.npy`` files in a temporary folder (``out=``), then at ``--summary`` configs
with ``record="summary"`` (no trajectories: min, first step below 0.01, final).
Reports the time per config-step against 4096 configs and each process's peak
resident memory. The trajectories alone are configs x 101 records x 3 floats
(loss, w1, w2) = 1.2 GB at 1M configs.

    python bench/w4_large.py [--configs 1048576] [--steps 1000] [--summary 10485760]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def one(n: int, steps: int, mode: str) -> dict:
    import bpjax
    from bpjax.problems import seed000_loss

    side = int(round(n ** 0.5))
    w = np.linspace(-3, 3, side, dtype=np.float32)
    grid = bpjax.Grid(w1=w, w2=w, lr=[0.1])
    init = lambda c, k: {"w1": c["w1"], "w2": c["w2"]}  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        def run(i):
            kw = dict(record_every=10, progress=False, target=0.01)
            if mode == "disk":
                kw["out"] = f"{tmp}/{i}"
            if mode == "summary":
                kw["record"] = "summary"
            return bpjax.sweep(seed000_loss, init, "sgd", grid, steps, **kw)

        run(0)  # compile (and warm up)
        t0 = time.perf_counter()
        res = run(1)
        t = time.perf_counter() - t0
        assert np.isfinite(res.final_loss).all()
    return {"configs": side * side, "seconds": t, "ns": t / (side * side * steps) * 1e9,
            "chunks": f"{res.meta['n_chunks']} x {res.meta['chunk_size']}",
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=1 << 20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--summary", type=int, default=10 * (1 << 20))
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[0]), int(a.one[1]), a.one[2])))
        return
    import jax

    dev = jax.devices()[0]
    print(f"W4: seed-000 net, W1 at scale, {a.steps} steps, SGD lr 0.1, records every 10\n"
          f"device: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    rows = [("4096, in memory", 4096, "memory"), (f"{a.configs}, streamed to disk", a.configs,
                                                  "disk"),
            (f"{a.summary}, summaries only", a.summary, "summary")]
    base = None
    for label, n, mode in rows:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), str(a.steps), mode],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        base = base or r["ns"]
        print(f"  {label:>32}: {r['seconds']:8.3f} s, {r['ns']:7.3f} ns per config-step "
              f"(x{r['ns'] / base:.2f} of 4096), chunks {r['chunks']}, peak resident "
              f"memory {r['peak_gb']:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
