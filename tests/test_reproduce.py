"""bpjax reproduce: the report page, reuse by content hash, failure isolation, a real browser."""

import ast
import csv
import json
import re
import shutil
import subprocess
import sys
import types
from html.parser import HTMLParser

import pytest

from bpjax import cli, experiments
from bpjax.experiments import VERDICTS
from bpjax.experiments import page as page_module
from bpjax.experiments import report as reproduce
from bpjax.experiments import tables as tables_module

SUBSET = ["quartic", "edge_of_stability"]


class Page(HTMLParser):
    """The page as a reader meets it: sections in order, per section its verdict badge, its
    first tags (to check the finding comes before the figures), and every value cell's text
    and link by (section, data-key path)."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.cells, self.links = [], [], {}, {}
        self.toc, self.seeds, self.order, self.badges, self.findings = [], [], {}, {}, {}
        self._cell = self._finding = None
        self._skip = 0
        self.text = []  # visible text outside tables, scripts and styles

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "section":
            self.sections.append(attrs["id"])
            self.order[attrs["id"]] = []
        if tag == "h2" and attrs.get("id", "").startswith("seed-"):
            self.seeds.append(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#") and not self.sections:
            self.toc.append(attrs["href"][1:])
        if self.sections and tag in ("img", "p", "table"):
            self.order[self.sections[-1]].append(attrs.get("class", tag))
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "span" and "verdict" in attrs.get("class", "") and self.sections \
                and self.sections[-1] not in self.badges:
            self.badges[self.sections[-1]] = attrs["class"].split()[1]
        if tag == "p" and attrs.get("class") == "finding":
            self._finding = []
        if tag == "td" and "data-key" in attrs:
            self._cell = (self.sections[-1], tuple(json.loads(attrs["data-key"])))
            self.cells[self._cell] = ""
        if tag == "a" and self._cell is not None:
            self.links[self._cell] = attrs["href"]

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        if tag == "td":
            self._cell = None
        if tag == "p" and self._finding is not None:
            self.findings[self.sections[-1]] = "".join(self._finding)
            self._finding = None

    def handle_data(self, data):
        if self._cell is not None:
            self.cells[self._cell] += data
        elif not self._skip:
            self.text.append(data)
        if self._finding is not None:
            self._finding.append(data)


def read_page(folder):
    page = Page()
    page.feed((folder / "index.html").read_text())
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert cli.main(["reproduce", *SUBSET, "--quick", "--out", str(out)]) == 0
    return out


def _leaves(tree, path=()):
    """(path, value) of every leaf of a summary.json tree: scalars, and lists of scalars
    (arrays, nested lists) whole."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        if isinstance(value, dict) or (isinstance(value, list)
                                       and any(isinstance(v, dict) for v in value)):
            yield from _leaves(value, path + (key,))
        else:
            yield path + (key,), value


def _flat(value):
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [value]


def _same(text: str, value) -> bool:
    """Whether a cell's text shows ``value``: numbers to the 4 significant digits the page
    prints (so to 5e-4 relative), whole numbers exactly; yes/no, none, strings as they are."""
    if isinstance(value, bool):
        return text == ("yes" if value else "no")
    if value is None:
        return text == "none"
    if isinstance(value, (int, float)):
        try:
            shown = float(text)
        except ValueError:
            return False
        return shown == value if float(value).is_integer() and abs(value) < 1e7 else \
            shown == pytest.approx(value, rel=5e-4, abs=1e-300)
    return text == str(value)


