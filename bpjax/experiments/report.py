"""``bpjax reproduce``: run the experiments (``bpjax.experiments``) into one static report."""

import hashlib
import html
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from bpjax import experiments
from bpjax.io import atomic_write_text

HASH_FILE = ".bpjax-hash"


def content_hash(module, quick: bool) -> str:
    """The experiment's code, the library's code (not the other experiments') and the
    sizes it runs at."""
    h = hashlib.sha256(b"quick" if quick else b"default")
    h.update(json.dumps(module.SIZES["quick" if quick else "default"], sort_keys=True).encode())
    package = Path(__file__).parent  # bpjax/experiments
    root = package.parent  # bpjax
    own = {Path(module.__file__).resolve(), (package / "script.py").resolve()}
    for path in sorted(root.rglob("*.py")):  # subpackages too (bpjax/sweep/)
        if path.parent.resolve() == package.resolve() and path.resolve() not in own:
            continue
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()[:16]


def reproduce(names=None, quick: bool = False, out="report", force: bool = False,
              stream=sys.stderr) -> dict:
    """Runs experiments (all by default) into ``out/NAME/`` and writes ``out/index.html``.

    An experiment whose code and sizes are unchanged since its last run in ``out`` is
    reused unless ``force``; one that fails is reported and does not stop the others.
    Returns ``{name: entry}`` with status ``ran``, ``reused`` or ``failed``.
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
        entry = {"question": module.QUESTION, "quick": quick,
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
        entries[name] = entry
        done = sum(1 for _ in entries)
        bar = "#" * (30 * done // len(modules))
        stream.write(f"    overall [{bar:<30}] {done}/{len(modules)}, "
                     f"{time.perf_counter() - t_all:.0f}s: {name} {entry['status']} "
                     f"in {entry['seconds']:.1f}s\n")
        stream.flush()
    atomic_write_text(out / "index.html", render(entries, machine()))
    return entries


def machine() -> dict:
    import jax
    import optax

    from bpjax import __version__

    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__, "optax": optax.__version__, "bpjax": __version__,
            "python": platform.python_version(), "platform": platform.platform()}


def flatten(numbers, prefix="") -> list[tuple[str, str]]:
    """Rows of (name, value) for the table: nested dicts are dotted, lists shown whole."""
    rows = []
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        else:
            rows.append((name, format_value(value)))
    return rows


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def render(entries: dict, host: dict) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>bpjax: experiments</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}",
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}",
        "table{border-collapse:collapse;font-size:.85em}td{border:1px solid #ccc;padding:2px 6px;"
        "vertical-align:top}td.v{font-family:monospace;max-width:700px;overflow-wrap:anywhere}",
        ".failed{color:#b03a2e}.meta{color:#555;font-size:.9em}",
        "</style></head><body><h1>bpjax: what backprop and its optimizers do</h1>",
        f"<p class='meta'>Machine: {esc(host['backend'])} backend, devices "
        f"{esc(', '.join(host['devices']))}; jax {esc(host['jax'])}, optax {esc(host['optax'])}"
        f", bpjax {esc(host['bpjax'])}, Python {esc(host['python'])}, "
        f"{esc(host['platform'])}.</p>",
    ]
    for name, e in entries.items():
        parts.append(f"<section id='{esc(name)}'><h2>{esc(name)}</h2>")
        parts.append(f"<p><b>Question.</b> {esc(e['question'])}</p>")
        parts.append(f"<p class='meta'>Status: <span class='{esc(e['status'])}'>"
                     f"{esc(e['status'])}</span>, {e['seconds']:.1f} s; configuration "
                     f"({'quick' if e['quick'] else 'default'}): "
                     f"<code>{esc(json.dumps(e['sizes']))}</code></p>")
        if e["status"] == "failed":
            parts.append(f"<pre class='failed'>{esc(e['traceback'])}</pre>")
        for fig in e["figures"]:
            parts.append(f"<img src='{esc(name)}/{esc(fig)}' alt='{esc(name)}: {esc(fig)}'>")
        if e.get("numbers"):
            parts.append("<table>")
            for key, value in flatten(e["numbers"]):
                parts.append(f"<tr><td>{esc(key)}</td><td class='v' data-key='{esc(key)}'>"
                             f"{esc(value)}</td></tr>")
            parts.append("</table>")
        parts.append("</section>")
    parts.append(
        "<script>window.addEventListener('load',function(){var ok=true;"
        "document.querySelectorAll('img').forEach(function(i){if(!i.naturalWidth)ok=false;});"
        "document.body.setAttribute('data-images-ok',ok?'yes':'no');});</script>"
        "</body></html>")
    return "\n".join(parts)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


