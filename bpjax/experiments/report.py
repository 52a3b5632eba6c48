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


def content_hash(module, quick: bool) -> str:
    """The experiment's code, the library's code (not the other experiments') and the
    sizes it runs at."""
    h = hashlib.sha256(b"quick" if quick else b"default")
    h.update(json.dumps(module.SIZES["quick" if quick else "default"], sort_keys=True).encode())
    package = Path(__file__).parent  # bpjax/experiments
    root = package.parent  # bpjax
    own = {Path(module.__file__).resolve(), (package / "script.py").resolve(),
           *(p.resolve() for p in package.glob("_*.py"))}  # (private helpers of experiments)
    for path in sorted(root.rglob("*.py")):  # subpackages too (bpjax/sweep/)
        if path.parent.resolve() == package.resolve() and path.resolve() not in own:
            continue
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()[:16]


def reproduce(names=None, quick: bool = False, out="report", force: bool = False,
              stream=sys.stderr, store="checkout") -> dict:
    """Runs experiments (all by default) into ``out/NAME/`` and writes ``out/index.html``.

    An experiment whose code and sizes are unchanged since its last run in ``out`` is
    reused unless ``force``; one that fails is reported and does not stop the others.
    At default size each verdict and finding, with its numbers, goes into ``store``: by
    default ``bpjax/experiments/findings.json`` (which the README's table is made from)
    when bpjax runs from a source checkout, and nowhere when it is installed (no write
    into site-packages); a path; or None: nowhere. Returns ``{name: entry}`` with status
    ``ran``, ``reused`` or ``failed``.
    """
    names = list(experiments.REGISTRY) if not names else list(names)
    modules = {n: experiments.load(n) for n in names}  # unknown names fail before anything runs
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    t_all = time.perf_counter()
    for i, (name, module) in enumerate(modules.items()):
        folder = out / name
        folder.mkdir(exist_ok=True)
        digest = content_hash(module, quick)
        stream.write(f"[{i + 1}/{len(modules)}] {name}: ")
        entry = {"question": module.QUESTION, "seed": getattr(module, "SEED", ""),
                 "quick": quick,
                 "sizes": module.SIZES["quick" if quick else "default"], "hash": digest}
        stored = _read_json(folder / HASH_FILE)
        if not force and stored and stored.get("hash") == digest \
                and (folder / "summary.json").exists():
            entry.update(status="reused", seconds=stored["seconds"],
                         numbers=_read_json(folder / "summary.json"))
            stream.write("unchanged, reused\n")
        else:
            stream.write("running\n")
            t0 = time.perf_counter()
            try:
                numbers = module.run(str(folder), quick=quick)
                entry.update(status="ran", numbers=numbers)
            except Exception as e:  # noqa: BLE001 - one failure must not stop the others
                entry.update(status="failed", error=f"{type(e).__name__}: {e}",
                             traceback=traceback.format_exc())
            entry["seconds"] = time.perf_counter() - t0
            if entry["status"] == "ran":
                atomic_write_text(folder / HASH_FILE, json.dumps(
                    {"hash": digest, "seconds": entry["seconds"]}))
            elif (folder / HASH_FILE).exists():
                (folder / HASH_FILE).unlink()
        entry["figures"] = sorted(p.name for p in folder.glob("*.png"))
        entry["files"] = sorted(p.name for p in folder.glob("*.csv"))
        if entry.get("numbers"):
            tables.write_tables(folder, entry["numbers"])
        entries[name] = entry
        done = sum(1 for _ in entries)
        bar = "#" * (30 * done // len(modules))
        stream.write(f"    overall [{bar:<30}] {done}/{len(modules)}, "
                     f"{time.perf_counter() - t_all:.0f}s: {name} {entry['status']} "
                     f"in {entry['seconds']:.1f}s\n")
        stream.flush()
    atomic_write_text(out / "index.html", page.render(entries, machine()))
    if store == "checkout":
        store = findings.FILE if findings.in_checkout() else None
    if not quick and store is not None and findings.store(entries, store):
        stream.write(f"stored the findings in {store}; `bpjax reproduce --readme` rewrites "
                     "the README's table from them\n")
    return entries


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


