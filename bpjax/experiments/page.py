"""The report page: per experiment its verdict and finding, its figures, its numbers as
tables (``bpjax.experiments.tables``), grouped by seed."""


from bpjax import experiments
from bpjax.experiments import VERDICTS
from bpjax.experiments.tables import SHORT, STATED, Cells, esc, fmt, tables, words


def _badge(verdict) -> str:
    label = VERDICTS.get(verdict, verdict or "no verdict")
    return f"<span class='verdict {esc(verdict or 'none')}'>{esc(label)}</span>"


def _sizes(sizes: dict) -> str:
    return "; ".join(f"{words(k)} = {fmt(v)}" for k, v in sizes.items()) or "none"


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.4}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}
caption{text-align:left;font-weight:600;padding:.2em 0}
th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left;font-weight:500}
td.v{font-family:monospace;max-width:420px;overflow-wrap:anywhere}
.numbers{overflow-x:auto}
.verdict{display:inline-block;padding:0 .5em;border-radius:3px;font-size:.8em;
font-weight:600;color:#fff;vertical-align:middle;white-space:nowrap}
.reproduced{background:#2e7d4f}.refuted{background:#b03a2e}.partly{background:#b8860b}
.open,.none{background:#777}.failed{background:#b03a2e}
pre.failed{color:#b03a2e;background:none}
.finding{border-left:4px solid #ccc;padding-left:.8em}
.meta{color:#555;font-size:.9em}
nav table{font-size:.9em}nav td{border:none;padding:1px 8px 1px 0}
"""


def render(entries: dict, host: dict) -> str:
    """The page for ``entries`` (``report.reproduce``'s, each with its seed), grouped by seed."""
    seeds = {}
    for name, e in entries.items():
        seeds.setdefault(e.get("seed", ""), []).append(name)
    verdict = {n: (e.get("numbers") or {}).get("verdict") if e["status"] != "failed"
               else "failed" for n, e in entries.items()}
    tally = ", ".join(f"{sum(v == k for v in verdict.values())} {label.lower()}"
                      for k, label in {**VERDICTS, "failed": "Failed"}.items()
                      if k in verdict.values())
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>bpjax: experiments</title><style>{STYLE}</style></head><body>",
        "<h1>bpjax: what backprop and its optimizers do</h1>",
        f"<p class='meta'>Machine: {esc(host['backend'])} backend, devices "
        f"{esc(', '.join(host['devices']))}; jax {esc(host['jax'])}, optax {esc(host['optax'])}"
        f", bpjax {esc(host['bpjax'])}, Python {esc(host['python'])}, "
        f"{esc(host['platform'])}.</p>",
        "<p class='meta'>Each experiment states its verdict against the seed's claim and its "
        "finding, filled from its own measured numbers; the numbers follow its figures, to 4 "
        "significant digits (all of them in NAME/summary.json; arrays of more than "
        f"{SHORT} values summarised and linked as CSV).</p>",
        f"<nav id='contents'><h2>Contents</h2><p>{len(entries)} experiments: {esc(tally)}.</p>",
    ]
    for seed, names in seeds.items():
        parts.append(f"<h3><a href='#seed-{esc(seed)}'>Seed {esc(seed)}</a>: "
                     f"{esc(experiments.SEEDS.get(seed, ''))}</h3><table>")
        for n in names:
            parts.append(f"<tr><td><a href='#{esc(n)}'>{esc(n)}</a></td>"
                         f"<td>{_badge(verdict[n])}</td><td>{esc(entries[n]['question'])}"
                         "</td></tr>")
        parts.append("</table>")
    parts.append("</nav>")
    for seed, names in seeds.items():
        parts.append(f"<h2 id='seed-{esc(seed)}'>Seed {esc(seed)}: "
                     f"{esc(experiments.SEEDS.get(seed, ''))}</h2>")
        parts += [_section(n, entries[n], verdict[n]) for n in names]
    parts.append(
        "<script>window.addEventListener('load',function(){var ok=true;"
        "document.querySelectorAll('img').forEach(function(i){if(!i.naturalWidth)ok=false;});"
        "document.body.setAttribute('data-images-ok',ok?'yes':'no');});</script>"
        "</body></html>")
    return "\n".join(parts)


def _section(name: str, e: dict, verdict) -> str:
    numbers = e.get("numbers") or {}
    parts = [f"<section id='{esc(name)}'><h3>{esc(name)} {_badge(verdict)}</h3>",
             f"<p><b>Question.</b> {esc(e['question'])}</p>"]
    if numbers.get("finding"):
        parts.append(f"<p class='finding'><b>{esc(VERDICTS.get(verdict, 'Finding'))}.</b> "
                     f"{esc(numbers['finding'])}</p>")
    parts.append(f"<p class='meta'>Status: {esc(e['status'])}, {e['seconds']:.1f} s; "
                 f"configuration ({'quick' if e['quick'] else 'default'}): "
                 f"{esc(_sizes(e['sizes']))}.</p>")
    if e["status"] == "failed":
        # (a process that died has an error and no traceback)
        parts.append(f"<pre class='failed'>{esc(e.get('traceback') or e['error'])}</pre>")
    for fig in e.get("figures", []):
        parts.append(f"<img src='{esc(name)}/{esc(fig)}' alt='{esc(name)}: {esc(fig)}'>")
    if e.get("files"):
        parts.append("<p class='meta'>Written by the experiment: " + ", ".join(
            f"<a href='{esc(name)}/{esc(f)}'>{esc(f)}</a>" for f in e["files"]) + ".</p>")
    rest = {k: v for k, v in numbers.items() if k not in STATED}
    if rest:
        parts.append("<div class='numbers'>" + "".join(tables(rest, Cells(name, rest)))
                     + "</div>")
    parts.append("</section>")
    return "\n".join(parts)