def check_cells(page, folder, name, numbers):
    """Every number of ``numbers`` is on the page, in a cell of its own path, and equal;
    a long array as its summary, its values in the CSV file the cell links to."""
    leaves = [(p, v) for p, v in _leaves(numbers) if p[0] not in ("verdict", "finding")]
    assert leaves
    for path, value in leaves:
        text = page.cells[(name, path)].strip()
        if isinstance(value, list) and (len(value) > 12 or any(isinstance(v, list)
                                                               for v in value)):
            m = re.fullmatch(r"([\d x]+) values(?:: min (\S+), max (\S+))? \(CSV\)", text)
            assert m, (path, text)
            flat = _flat(value)
            assert eval(m[1].replace(" x ", "*")) == len(flat), path  # the shape's size
            numeric = [v for v in flat if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numeric:
                assert _same(m[2], min(numeric)) and _same(m[3], max(numeric)), (path, text)
            with open(folder / page.links[(name, path)]) as f:
                rows = list(csv.reader(f))[1:]
            assert len(rows) == len(flat), path
            for row, v in zip(rows, flat):
                assert (row[-1] == "" if v is None else
                        float(row[-1]) == v if isinstance(v, (int, float)) else
                        row[-1] == str(v)), (path, row, v)
        elif isinstance(value, list):
            parts = text.split(", ") if value else []
            assert len(parts) == len(value) and all(_same(t, v) for t, v in zip(parts, value)), \
                (path, text, value)
        else:
            assert _same(text, value), (path, text, value)


def test_page_has_every_experiment_its_images_and_its_numbers(report):
    page = read_page(report)
    assert page.sections == SUBSET
    assert page.images
    for src in page.images:
        assert (report / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in SUBSET:
        numbers = json.loads((report / name / "summary.json").read_text())
        check_cells(page, report, name, numbers)
        # The section opens with its verdict and finding, before any figure.
        assert numbers["verdict"] in VERDICTS and page.badges[name] == numbers["verdict"]
        assert page.findings[name].endswith(numbers["finding"])
        order = page.order[name]
        assert order.index("finding") < order.index("img")
    # and against values known without running anything: the grid's size, and 2 / lr
    quick = experiments.load("quartic").SIZES["quick"]
    assert int(page.cells[("quartic", ("cells",))]) == quick["n"] ** 2
    for lr in experiments.load("edge_of_stability").LRS:
        cell = page.cells[("edge_of_stability", ("per_lr", f"{lr:g}", "two_over_lr"))]
        assert float(cell) == pytest.approx(2 / lr, rel=5e-4)
    # A table of contents first, grouped by seed (both of SUBSET answer seed 004).
    assert page.toc[:3] == ["seed-004", *SUBSET] and page.seeds == ["seed-004"]
    # No raw JSON anywhere a reader looks: not in a cell, nor in the configuration lines.
    # (The configuration line once was json.dumps of the sizes; prose may hold brackets.)
    configuration = [t for t in page.text if "configuration (quick)" in t]
    assert len(configuration) == len(SUBSET)
    assert not any(re.search(r"[{}\[\]]", t) for t in configuration), configuration
    assert not any(t.lstrip().startswith(("{", "[")) for t in page.cells.values())


def test_every_kind_of_number_has_a_readable_cell(tmp_path):
    """Nested dicts, records, sibling columns, long and 2-D arrays, lists of records, None,
    bools, strings and non-finite values: each on the page, long arrays as CSV."""
    numbers = {
        "steps": 6000, "lr": 0.1, "ok": True, "nothing": None, "kind": "softmax+MSE",
        "short": [0.25, 1.5, -3.0], "long": [i / 7 for i in range(30)],
        "matrix": [[0.1 * i + j for j in range(11)] for i in range(7)],
        "per_lr": {"0.08": {"two_over_lr": 25.0, "curve": list(range(20))},
                   "0.16": {"two_over_lr": 12.5, "curve": list(range(20))}},
        "success": {"sigmoid/he": 0.5, "tanh/he": 1.0},
        "median_steps": {"sigmoid/he": None, "tanh/he": 40.0},
        "rows": [{"h": 1, "levels": [0.5, 0.25], "sub": {"flops": 1e9, "s": None}},
                 {"h": 2, "levels": [], "sub": {"flops": 2.5e9, "s": 0.01}},
                 {"h": 3, "levels": [1e-17]}],  # a record without one of the others' keys
        "many": [{"i": i, "v": i / 3} for i in range(12)],  # a row per record, not a column
        "deep": {"steps": 3, "oracle": {"all": {"n": 1, "f": 0.5}, "neg": {"n": 2, "f": 0.75}},
                 "cases": {"a": {"says": "converges", "x1": {"lr": 0.01, "verdict": "agrees"}}}},
        "infinite": "inf", "verdict": "partly", "finding": "a test finding",
    }
    folder = tmp_path / "demo"
    folder.mkdir()
    tables_module.write_tables(folder, numbers)
    entry = {"question": "Q?", "seed": "000", "quick": True, "sizes": {"n": 4, "lrs": [1, 2]},
             "status": "ran", "seconds": 1.0, "numbers": numbers, "figures": [], "files": []}
    host = dict(backend="cpu", devices=["cpu"], jax="0", optax="0", bpjax="0", python="3",
                platform="x")
    (tmp_path / "index.html").write_text(page_module.render({"demo": entry}, host))
    page = read_page(tmp_path)
    check_cells(page, tmp_path, "demo", numbers)
    assert page.badges["demo"] == "partly" and page.findings["demo"].endswith("a test finding")
    assert "n = 4; lrs = 1, 2" in "".join(page.text)
    assert sum(1 for k in page.links if k[0] == "demo") == 4  # long, matrix, two curves


def test_unchanged_experiments_are_reused_and_force_reruns(report, capsys):
    entries = reproduce.reproduce(["quartic"], quick=True, out=report)
    assert entries["quartic"]["status"] == "reused"
    entries = reproduce.reproduce(["quartic"], quick=True, out=report, force=True)
    assert entries["quartic"]["status"] == "ran"


def test_a_failing_experiment_is_reported_and_the_others_run(tmp_path, monkeypatch):
    broken = types.ModuleType("bpjax.experiments.broken")
    broken.__file__ = experiments.load("quartic").__file__
    broken.QUESTION = "Does a broken experiment stop the others?"
    broken.SIZES = {"default": {}, "quick": {}}

    def run(out, quick=False):
        raise RuntimeError("deliberate failure")

    broken.run = run
    monkeypatch.setitem(sys.modules, "bpjax.experiments.broken", broken)
    monkeypatch.setattr(experiments, "REGISTRY", ["broken", "quartic"])
    code = cli.main(["reproduce", "--quick", "--out", str(tmp_path), "--jobs", "1"])
    assert code == 1  # (in this process: a fresh one would not see the patched registry)
    text = (tmp_path / "index.html").read_text()
    assert "deliberate failure" in text and "<section id='quartic'>" in text
    assert (tmp_path / "quartic" / "summary.json").exists()


def test_processes_compute_what_one_process_does(report, tmp_path):
    """The report fixture ran SUBSET with the CLI's default --jobs (one process per core
    here); the same experiment in this process gives the same numbers, and the page."""
    entries = reproduce.reproduce(SUBSET[:1], quick=True, out=tmp_path, jobs=1)
    name = SUBSET[0]
    assert entries[name]["status"] == "ran"
    assert json.loads((tmp_path / name / "summary.json").read_text()) == json.loads(
        (report / name / "summary.json").read_text())
    assert (report / name / "log.txt").exists() == (reproduce.default_jobs() > 1)
    with pytest.raises(ValueError, match="jobs must be a positive"):
        reproduce.reproduce(SUBSET[:1], quick=True, out=tmp_path, jobs=0)


def test_one_experiment_left_to_run_runs_in_this_process(tmp_path):
    """jobs=2 with one experiment to run: no process is started (one would import bpjax
    again, ~1.5 s) and its progress goes to the stream, not to log.txt."""
    import io

    stream = io.StringIO()
    entries = reproduce.reproduce(["log_rule"], quick=True, out=tmp_path, jobs=2,
                                  stream=stream)
    assert entries["log_rule"]["status"] == "ran"
    assert not (tmp_path / "log_rule" / "log.txt").exists()
    assert "[1/1] log_rule: running" in stream.getvalue()
    assert "processes" not in stream.getvalue()


def test_unknown_experiment_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "nope"])
    assert "unknown experiment" in capsys.readouterr().err


