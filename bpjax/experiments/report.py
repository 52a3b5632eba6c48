"""``bpjax reproduce``: run the experiments (``bpjax.experiments``) into one static report."""

import hashlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from bpjax import experiments
from bpjax.experiments import findings, page, tables
from bpjax.io import atomic_write_text

HASH_FILE = ".bpjax-hash"


def content_hash(name: str, quick: bool, declared: dict | None = None) -> str:
    """Experiment ``name``'s code, the library's code (not the other experiments') and
    the sizes it runs at (``declared``: its ``_constants``, where already read)."""
    h = hashlib.sha256(b"quick" if quick else b"default")
    declared = _constants(name) if declared is None else declared
    h.update(json.dumps(declared["SIZES"]["quick" if quick else "default"],
                        sort_keys=True).encode())
    package = Path(__file__).parent  # bpjax/experiments
    root = package.parent  # bpjax
    own = {Path(declared["file"]).resolve(), (package / "script.py").resolve(),
           *(p.resolve() for p in package.glob("_*.py"))}  # (private helpers of experiments)
    for path in sorted(root.rglob("*.py")):  # subpackages too (bpjax/sweep/)
        if path.parent.resolve() == package.resolve() and path.resolve() not in own:
            continue
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()[:16]


def _constants(name: str) -> dict:
    """Experiment ``name``'s SEED, QUESTION, SIZES and file: its module's, where it is
    imported; else read from its source where they are literals (the experiments run in
    other processes: this one need not import them)."""
    module = sys.modules.get(f"bpjax.experiments.{name}") if name in experiments.REGISTRY \
        else None
    if module is None:
        found = experiments.declared(name)  # unknown names fail here
        if {"QUESTION", "SIZES"} <= found.keys():
            return {**found, "file": str(Path(experiments.__file__).parent / f"{name}.py")}
        module = experiments.load(name)  # computed: the module knows them
    return {"SEED": getattr(module, "SEED", ""), "QUESTION": module.QUESTION,
            "SIZES": module.SIZES, "file": module.__file__}


def reproduce(names=None, quick: bool = False, out="report", force: bool = False,
              stream=sys.stderr, store="checkout", jobs: int = 1) -> dict:
    """Runs experiments (all by default) into ``out/NAME/`` and writes ``out/index.html``.

    An experiment whose code and sizes are unchanged since its last run in ``out`` is
    reused unless ``force``; one that fails is reported and does not stop the others.
    With ``jobs`` > 1 the experiments run in that many fresh processes at once (their
    own progress goes to ``out/NAME/log.txt``; one left to run alone runs in this
    process, as with ``jobs=1``), the longest of their last runs first
    (their seconds are kept beside the compiled programs, in ``~/.cache/bpjax``):
    compilation, most of a quick run's time, keeps one core busy per process. Each
    experiment computes the same numbers either way. At default size each verdict and
    finding, with its numbers, goes into ``store``: by default
    ``bpjax/experiments/findings.json`` (which the README's table is made from) when
    bpjax runs from a source checkout, and nowhere when it is installed (no write into
    site-packages); a path; or None: nowhere. Returns ``{name: entry}`` with status
    ``ran``, ``reused`` or ``failed``.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive number of processes, not {jobs!r}")
    names = list(experiments.REGISTRY) if not names else list(names)
    constants = {n: _constants(n) for n in names}  # unknown names fail before anything runs
    names = list(constants)  # (each once)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, todo = {}, []
    t_all = time.perf_counter()

    def done(name, entry):
        folder = out / name
        entry["figures"] = sorted(p.name for p in folder.glob("*.png"))
        entry["files"] = sorted(p.name for p in folder.glob("*.csv"))
        if entry.get("numbers"):
            tables.write_tables(folder, entry["numbers"])
        entries[name] = entry
        bar = "#" * (30 * len(entries) // len(names))
        stream.write(f"    overall [{bar:<30}] {len(entries)}/{len(names)}, "
                     f"{time.perf_counter() - t_all:.0f}s: {name} {entry['status']} "
                     f"in {entry['seconds']:.1f}s\n")
        stream.flush()

    for i, (name, declared) in enumerate(constants.items()):
        folder = out / name
        folder.mkdir(exist_ok=True)
        digest = content_hash(name, quick, declared)
        entry = {"question": declared["QUESTION"], "seed": declared["SEED"], "quick": quick,
                 "sizes": declared["SIZES"]["quick" if quick else "default"], "hash": digest}
        stored = _read_json(folder / HASH_FILE)
        if not force and stored and stored.get("hash") == digest \
                and (folder / "summary.json").exists():
            entry.update(status="reused", seconds=stored["seconds"],
                         numbers=_read_json(folder / "summary.json"))
            stream.write(f"[{i + 1}/{len(names)}] {name}: unchanged, reused\n")
            done(name, entry)
        else:
            todo.append((name, entry))
    if jobs == 1 or len(todo) == 1:  # (one alone: no process to start and import bpjax)
        for name, entry in todo:
            stream.write(f"[{names.index(name) + 1}/{len(names)}] {name}: running\n")
            entry.update(_run(experiments.load(name).run, out / name, quick))
            _finish(out / name, entry)
            done(name, entry)
    elif todo:
        _run_in_processes(todo, out, quick, jobs, stream, done)
    _remember_seconds(entries, quick)
    entries = {n: entries[n] for n in names}  # in the registry's order
    atomic_write_text(out / "index.html", page.render(entries, machine()))
    if store == "checkout":
        store = findings.FILE if findings.in_checkout() else None
    if not quick and store is not None and findings.store(entries, store):
        stream.write(f"stored the findings in {store}; `bpjax reproduce --readme` rewrites "
                     "the README's table from them\n")
    return entries


def default_jobs() -> int:
    """``bpjax reproduce``'s processes: one per core on a CPU backend (each process
    compiles on one core), one on an accelerator (whose memory one process takes)."""
    import jax

    from bpjax import devices

    return devices.cores() if jax.default_backend() == "cpu" else 1


HEARTBEAT = 30.0  # seconds between "still running" lines while processes work
# Where no run's seconds are remembered yet (a fresh machine), these start first: the
# slowest ones, cold (bench/README.md, session 14). A long one started last runs alone
# while the other cores idle (relu_scaling, 190 s at default size, ended last so).
SLOWEST = {"quick": ("gradient_cost", "relu_init_map", "relu_scaling", "minima_census",
                     "linear_step", "vanishing_gradients", "initialization"),
           "default": ("relu_scaling", "minima_census", "vanishing_gradients",
                       "relu_init_map", "gradient_cost", "initialization", "linear_step")}


# Added to a BrokenProcessPool's error: the usual cause when every process dies at once.
BROKEN_POOL = (" (if the processes died at their start: they run with multiprocessing's "
               "spawn, which imports the calling script again: a script that calls "
               "reproduce(jobs > 1) must run it under `if __name__ == '__main__':`, "
               "or use jobs=1)")


def _seconds_file() -> Path:
    """The experiments' last run times, beside the compiled programs (only an order)."""
    from bpjax import compilation_cache

    return Path(compilation_cache.directory()) / "reproduce-seconds.json"


