"""The default-size findings, kept in ``findings.json``, and the README table made from them.

``bpjax reproduce`` at default size stores each experiment's verdict and finding with the
numbers they were filled from (``store``); ``bpjax reproduce --readme`` fills the stored
entries anew from their numbers (``refill``: a reworded template needs no 8-minute rerun)
and rewrites the README's findings table from them (``rewrite_readme``), each row the
experiment's QUESTION and its verdict and finding, so the README types no number of its
own. An entry without numbers was carried over from the hand-written table that came
before any default-size run stored one.
"""

import json
from pathlib import Path

from bpjax import experiments
from bpjax.experiments import VERDICTS
from bpjax.io import atomic_write_text

FILE = Path(__file__).with_name("findings.json")
HEADER = "| experiment | question (seed) | finding |"


def in_checkout() -> bool:
    """Whether bpjax runs from its source tree (``pyproject.toml`` beside ``bpjax/``), not
    from an installed copy."""
    return (FILE.parents[2] / "pyproject.toml").exists()


def load(path=FILE) -> dict:
    """``{name: {"verdict", "finding", "numbers"?}}`` as stored, or {} when there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def store(entries: dict, path=FILE) -> bool:
    """Stores the verdict, finding and numbers of every default-size entry (``reproduce``'s)
    that has them; other entries keep what was stored. Returns whether anything was."""
    stored = load(path)
    new = {name: {"verdict": e["numbers"]["verdict"], "finding": e["numbers"]["finding"],
                  "numbers": {k: v for k, v in e["numbers"].items()
                              if k not in ("verdict", "finding")}}
           for name, e in entries.items()
           if not e["quick"] and e["status"] != "failed" and "verdict" in (e.get("numbers") or {})}
    if not new:
        return False
    stored.update(new)
    order = [n for n in experiments.REGISTRY if n in stored] + sorted(
        n for n in stored if n not in experiments.REGISTRY)
    atomic_write_text(path, _dump({n: stored[n] for n in order}) + "\n")
    return True


def refill(path=FILE) -> list[str]:
    """Fills each stored entry that has numbers anew from its experiment's template
    (``finding(numbers)``), so that a reworded template needs no rerun; returns the names
    whose verdict or finding changed. A template that needs numbers the entry lacks
    raises: then only a rerun (``bpjax reproduce NAME``) can fill it."""
    stored = load(path)
    changed = []
    for name, s in stored.items():
        if "numbers" in s and name in experiments.REGISTRY:
            new = experiments.load(name).finding(s["numbers"])
            if new != {"verdict": s["verdict"], "finding": s["finding"]}:
                s.update(new)
                changed.append(name)
    if changed:
        atomic_write_text(path, _dump(stored) + "\n")
    return changed


def _dump(value, indent: int = 0) -> str:
    """JSON with a line per dict entry but lists of numbers on one line (short diffs)."""
    pad = " " * (indent + 1)
    if isinstance(value, dict) and value:
        return "{\n" + ",\n".join(f"{pad}{json.dumps(k)}: {_dump(v, indent + 1)}"
                                  for k, v in value.items()) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(pad + _dump(v, indent + 1) for v in value) + "\n" + \
            " " * indent + "]"
    return json.dumps(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def readme_rows(stored: dict) -> list[str]:
    """The README table's rows, one per registered experiment, in the registry's order."""
    rows = []
    for name in experiments.REGISTRY:
        question = experiments.declared(name)["QUESTION"]
        s = stored.get(name)
        answer = (f"{VERDICTS[s['verdict']]}: {s['finding']}" if s else
                  f"not yet run at default size (`bpjax reproduce {name}`)")
        rows.append(f"| `{name}` | {_cell(question)} | {_cell(answer)} |")
    return rows


def _table_span(lines: list[str]) -> tuple[int, int]:
    """(first, end) of the rows under HEADER and its |---| line."""
    if HEADER not in lines:
        raise ValueError(f"no findings table (a line {HEADER!r}) in the README")
    first = lines.index(HEADER) + 2
    end = first
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return first, end


def readme_table(readme) -> list[str]:
    """The findings table's rows as the README has them now."""
    lines = Path(readme).read_text().splitlines()
    first, end = _table_span(lines)
    return lines[first:end]


def rewrite_readme(readme, stored=None) -> bool:
    """Rewrites the README's findings table from the stored findings (``load()`` by
    default). Returns whether the README changed."""
    text = Path(readme).read_text()
    lines = text.splitlines()
    first, end = _table_span(lines)
    rows = readme_rows(load() if stored is None else stored)
    if lines[first:end] == rows:
        return False
    new = "\n".join(lines[:first] + rows + lines[end:]) + ("\n" if text.endswith("\n") else "")
    atomic_write_text(readme, new)
    return True
