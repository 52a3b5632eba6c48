"""An experiment's numbers (its ``summary.json`` tree) as small HTML tables and CSV files.
A summary tree (an experiment's ``summary.json``) becomes small tables: a node's scalars
and short lists in one name-value table; sibling dicts of scalars that share their keys in
one grid (a column each); a dict or list of records (dicts of scalars, or of scalars and
such dicts) in one grid (a column per record); anything deeper as its own captioned
tables. Names are written in words. An array of more than ``SHORT`` values (or of more
than one dimension) is summarised in its cell (shape, min, max) and written out as a CSV
file the cell links to. Every value cell carries ``data-key``, its path in the tree as a
JSON list, so a test can check each one against ``summary.json``.
"""

import csv
import html
import json
import re
from pathlib import Path

SHORT = 12  # lists of up to this many scalars are written out in their cell
TABLES = "tables"  # long arrays as CSV files: OUT/NAME/tables/*.csv
STATED = ("verdict", "finding")  # shown at the top of a section, not in its tables
WIDE = 10  # a grid of more records than this has a row per record instead of a column

esc = html.escape


def words(key) -> str:
    """A key as a name in words: ``lr_max_at_s_1`` -> ``lr max at s 1``."""
    return str(key).replace("_", " ")


def fmt(value) -> str:
    """A value as a cell shows it: 4 significant digits, whole numbers as integers."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e7:
            return str(int(value))
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) if value else "(empty)"
    return str(value)


def _leafish(v) -> bool:
    """A value one cell shows: a scalar or an array (nested lists of scalars)."""
    if isinstance(v, dict):
        return False
    return all(_leafish(x) for x in v) if isinstance(v, list) else True


def _long(v) -> bool:
    return isinstance(v, list) and (len(v) > SHORT or any(isinstance(x, list) for x in v))


def _column(v) -> bool:
    return isinstance(v, dict) and bool(v) and all(_leafish(x) for x in v.values())


def _record(v) -> bool:
    """A dict of scalars, or of scalars and dicts of scalars (flattened into one column)."""
    return _column(v) or (isinstance(v, dict) and bool(v)
                          and all(_leafish(x) or _column(x) for x in v.values())
                          and any(_leafish(x) for x in v.values()))


def _items(tree) -> list:
    return list(tree.items()) if isinstance(tree, dict) else list(enumerate(tree))


def _record_set(v) -> bool:
    return isinstance(v, (dict, list)) and bool(v) and all(_record(x) for _, x in _items(v))


def _walk(tree, path=()):
    """(path, value) of every leafish value in the tree."""
    for key, value in _items(tree):
        if _leafish(value):
            yield path + (key,), value
        else:
            yield from _walk(value, path + (key,))


def csv_names(numbers: dict) -> dict:
    """File names (under ``TABLES``) of the tree's long arrays, by path."""
    names, used = {}, set()
    for path, value in _walk(numbers):
        if _long(value):
            stem = "-".join(re.sub(r"[^A-Za-z0-9.+]+", "_", str(p)).strip("_") or "_"
                            for p in path)
            name, n = f"{stem}.csv", 1
            while name in used:
                n += 1
                name = f"{stem}-{n}.csv"
            used.add(name)
            names[path] = name
    return names


def _csv_rows(value, index=()):
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _csv_rows(v, index + (i,))
    else:
        yield index, value


def write_tables(folder, numbers: dict) -> list[str]:
    """Writes each long array of ``numbers`` to ``folder/tables/NAME.csv``: one row per
    value, its index along each axis, then the value (empty for None). Returns the names."""
    names = csv_names(numbers)
    if not names:
        return []
    out = Path(folder) / TABLES
    out.mkdir(exist_ok=True)
    values = dict(_walk(numbers))
    for path, name in names.items():
        rows = list(_csv_rows(values[path]))
        depth = max(len(i) for i, _ in rows)
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([f"index {d + 1}" for d in range(depth)] + [words(path[-1])])
            for index, v in rows:
                w.writerow(list(index) + ["" if v is None else repr(v) if isinstance(v, float)
                                          else v])
    return sorted(names.values())


def _shape(value) -> list[int]:
    shape = [len(value)]
    if value and all(isinstance(v, list) for v in value):
        inner = {tuple(_shape(v)) for v in value}
        if len(inner) == 1:
            shape += list(inner.pop())
    return shape


def summary(value) -> str:
    """A long array in words: ``30 values: min 0.01, max 0.5`` (``7 x 11 values`` ...)."""
    numeric = [v for _, v in _csv_rows(value) if isinstance(v, (int, float))
               and not isinstance(v, bool) and v == v]
    text = " x ".join(str(n) for n in _shape(value)) + " values"
    if numeric:
        text += f": min {fmt(min(numeric))}, max {fmt(max(numeric))}"
    return text