def _remember_seconds(entries: dict, quick: bool) -> None:
    ran = {f"{'quick' if quick else 'default'}/{n}": e["seconds"]
           for n, e in entries.items() if e["status"] == "ran"}
    if not ran:
        return
    try:
        path = _seconds_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**(_read_json(path) or {}), **ran}, indent=1))
    except OSError:
        pass  # only the next run's order is lost


def _run_in_processes(todo, out: Path, quick: bool, jobs: int, stream, done) -> None:
    """Runs ``todo`` ([(name, entry)]) in ``jobs`` fresh processes, the longest of their
    last runs first (so that no long one starts last), and hands each finished entry
    to ``done``."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    last = _read_json(_seconds_file()) or {}
    size = "quick" if quick else "default"
    todo = sorted(todo, key=lambda t: (-last.get(f"{size}/{t[0]}", 0.0), _rank(t[0], size)))
    jobs = min(jobs, len(todo))
    stream.write(f"running {len(todo)} experiments in {jobs} processes (each one's own "
                 f"progress in {out}/NAME/log.txt)\n")
    stream.flush()
    t0 = time.perf_counter()
    queue = list(todo)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        # At most one submitted per process: the pool marks every call it has queued as
        # running (the heartbeat named five with two processes), and the order holds.
        pending = {}

        def submit():
            name, entry = queue.pop(0)
            try:
                future = pool.submit(_worker, name, str(out / name), quick)
            except BrokenProcessPool as e:  # a process died: failed like those it ran
                future = Future()
                future.set_exception(e)
            pending[future] = name, entry

        for _ in range(jobs):
            submit()
        while pending:
            finished, _ = wait(pending, timeout=HEARTBEAT, return_when=FIRST_COMPLETED)
            for future in finished:
                name, entry = pending.pop(future)
                if queue:
                    submit()
                try:
                    entry.update(future.result())
                except Exception as e:  # noqa: BLE001 - a process that died (memory, a crash)
                    entry.update(status="failed", seconds=0.0,
                                 error=f"its process died: {type(e).__name__}: {e}"
                                 + (BROKEN_POOL if isinstance(e, BrokenProcessPool) else ""))
                _finish(out / name, entry)
                done(name, entry)
            if not finished:
                running = [n for f, (n, _) in pending.items() if f.running()]
                stream.write(f"    ... {time.perf_counter() - t0:.0f}s, running: "
                             f"{', '.join(running) or '(starting)'}\n")
                stream.flush()


def _rank(name: str, size: str) -> int:
    slowest = SLOWEST[size]
    return slowest.index(name) if name in slowest else len(slowest)


def _worker(name: str, folder: str, quick: bool) -> dict:
    """One experiment in a process of its own; its progress to ``folder/log.txt``."""
    import contextlib

    module = experiments.load(name)
    with open(Path(folder) / "log.txt", "w") as log, contextlib.redirect_stderr(log), \
            contextlib.redirect_stdout(log):
        return _run(module.run, Path(folder), quick)


def _run(run, folder: Path, quick: bool) -> dict:
    """An experiment's outcome: status, numbers or error, and its seconds."""
    t0 = time.perf_counter()
    try:
        outcome = {"status": "ran", "numbers": run(str(folder), quick=quick)}
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others
        outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()}
    outcome["seconds"] = time.perf_counter() - t0
    return outcome


def _finish(folder: Path, entry: dict) -> None:
    """The hash file of a run that worked (the next run reuses it); none for a failure."""
    if entry["status"] == "ran":
        atomic_write_text(folder / HASH_FILE, json.dumps(
            {"hash": entry["hash"], "seconds": entry["seconds"]}))
    elif (folder / HASH_FILE).exists():
        (folder / HASH_FILE).unlink()


def machine() -> dict:
    import jax
    import optax

    from bpjax import __version__

    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__, "optax": optax.__version__, "bpjax": __version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


