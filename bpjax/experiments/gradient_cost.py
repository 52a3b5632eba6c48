"""What a gradient costs: reverse mode, the delta rule, forward mode, finite differences (seed 003).

Seed 003 says backpropagation computes all w partial derivatives in O(w), where
differentiating each weight on its own costs O(w^2). We measure it on tanh MLPs
[n, n, n, 1] (a batch of 8 examples, squared error) whose parameter count w runs
from about 10 to about 10^6, in two currencies:

- XLA's own count of floating-point operations of the compiled computation
  (``jit(f).lower(...).compile().cost_analysis()["flops"]``): deterministic,
  machine independent, and what the tests check;
- wall time on this machine (median of repeated runs, compile excluded), for the
  sizes where it is affordable.

Methods: the forward pass (the loss value alone); reverse mode (``jax.grad``);
the delta rule written by hand (``bpjax.backprop.gradient``); forward mode
(``jax.jacfwd``: one Jacobian-vector product per weight); central finite
differences (two forward passes per weight). Forward mode and finite differences
are only counted up to w of a few 10^4 (beyond that the vmapped program itself
holds w copies of the net); their slope is fitted there.

What we measure (default size): FLOPs grow with slope ~1.0 for the forward pass,
reverse mode and the delta rule, and ~2.0 for forward mode and finite
differences; a reverse-mode gradient costs 2.5-3x a forward pass at every size
(the "cheap gradient" bound says at most ~3-5x), the delta rule the same
within a few percent. The exact slopes and ratios are in summary.json.

Memory: the seed also says the forward pass stores all activations, O(n) memory. We
read XLA's buffer assignment of the compiled forward pass and reverse-mode gradient
(``compile().memory_analysis().temp_size_in_bytes``: the scratch the program needs
beyond its arguments and outputs) for tanh MLPs of width 64 with 1 to 32 hidden layers
at a batch of 512, and for the [n, n, n, 1] nets above at that batch. The batch is
large so that one layer's activations (batch x width floats) outweigh its weight
gradient (width^2): at batch 8 XLA parks the stored activations in the gradient's
own output buffers before it writes them, and the temporaries no longer show them.
What we measure (default size): the gradient's temporaries grow by exactly batch x
width x 4 bytes per hidden layer (one stored activation each; slope ~1 in depth),
the forward pass's stay constant (it keeps two layers live): backprop's memory is
linear in depth x batch x width.
"""

import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bpjax import backprop, losses, nets
from bpjax.compilation_cache import ONCE
from bpjax.experiments import script

SEED = "003"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does a gradient by backpropagation cost O(w), against O(w^2) for finite "
            "differences, and how many forward passes is it? (seed 003)")
SIZES = {"default": dict(widths=[2, 4, 8, 16, 32, 64, 128, 256, 400, 700], quadratic_max=24_000,
                         timed_max=3_000_000, quadratic_timed_max=9_000, repeats=5),
         "quick": dict(widths=[2, 4, 8, 16, 32, 64], quadratic_max=10_000,
                       timed_max=20_000, quadratic_timed_max=3_000, repeats=2)}
DEPTHS = {"default": [1, 2, 4, 8, 16, 32], "quick": [1, 2, 4, 8, 16]}
MEMORY_WIDTH, MEMORY_BATCH = 64, 512  # batch > width: activations outweigh weight gradients
BATCH = 8
METHODS = ("forward", "reverse", "delta_rule", "forward_mode", "finite_differences")
QUADRATIC = ("forward_mode", "finite_differences")


def params_of(net, rng) -> dict:
    """``net``'s params, N(0, 1/fan_in) weights and zero biases drawn by NumPy: what a
    gradient costs (FLOPs, bytes, seconds) does not depend on the values, and a jitted
    init compiled a program for each of the 17 nets (4.6 s of a 13 s compile bill)."""
    shapes = jax.eval_shape(net.init, jax.random.key(0))
    return jax.tree.map(lambda s: jax.device_put(
        (rng.normal(size=s.shape) / np.sqrt(s.shape[0]) if len(s.shape) == 2
         else np.zeros(s.shape)).astype(s.dtype)), shapes)


