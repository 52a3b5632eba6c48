"""What divergence costs the runs that do not diverge (not a test).

4096 runs of GD on a 64-dim quadratic-plus-tanh loss, 4000 steps in 10 segments:
all at lr 0.1 ("calm"), or with 1% of them at lr 1.0005-1.02, which diverge one
after another, in 8 of the 10 segments ("sporadic"). Each segment where a run
diverges is run again with the per-step guard: on the runs that broke only (the
default), or on every run (as before), with and without the next segment run
ahead. Compaction keeps the batch at 4096 here (the 31 dead runs fit its
padding), so what is measured is the replays.

    python bench/replay.py [--configs 4096] [--steps 4000]
"""

import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import cli

import bpjax

SWEEP = importlib.import_module("bpjax.sweep.segments")


def loss(p):
    return jnp.sum(p["x"] ** 2) + 0.1 * jnp.sum(jnp.tanh(p["x"]) ** 2)


def init(config, key):
    return {"x": config["x0"] * jnp.ones(64)}


def main(n: int, steps: int) -> None:
    print(f"replays: {n} runs x {steps} steps, 10 segments; {jax.devices()[0].device_kind} "
          f"({jax.device_count()} device(s)), jax {jax.__version__}")
    calm = np.full(n, 0.1, np.float32)
    sporadic = calm.copy()
    sporadic[::100] = np.linspace(1.0005, 1.02, sporadic[::100].size)
    backend = jax.default_backend()

    def timed(lr, replay_rows, ahead):
        SWEEP.REPLAY_ROWS, SWEEP.RUN_AHEAD[backend] = replay_rows, ahead
        run = lambda: bpjax.sweep(loss, init, "sgd", bpjax.Grid(lr=lr, x0=[1.0]), steps,  # noqa: E731
                                  record_every=steps // 100, segments=10, progress=False,
                                  record_params=False)
        res, best = run(), float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            res = run()
            best = min(best, time.perf_counter() - t0)
        return best, res

    rows, ahead0 = SWEEP.REPLAY_ROWS, SWEEP.RUN_AHEAD.get(backend, True)
    base, _ = timed(calm, rows, ahead0)
    print(f"  calm (no divergence):                    {base:7.3f} s")
    for label, replay_rows, ahead in [("broken runs only (default)", rows, ahead0),
                                      ("broken runs only, run ahead", rows, True),
                                      ("every run", 10**9, ahead0),
                                      ("every run, run ahead", 10**9, True)]:
        t, res = timed(sporadic, replay_rows, ahead)
        m = res.meta
        print(f"  sporadic, replaying {label:<28s} {t:7.3f} s = x{t / base:.2f} calm; "
              f"{int(res.diverged.sum())} diverged, {m['replays']} replays of "
              f"{m['replayed_config_steps']:.3g} config-steps, {m['discarded']} discarded")
    SWEEP.REPLAY_ROWS, SWEEP.RUN_AHEAD[backend] = rows, ahead0


if __name__ == "__main__":
    main(*cli(__doc__, 4096, 4000))