def test_the_page_in_a_headless_browser(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]
    url = (report / "index.html").as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="yes"' in dom.stdout  # every image has a non-zero natural size
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fresh_machine_order_names_registered_experiments():
    # a renamed experiment would silently fall back to the registry's order
    for size, slowest in reproduce.SLOWEST.items():
        assert set(slowest) <= set(experiments.REGISTRY), size
        rank = lambda name, size=size: reproduce._rank(name, size)  # noqa: E731
        assert sorted(experiments.REGISTRY, key=rank)[:len(slowest)] == list(slowest), size


def test_the_report_process_reads_the_experiments_constants_from_their_source():
    """``reproduce`` hashes and lists the experiments without importing them (their
    processes do): what it reads is what each module holds, and it imports no plotting."""
    for name in experiments.REGISTRY:
        module, declared = experiments.load(name), experiments.declared(name)
        assert (declared["SEED"], declared["QUESTION"], declared["SIZES"]) == (
            module.SEED, module.QUESTION, module.SIZES), name
    probe = ("import sys\nfrom bpjax.experiments import report\n"
             "[report.content_hash(n, True) for n in report.experiments.REGISTRY]\n"
             "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', "
             "'bpjax.experiments.'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout
    assert "matplotlib" not in loaded and "script" not in loaded, loaded
    assert set(ast.literal_eval(loaded)) == {
        "bpjax.experiments.findings", "bpjax.experiments.page", "bpjax.experiments.report",
        "bpjax.experiments.tables"}


def test_a_script_without_a_main_guard_gets_its_page_and_the_reason(tmp_path):
    """reproduce(jobs=2) from a script with no `if __name__ == '__main__':` loses its
    worker processes (spawn imports the script again): every entry fails, the page is
    still written, and each failure says why and what to do."""
    script = tmp_path / "no_guard.py"
    script.write_text("from bpjax.experiments import report\n"  # (3: one submitted later)
                      "report.reproduce(['quartic', 'log_rule', 'sontag_minima'], quick=True, "
                      f"out={str(tmp_path / 'r')!r}, jobs=2)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (tmp_path / "r" / "index.html").read_text()
    assert html.count("its process died: BrokenProcessPool") == 3
    assert "if __name__ == &#x27;__main__&#x27;:" in html and "jobs=1" in html