class Cells:
    """Renders value cells: each with its path as data-key, long arrays linked to CSV."""

    def __init__(self, name: str, numbers: dict):
        self.name, self.files = name, csv_names(numbers)

    def __call__(self, path, value) -> str:
        key = esc(json.dumps(list(path)))
        if _long(value):
            href = esc(f"{self.name}/{TABLES}/{self.files[tuple(path)]}")
            return (f"<td class='v' data-key='{key}'><a href='{href}'>{esc(summary(value))}"
                    " (CSV)</a></td>")
        return f"<td class='v' data-key='{key}'>{esc(fmt(value))}</td>"


def _caption(path) -> str:
    return f"<caption>{esc(' / '.join(words(p) for p in path))}</caption>" if path else ""


def _pairs(path, items, cell) -> str:
    rows = "".join(f"<tr><th>{esc(words(k))}</th>{cell(path + (k,), v)}</tr>" for k, v in items)
    return f"<table>{_caption(path)}{rows}</table>"


def _label(key, record) -> str:
    """A record's column title: its key, or for a list's records 'first key = its value'."""
    if isinstance(key, int) and isinstance(record, dict):
        first, value = next(iter(record.items()))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{words(first)} = {fmt(value)}"
    return words(key)


def _grid(path, records, cell) -> str:
    """One table of records (a list of (key, dict)): a column per record, a row per leaf
    (a nested dict's leaves as 'outer: inner'); transposed when there are many records."""
    rows = []
    for _, rec in records:
        for k, v in rec.items():
            subs = [(k,)] if _leafish(v) else [(k, kk) for kk in v]
            rows += [s for s in subs if s not in rows]

    def get(rec, sub):
        for s in sub:
            if not isinstance(rec, dict) or s not in rec:
                return None, False
            rec = rec[s]
        return rec, True

    def td(key, rec, sub):
        v, ok = get(rec, sub)
        return cell(path + (key,) + sub, v) if ok else "<td></td>"

    name = lambda sub: esc(": ".join(words(s) for s in sub))  # noqa: E731
    head = "".join(f"<th>{esc(_label(k, r))}</th>" for k, r in records)
    cap = _caption(path)
    if len(records) > WIDE:
        head = "".join(f"<th>{name(s)}</th>" for s in rows)
        body = "".join(f"<tr><th>{esc(_label(k, r))}</th>"
                       + "".join(td(k, r, s) for s in rows) + "</tr>" for k, r in records)
        return f"<table>{cap}<tr><th></th>{head}</tr>{body}</table>"
    body = "".join(f"<tr><th>{name(s)}</th>" + "".join(td(k, r, s) for k, r in records)
                   + "</tr>" for s in rows)
    return f"<table>{cap}<tr><th></th>{head}</tr>{body}</table>"


def tables(tree, cell, path=()) -> list[str]:
    """The tables of one node of a summary tree, in the order of its keys; the first one
    captioned with the node's path, a child's tables with the child's."""
    items = _items(tree)
    own = [(k, v) for k, v in items if _leafish(v)]
    out = [_pairs(path, own, cell)] if own else []
    caption = () if own else path  # for the node's first grid, if it has no own table
    groups = {}  # sibling dicts of scalars with the same keys: one grid, a column each
    for k, v in items:
        if _column(v):
            groups.setdefault(tuple(v), []).append(k)
    done = set()
    for k, v in items:
        if _leafish(v) or k in done:
            continue
        if _column(v) and len(groups[tuple(v)]) == 1:  # a dict of scalars of its own
            out.append(_pairs(path + (k,), list(v.items()), cell))
        elif _column(v):
            members = groups[tuple(v)]
            done.update(members)
            # the rows are the shared keys: a record per key, its cells from each member
            rows = [(r, {m: tree[m][r] for m in members}) for r in v]
            out.append(_transposed(path, caption, members, rows, cell))
            caption = ()
        elif _record_set(v):
            out.append(_grid(path + (k,), _items(v), cell))
        else:
            out += tables(v, cell, path + (k,))
    return out


def _transposed(path, caption, members, rows, cell) -> str:
    """A grid of sibling columns: a row per shared key, a column per sibling."""
    head = "".join(f"<th>{esc(words(m))}</th>" for m in members)
    body = "".join(f"<tr><th>{esc(words(r))}</th>"
                   + "".join(cell(path + (m, r), rec[m]) for m in members) + "</tr>"
                   for r, rec in rows)
    return f"<table>{_caption(caption)}<tr><th></th>{head}</tr>{body}</table>"
