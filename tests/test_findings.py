"""The stored default-size findings and the README table made from them."""

from pathlib import Path

import pytest

from bpjax import cli, experiments
from bpjax.experiments import VERDICTS, findings

README = Path(__file__).parents[1] / "README.md"


def test_readme_table_is_current_with_the_stored_findings():
    # If this fails: `bpjax reproduce --readme` rewrites the table from findings.json.
    assert findings.readme_table(README) == findings.readme_rows(findings.load())


def test_every_experiment_has_a_stored_verdict_and_finding():
    stored = findings.load()
    assert list(stored) == list(experiments.REGISTRY)
    for name, s in stored.items():
        assert s["verdict"] in VERDICTS, name
        assert s["finding"].strip(), name


def test_stored_findings_are_what_their_templates_give_for_the_stored_numbers():
    """An entry stored by `bpjax reproduce` keeps its numbers: its text must be exactly the
    experiment's template filled from them (entries without numbers were carried over from
    the hand-written table, before any default-size run stored them)."""
    stored = {n: s for n, s in findings.load().items() if "numbers" in s}
    for name, s in stored.items():
        assert experiments.load(name).finding(s["numbers"]) == {
            "verdict": s["verdict"], "finding": s["finding"]}, name


def _entry(quick, status="ran", verdict="reproduced"):
    numbers = {"x": 1.5, "verdict": verdict, "finding": f"x is 1.5 ({status})"}
    return {"quick": quick, "status": status, "numbers": numbers}


def test_only_default_size_results_are_stored(tmp_path):
    path = tmp_path / "findings.json"
    assert not findings.store({"quartic": _entry(quick=True)}, path)
    assert not path.exists()
    failed = {"status": "failed", "quick": False, "error": "boom"}
    assert findings.store({"quartic": _entry(quick=False), "paradox": failed}, path)
    stored = findings.load(path)
    assert stored == {"quartic": {"verdict": "reproduced", "finding": "x is 1.5 (ran)",
                                  "numbers": {"x": 1.5}}}
    # a later run of another experiment keeps it, in the registry's order
    findings.store({"paradox": _entry(False, "reused", "partly")}, path)
    assert list(findings.load(path)) == ["paradox", "quartic"]


def test_readme_rewrite(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{findings.HEADER}\n|---|---|---|\n| `old` | q | a \\| b |\n"
                      "\nafter\n")
    stored = {"quartic": {"verdict": "refuted", "finding": "|1 - x| > 1 everywhere"}}
    assert findings.rewrite_readme(readme, stored)
    rows = findings.readme_table(readme)
    assert len(rows) == len(experiments.REGISTRY)
    row = next(r for r in rows if r.startswith("| `quartic` |"))
    assert row.endswith("| Refuted: \\|1 - x\\| > 1 everywhere |")
    assert "(seed 004)" in row  # the question is the experiment's QUESTION
    assert "not yet run at default size" in rows[0]
    assert readme.read_text().endswith("\n\nafter\n")
    assert not findings.rewrite_readme(readme, stored)  # already current
    # the command rewrites from the stored file
    assert cli.main(["reproduce", "--readme", str(readme)]) == 0
    assert findings.readme_table(readme) == findings.readme_rows(findings.load())
    assert "rewritten" in capsys.readouterr().out


def test_a_readme_without_the_table_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no table\n")
    with pytest.raises(ValueError, match="no findings table"):
        findings.rewrite_readme(readme, {})


def test_refill_fills_stored_entries_anew_from_their_numbers(tmp_path):
    path = tmp_path / "findings.json"
    real = findings.load()
    with_numbers = [n for n, s in real.items() if "numbers" in s][0]
    stale = {with_numbers: {**real[with_numbers], "finding": "an old wording"},
             "old_entry": {"verdict": "open", "finding": "kept as it is"}}
    path.write_text(findings._dump(stale))
    assert findings.refill(path) == [with_numbers]
    assert findings.load(path)[with_numbers] == real[with_numbers]
    assert findings.load(path)["old_entry"] == stale["old_entry"]
    assert findings.refill(path) == []


def test_every_experiment_declares_its_finding_template():
    for name in experiments.REGISTRY:
        assert callable(experiments.load(name).finding), name
