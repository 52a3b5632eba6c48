"""The experiments: one module each, found here by discovery.

An experiment is a module in this package that declares ``SEED`` (the seed
document it answers, ``"000"`` to ``"004"``), ``QUESTION`` (one sentence),
``SIZES`` (``"default"`` and ``"quick"``) and ``run(out, quick) -> numbers``, and
runs alone as ``python -m bpjax.experiments.NAME [--quick]``. Adding one touches
its own file and its test: ``REGISTRY`` lists every module here but the
helpers, grouped by seed. ``bpjax reproduce`` runs them into one report page
(``bpjax.experiments.report``).
"""

import ast
import importlib
from pathlib import Path

HELPERS = ("report", "script")  # modules here that are not experiments


def _declared(path: Path) -> dict:
    """The module's top-level constant assignments, read without importing it."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _discover() -> list[str]:
    seeds = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem.startswith("_") or path.stem in HELPERS:
            continue
        declared = _declared(path)
        if "SEED" not in declared:
            raise RuntimeError(f"{path} declares no SEED: every experiment names the seed "
                               "document it answers (SEED = '000' to '004')")
        seeds[path.stem] = declared["SEED"]
    return sorted(seeds, key=lambda name: (seeds[name], name))


REGISTRY = _discover()


def load(name: str):
    """The experiment module ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(REGISTRY)}")
    return importlib.import_module(f"bpjax.experiments.{name}")
