"""bpjax reproduce: the report page, reuse by content hash, failure isolation, a real browser."""

import json
import re
import shutil
import subprocess
import sys
import types
from html.parser import HTMLParser

import pytest

from bpjax import cli, experiments
from bpjax.experiments import report as reproduce

SUBSET = ["quartic", "edge_of_stability"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.cells, self._key = [], [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "td" and "data-key" in attrs:
            self._key = attrs["data-key"]

    def handle_data(self, data):
        if self._key is not None:
            self.cells[(self.sections[-1], self._key)] = data
            self._key = None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert cli.main(["reproduce", *SUBSET, "--quick", "--out", str(out)]) == 0
    return out


def test_page_has_every_experiment_its_images_and_its_numbers(report):
    page = Page()
    page.feed((report / "index.html").read_text())
    assert page.sections == SUBSET
    assert page.images
    for src in page.images:
        assert (report / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in SUBSET:
        numbers = json.loads((report / name / "summary.json").read_text())
        rows = reproduce.flatten(numbers)
        assert rows
        for key, value in rows:
            assert page.cells[(name, key)] == value
        # and the formatted values are the numbers themselves, not rounded-away ones: every
        # numeric cell against the raw value, found by walking the JSON here, not by flatten
        leaves = dict(_leaves(numbers))
        numeric = [(k, v) for k, v in rows if re.fullmatch(r"-?[\d.]+(e[+-]?\d+)?", v)]
        assert numeric
        for key, value in numeric:
            assert float(value) == pytest.approx(leaves[key], rel=1e-5, abs=1e-300), key
    # and against values known without running anything: the grid's size, and 2 / lr
    assert int(page.cells[("quartic", "cells")]) == experiments.load("quartic").SIZES["quick"][
        "n"] ** 2
    for lr in experiments.load("edge_of_stability").LRS:
        cell = page.cells[("edge_of_stability", f"per_lr.{lr:g}.two_over_lr")]
        assert float(cell) == pytest.approx(2 / lr, rel=1e-5)


def _leaves(tree, prefix=""):
    """(dotted key, number) for every numeric leaf of a summary.json tree."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


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
    code = cli.main(["reproduce", "--quick", "--out", str(tmp_path)])
    assert code == 1
    text = (tmp_path / "index.html").read_text()
    assert "deliberate failure" in text and "<section id='quartic'>" in text
    assert (tmp_path / "quartic" / "summary.json").exists()


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
