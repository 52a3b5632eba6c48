"""What the workload benchmarks share: timing, the machine's matmul peak, a header."""

import time

import jax
import jax.numpy as jnp
import numpy as np


def best_of(fn, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one untimed warm-up call)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def loop_seconds(run_one, n: int, k: int) -> float:
    """A Python loop of single runs, ``run_one(i)`` for i < k (after a warm-up call),
    scaled to ``n`` runs."""
    jax.block_until_ready(run_one(0))
    t0 = time.perf_counter()
    for i in range(k):
        jax.block_until_ready(run_one(i))
    return (time.perf_counter() - t0) * n / k


def cli(doc: str, configs: int, steps: int):
    """The benches' command line: ``--configs`` and ``--steps``."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--configs", type=int, default=configs)
    p.add_argument("--steps", type=int, default=steps)
    a = p.parse_args()
    return a.configs, a.steps


def matmul_peak(n: int = 2048) -> float:
    """float32 GFLOP/s of one large jitted matmul on the default device."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    return 2 * n**3 / best_of(lambda: f(a), 5) / 1e9


def step_flops(fn, *args) -> float:
    """XLA's FLOP count of one call of ``fn`` (use on a single step: XLA counts a
    loop body once, not once per iteration)."""
    return float(jax.jit(fn).lower(*args).compile().cost_analysis()["flops"])


def header(title: str) -> float:
    dev = jax.devices()[0]
    peak = matmul_peak()
    print(f"{title}\ndevice: {dev.device_kind} ({jax.default_backend()}, "
          f"{jax.device_count()} device(s)), jax {jax.__version__}; "
          f"measured float32 matmul peak {peak:.0f} GFLOP/s")
    return peak


def report(rows: dict, config_steps: int, flops: float | None, peak: float, ref: str) -> None:
    """One line per method: seconds, ratio to ``ref``, M config-steps/s, GFLOP/s."""
    for name, t in rows.items():
        line = (f"  {name:<34s} {t:9.4f} s   x{t / rows[ref]:6.2f} of {ref:<10s}"
                f" {config_steps / t / 1e6:9.2f} M config-steps/s")
        if flops is not None:
            g = flops / t / 1e9
            line += f"   {g:8.2f} GFLOP/s ({100 * g / peak:5.1f}% of peak)"
        print(line, flush=True)


def matmul_ceiling(x, weights, steps: int, peak: float) -> None:
    """Prints what an MLP step's matmuls reach on their own: the dot shapes of the
    vmapped forward (h_i = h_{i-1} @ W_i) and backward (d_{i-1} = d_i @ W_i^T,
    dW_i = h_{i-1}^T @ d_i) over configs (``weights``: (configs, n_in, n_out) each),
    in a scan of ``steps``, with nothing else (no bias, activation, loss or
    optimizer). No schedule of that step does its matmuls faster than this."""

    def matmuls(ws):
        hs = [x]
        for w in ws:
            hs.append(hs[-1] @ w)
        d, grads = hs[-1], []
        for h, w in zip(hs[-2::-1], ws[::-1]):
            grads.append(h.T @ d)
            d = d @ w.T
        return [w + 1e-9 * g for w, g in zip(ws, grads[::-1])]

    one = lambda ws: jax.lax.scan(lambda ws, _: (matmuls(ws), None), ws, None, steps)[0]  # noqa: E731
    run = jax.jit(jax.vmap(one))
    t = best_of(lambda: run(list(weights)), 2)
    g = step_flops(jax.vmap(matmuls), list(weights)) * steps / t / 1e9
    print(f"  the step's matmuls alone (same shapes, {steps} steps): {t:9.4f} s "
          f"{g:8.2f} GFLOP/s ({100 * g / peak:5.1f}% of peak)", flush=True)