def flatten(params) -> tuple[jax.Array, Callable]:
    """``ravel_pytree`` with the vector built on the host (eagerly, its concatenate and
    reshapes each compiled a program per net); ``unravel`` is the same split and reshape."""
    leaves, tree = jax.tree.flatten(params)
    cuts = np.cumsum([leaf.size for leaf in leaves])[:-1]

    def unravel(v):
        return tree.unflatten([part.reshape(leaf.shape)
                               for part, leaf in zip(jnp.split(v, cuts), leaves)])

    return jax.device_put(np.concatenate([np.ravel(leaf) for leaf in leaves])), unravel


def problem(width: int):
    net = nets.mlp([width, width, width, 1], activation="tanh")
    rng = np.random.default_rng(0)
    batch = (jax.device_put(rng.normal(size=(BATCH, width)).astype(np.float32)),
             jax.device_put(rng.normal(size=(BATCH, 1)).astype(np.float32)))
    params = params_of(net, rng)
    flat, unravel = flatten(params)
    loss = losses.supervised(net.apply, "mse")
    f = lambda v: loss(unravel(v), batch)  # noqa: E731
    eps = 1e-3

    def finite_differences(v):
        basis = jnp.eye(v.size, dtype=v.dtype) * eps
        return jax.vmap(lambda e: (f(v + e) - f(v - e)) / (2 * eps))(basis)

    fns = {
        "forward": f,
        "reverse": jax.grad(f),
        "delta_rule": lambda v: ravel_pytree(backprop.gradient(unravel(v), batch, "tanh"))[0],
        "forward_mode": jax.jacfwd(f),
        "finite_differences": finite_differences,
    }
    return flat, fns


def memory_problem(width: int, depth: int, batch: int = MEMORY_BATCH):
    """A tanh MLP with ``depth`` hidden layers of ``width`` units, its params as a pytree
    (no flat vector: slicing one would add weight copies to the temporaries), a batch,
    and the forward pass and reverse-mode gradient as functions of (params, batch)."""
    net = nets.mlp([width] * (depth + 1) + [1], activation="tanh")
    rng = np.random.default_rng(0)
    data = (jax.device_put(rng.normal(size=(batch, width)).astype(np.float32)),
            jax.device_put(rng.normal(size=(batch, 1)).astype(np.float32)))
    params = params_of(net, rng)
    loss = losses.supervised(net.apply, "mse")
    return params, data, {"forward": loss, "reverse": jax.grad(loss)}


def memory(fn, *args) -> dict:
    """XLA's buffer assignment of the compiled ``fn``: bytes of temporaries, arguments and
    outputs (decided before LLVM's passes: compiled at ``ONCE``'s level, the same)."""
    m = jax.jit(fn).lower(*args).compile(compiler_options=ONCE).memory_analysis()
    return {"temp_bytes": int(m.temp_size_in_bytes), "argument_bytes":
            int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes)}


def measure_memory(size) -> dict:
    rows = {"by_depth": [], "by_width": []}
    for key, shapes in (("by_depth", [(MEMORY_WIDTH, d) for d in DEPTHS[size]]),
                        ("by_width", [(w, 2) for w in SIZES[size]["widths"]])):
        for width, depth in shapes:
            params, data, fns = memory_problem(width, depth)
            rows[key].append({"width": width, "depth": depth,
                              **{m: memory(f, params, data) for m, f in fns.items()}})
    deep = [r for r in rows["by_depth"] if r["depth"] >= 4]  # past the shallow nets' fixed part
    temp = lambda rs, m: [r[m]["temp_bytes"] for r in rs]  # noqa: E731
    per_layer = float(np.polyfit([r["depth"] for r in deep], temp(deep, "reverse"), 1)[0])
    wide = [r for r in rows["by_width"] if r["width"] >= 16]
    return {"width": MEMORY_WIDTH, "batch": MEMORY_BATCH, "bytes_per_float": 4, **rows,
            "reverse_temp_bytes_per_layer": per_layer,
            "per_layer_over_batch_x_width_x_4": per_layer / (MEMORY_BATCH * MEMORY_WIDTH * 4),
            "temp_slope_in_depth": {m: _slope([r["depth"] for r in deep], temp(deep, m))
                                    for m in ("forward", "reverse")},
            "temp_slope_in_width": {m: _slope([r["width"] for r in wide], temp(wide, m))
                                    for m in ("forward", "reverse")}}


