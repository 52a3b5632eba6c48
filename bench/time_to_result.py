"""Time to result: a fresh process, compilation included, cold and warm cache (not a test).

For W1, W2 (3 optimizers) and W3, runs ``bpjax.sweep`` and the same training
written by hand as a plain ``jit(vmap(scan))`` with optax, each in its own fresh
process (this script with ``--child``), once with an empty persistent compilation
cache (cold), then again with the same cache (warm); ``--states cold,warm,off``
adds a process with the cache off (``BPJAX_CACHE=0``, as before bpjax turned it on).
Reports the process's wall time, its ``import bpjax``, the first call (trace,
lower, compile and run until the result is on the host) and, from jax.monitoring,
the XLA compilations and the programs loaded from the cache (JAX times both with
``/jax/core/compile/backend_compile_duration``; a load is the one preceded by a
``/jax/compilation_cache/cache_hits`` event), and tracing and lowering seconds.
The bench files' own hand-written baselines are closures inside their ``main``,
so the plain scan is written here once (their workload constants are imported).

    python bench/time_to_result.py                   # the markdown table
    python bench/time_to_result.py --w3 16 100       # W3's configs and steps (64 x 500)
    python bench/time_to_result.py --reproduce [NAME ...]  # `bpjax reproduce --quick`
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPILE = "/jax/core/compile/backend_compile_duration"
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
HIT = "/jax/compilation_cache/cache_hits"
WORKLOADS = {
    "W1": "seed-000 net, 4096 x 1000, SGD",
    "W2": "XOR 2-8-1, 3 optimizers x 1024 x 2000",
    "W3": "digits 64-128-10, Adam, {n} x {steps}{reduced}",
}
STATES = ("cold", "warm")
W3 = (64, 500)  # bench/w3_digits.py's configs and steps


class Events:
    """Counts and seconds of XLA compilations, cache loads, tracing and lowering."""

    def __init__(self):
        import jax

        self.n = dict.fromkeys(("compiled", "loaded", "traced", "lowered"), 0)
        self.s = dict.fromkeys(self.n, 0.0)
        self._hits = 0
        self.programs = []  # the names of those compiled, in order
        jax.monitoring.register_event_listener(self._event)
        jax.monitoring.register_event_duration_secs_listener(self._duration)

    def _event(self, event, **kw):
        if event == HIT:  # recorded just before the load's duration event
            self._hits += 1

    def _duration(self, event, secs, **kw):
        if event == COMPILE:
            kind = "loaded" if self._hits else "compiled"
            self._hits = max(0, self._hits - 1)
            if kind == "compiled":
                self.programs.append(kw.get("fun_name"))
        else:
            kind = {TRACE: "traced", LOWER: "lowered"}.get(event)
        if kind is not None:
            self.n[kind] += 1
            self.s[kind] += secs


def plain(loss, tx, steps: int, data=None):
    """A plain jit(vmap(scan)) of ``steps`` optax updates from a batch of params."""
    import jax
    import optax

    grad = jax.grad(loss)

    def one(p):
        def step(c, _):
            p, s = c
            u, s = tx.update(grad(p) if data is None else grad(p, data), s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (p, tx.init(p)), None, steps)[0][0]

    return jax.jit(jax.vmap(one))


def child(workload: str, method: str, n3: int, steps3: int) -> dict:
    t0 = time.perf_counter()
    events = Events()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from w1_elementwise import LR as LR1
    from w2_xor import LR as LR2
    from w3_digits import LR as LR3

    import bpjax
    from bpjax import losses, nets
    from bpjax.problems import seed000_loss

    imported = time.perf_counter()
    if workload == "W1":
        w = np.linspace(-3, 3, 64, dtype=np.float32)
        grid = bpjax.Grid(w1=w, w2=w, lr=[LR1])
        init = lambda c, k: {"w1": c["w1"], "w2": c["w2"]}  # noqa: E731
        loss, opts, steps, data, every, lr = seed000_loss, ["sgd"], 1000, None, 10, LR1
    elif workload == "W2":
        x, y = bpjax.problems.xor()
        net = nets.mlp([2, 8, 1], activation="tanh")
        loss, data, steps, every = losses.supervised(net.apply, "mse"), (x, y), 2000, 20
        init = lambda c, k: net.init(k, w_init=bpjax.initializers.normal(1.0))  # noqa: E731
        lr, opts = LR2, ["sgd", "momentum", "adam"]
        grid = bpjax.Grid(lr=[lr], seed=np.arange(1024))
    else:
        (x, y), _ = bpjax.problems.digits()
        data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32))
        net = nets.mlp([64, 128, 10], activation="relu")
        loss, steps, every = losses.supervised(net.apply, "cross_entropy"), steps3, 10
        init = lambda c, k: net.init(k, w_init=bpjax.initializers.he())  # noqa: E731
        grid, opts, lr = bpjax.Grid(lr=[LR3], seed=np.arange(n3)), ["adam"], LR3
    t1 = time.perf_counter()
    if method == "bpjax.sweep":
        r = bpjax.sweep(loss, init, opts if len(opts) > 1 else opts[0], grid, steps,
                        record_every=every, data=data, record_params=False, progress=False)
        np.asarray(r.final_loss)
    else:
        if workload == "W1":
            a, b = np.meshgrid(w, w, indexing="ij")
            starts = {"w1": a.ravel(), "w2": b.ravel()}
        else:
            starts = jax.tree.map(lambda a: a[0], bpjax.initial_params(init, grid))
        txs = {"sgd": optax.sgd(lr), "momentum": optax.sgd(lr, momentum=0.9),
               "adam": optax.adam(lr)}
        for name in opts:
            jax.device_get(plain(loss, txs[name], steps, data)(starts))
    t2 = time.perf_counter()
    return {"import_s": imported - t0, "call_s": t2 - t1, "n": events.n, "s": events.s,
            "programs": events.programs,
            "devices": jax.device_count(), "cache": jax.config.jax_compilation_cache_dir}


def run_child(workload: str, method: str, cache_home: str, state: str, n3: int,
              steps3: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BPJAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = cache_home
    # this checkout's bpjax, not whichever is installed (a child runs as a script, so
    # its cwd is not on sys.path): two checkouts compare their own code
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if state == "off":
        env["BPJAX_CACHE"] = "0"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", workload, method,
                          "--w3", str(n3), str(steps3)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{workload} {method} {state}:\n{out.stderr}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got["wall_s"] = wall
    return got


def table(workloads, states, n3: int, steps3: int) -> None:
    import jax

    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs; each row one fresh process; "
          f"compile = XLA compilations, load = programs read from the persistent cache "
          f"(their seconds summed over threads: bpjax compiles first segments on a thread "
          f"of their own, so they may add up to more than the call's wall time)\n")
    print("| workload | method | cache | process s | import s | first call s | "
          "XLA compiles (s) | loaded from cache (s) | trace + lower s |")
    print("|---|---|---|---|---|---|---|---|---|")
    programs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for wl in workloads:
            reduced = "" if (n3, steps3) == W3 else ", reduced from 64 x 500"
            title = WORKLOADS[wl].format(n=n3, steps=steps3, reduced=reduced)
            for method in ("bpjax.sweep", "plain jit(vmap(scan))"):
                home = os.path.join(tmp, f"{wl}-{method[:5]}")
                for state in states:
                    g = run_child(wl, method, home, state, n3, steps3)
                    n, s = g["n"], g["s"]
                    print(f"| {wl} ({title}) | {method} | {state} | {g['wall_s']:.2f} | "
                          f"{g['import_s']:.2f} | {g['call_s']:.2f} | "
                          f"{n['compiled']} ({s['compiled']:.2f}) | "
                          f"{n['loaded']} ({s['loaded']:.2f}) | "
                          f"{s['traced'] + s['lowered']:.2f} |", flush=True)
                    if state == "cold":
                        programs[f"{wl} {method}"] = g["programs"]
    print("\nprograms compiled in the cold process:")
    for name, progs in programs.items():
        print(f"- {name}: {', '.join(progs)}")


def reproduce(names: list[str]) -> None:
    """``bpjax reproduce --quick [NAMES]`` cold (empty cache) and warm (same cache, a
    new output folder so that no experiment is reused), with per-experiment seconds
    (each experiment's ``.bpjax-hash`` records them)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("BPJAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
        env["XDG_CACHE_HOME"] = os.path.join(tmp, "xdg")
        seconds = {}
        for state in ("cold", "warm"):
            out = os.path.join(tmp, state)
            t0, cpu0, stolen0 = time.perf_counter(), _children_cpu(), _stolen()
            # (its progress, per experiment, goes to stderr as it runs)
            done = subprocess.run([sys.executable, "-c", "from bpjax.cli import main; "
                                   "raise SystemExit(main())", "reproduce", *names,
                                   "--quick", "--out", out], env=env, cwd=ROOT)
            wall = time.perf_counter() - t0
            print(f"{state}: {wall:.1f} s (exit {done.returncode}); CPU time of its "
                  f"processes {_children_cpu() - cpu0:.1f} s; stolen from this VM "
                  f"{_stolen() - stolen0:.1f} s", flush=True)
            for f in sorted(Path(out).glob("*/.bpjax-hash")):
                seconds.setdefault(f.parent.name, {})[state] = json.loads(
                    f.read_text())["seconds"]
        print("\n| experiment | cold s | warm s |\n|---|---|---|")
        for name, s in seconds.items():
            print(f"| {name} | {s.get('cold', float('nan')):.1f} | "
                  f"{s.get('warm', float('nan')):.1f} |")


def _children_cpu() -> float:
    """User + system seconds of the finished child processes (and theirs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stolen() -> float:
    """Seconds the hypervisor ran others on this VM's CPUs (Linux's steal time; 0 where
    it is not reported): a VM that is throttled shows it here, and its wall times grow."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("WORKLOAD", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--w3", nargs=2, type=int, default=W3, metavar=("CONFIGS", "STEPS"))
    p.add_argument("--workloads", default="W1,W2,W3")
    p.add_argument("--states", default=",".join(STATES))
    p.add_argument("--reproduce", nargs="*", metavar="NAME",
                   help="time `bpjax reproduce --quick [NAME ...]` instead (default: all)")
    a = p.parse_args()
    if a.child:
        sys.path.insert(0, str(HERE))
        print(json.dumps(child(*a.child, *a.w3)))
    elif a.reproduce is not None:
        reproduce(a.reproduce)
    else:
        table(a.workloads.split(","), a.states.split(","), *a.w3)


if __name__ == "__main__":
    main()