def measure(fn, arg, timed: bool, repeats: int):
    # XLA counts the FLOPs of its optimized HLO, which LLVM's level does not change: only
    # a timed program is compiled at full optimization
    compiled = jax.jit(fn).lower(arg).compile(compiler_options=None if timed else ONCE)
    flops = float(compiled.cost_analysis()["flops"])
    seconds = None
    if timed:
        jax.block_until_ready(compiled(arg))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(arg))
            times.append(time.perf_counter() - t0)
        seconds = float(np.median(times))
    return flops, seconds


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    rows = []
    for width in size["widths"]:
        flat, fns = problem(width)
        w = int(flat.size)
        row = {"width": width, "w": w}
        for name in METHODS:
            if name in QUADRATIC and w > size["quadratic_max"]:
                continue
            limit = size["quadratic_timed_max"] if name in QUADRATIC else size["timed_max"]
            row[name] = dict(zip(("flops", "seconds"),
                                 measure(fns[name], flat, w <= limit, size["repeats"])))
        rows.append(row)
    numbers = {"batch": BATCH, "rows": rows, "flops_slope": {}, "seconds_slope": {},
               "gradient_over_forward_flops": {}}
    for name in METHODS:
        pts = [(r["w"], r[name]["flops"], r[name]["seconds"]) for r in rows if name in r]
        big = [p for p in pts if p[0] >= 100]  # the asymptote, past fixed overheads
        numbers["flops_slope"][name] = _slope([p[0] for p in big], [p[1] for p in big])
        timed = [p for p in big if p[2] is not None and p[2] > 1e-4]
        numbers["seconds_slope"][name] = (_slope([p[0] for p in timed], [p[2] for p in timed])
                                          if len(timed) >= 3 else None)
        if name != "forward":
            ratios = [r[name]["flops"] / r["forward"]["flops"] for r in rows if name in r]
            numbers["gradient_over_forward_flops"][name] = {"min": min(ratios), "max": max(ratios)}
    numbers["memory"] = measure_memory("quick" if quick else "default")
    numbers.update(finding(numbers))
    _figure(rows, numbers, os.path.join(out, "gradient_cost.png"))
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Reproduced when the FLOP slopes in w are 1 for the gradients by backprop and 2 for
    forward mode and finite differences (within 0.15 each) and a gradient costs at most 5
    forward passes (the cheap-gradient bound)."""
    s, ratio = numbers["flops_slope"], numbers["gradient_over_forward_flops"]
    linear = all(abs(s[m] - 1) < 0.15 for m in ("forward", "reverse", "delta_rule"))
    quadratic = all(abs(s[m] - 2) < 0.15 for m in QUADRATIC)
    cheap = ratio["reverse"]["max"] <= 5
    mem = numbers["memory"]
    depth_slope = mem["temp_slope_in_depth"]
    stores = (abs(depth_slope["reverse"] - 1) < 0.15 and abs(depth_slope["forward"]) < 0.15
              and 0.9 <= mem["per_layer_over_batch_x_width_x_4"] <= 1.5)
    verdict = ("reproduced" if linear and quadratic and cheap and stores
               else "partly" if linear or quadratic or stores else "refuted")
    depths = [r["depth"] for r in mem["by_depth"]]
    forward = [r["forward"]["temp_bytes"] for r in mem["by_depth"]]
    ws = [r["w"] for r in numbers["rows"]]
    return script.stated(verdict, (
        f"XLA's FLOP counts for w = {min(ws):,} to {max(ws):,} parameters grow with slope "
        f"{s['forward']:.2f} (forward pass), {s['reverse']:.2f} (reverse mode) and "
        f"{s['delta_rule']:.2f} (the hand-written delta rule, bpjax.backprop) against "
        f"{s['forward_mode']:.2f} (forward mode) and {s['finite_differences']:.2f} (central "
        f"differences); a reverse-mode gradient costs {ratio['reverse']['min']:.1f} to "
        f"{ratio['reverse']['max']:.1f} forward passes at every size. The saving is a factor "
        "of w, not the 'exponential speedup' the seed calls it. Memory (XLA's temporaries, "
        f"width {mem['width']}, batch {mem['batch']}, {min(depths)} to {max(depths)} hidden "
        f"layers): the gradient's grow by {mem['reverse_temp_bytes_per_layer']:,.0f} bytes per "
        f"layer ({mem['per_layer_over_batch_x_width_x_4']:.2f} x batch x width x 4 bytes, one "
        f"stored activation per layer; slope {depth_slope['reverse']:.2f} in depth), the "
        f"forward pass's stay at {min(forward):,} to {max(forward):,} bytes (slope "
        f"{depth_slope['forward']:.2f}): backprop keeps every layer's activations, memory "
        "linear in depth x batch x width."))


def _slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _figure(rows, numbers, path):
    fig, axes = script.subplots(1, 4, figsize=(21, 5), constrained_layout=True)
    for name, marker in zip(METHODS, "os^vD"):
        pts = [(r["w"], r[name]) for r in rows if name in r]
        w = [p[0] for p in pts]
        slope = numbers["flops_slope"][name]
        axes[0].plot(w, [p[1]["flops"] for p in pts], marker + "-",
                     label=f"{name} (slope {slope:.2f})")
        timed = [(x, p["seconds"]) for x, p in pts if p["seconds"] is not None]
        if timed:
            ts = numbers["seconds_slope"][name]
            axes[1].plot(*zip(*timed), marker + "-",
                         label=f"{name}" + (f" (slope {ts:.2f} where > 0.1 ms)" if ts else ""))
        if name != "forward":
            axes[2].plot(w, [r[name]["flops"] / r["forward"]["flops"] for r in rows if name in r],
                         marker + "-", label=name)
    axes[0].set(xscale="log", yscale="log", xlabel="parameters w", ylabel="FLOPs (XLA count)",
                title="Cost of one gradient, counted by XLA\n(tanh MLP [n, n, n, 1], batch 8)")
    axes[1].set(xscale="log", yscale="log", xlabel="parameters w", ylabel="seconds (median)",
                title="Wall time on this machine (compile excluded)")
    axes[2].set(xscale="log", yscale="log", xlabel="parameters w",
                ylabel="gradient FLOPs / forward FLOPs",
                title="How many forward passes a gradient costs")
    axes[2].axhline(3, color="gray", ls=":", label="3 forward passes")
    mem = numbers["memory"]
    depths = [r["depth"] for r in mem["by_depth"]]
    for m, marker in (("forward", "o"), ("reverse", "s")):
        axes[3].plot(depths, [r[m]["temp_bytes"] for r in mem["by_depth"]], marker + "-",
                     label=f"{m} (slope {mem['temp_slope_in_depth'][m]:.2f})")
    axes[3].plot(depths, [d * mem["batch"] * mem["width"] * 4 for d in depths], "k:",
                 label="depth x batch x width x 4 bytes")
    axes[3].set(xscale="log", yscale="log", xlabel="hidden layers",
                ylabel="temporary bytes (XLA buffer assignment)",
                title=f"Memory: width {mem['width']}, batch {mem['batch']}")
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(True, which="major", alpha=0.3)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "gradient_cost")
