"""The experiments: one module each, found here by discovery.

An experiment is a module in this package that declares ``SEED`` (the seed
document it answers, ``"000"`` to ``"004"``), ``QUESTION`` (one sentence),
``SIZES`` (``"default"`` and ``"quick"``), ``run(out, quick) -> numbers`` and
``finding(numbers) -> script.stated(verdict, text)``: its verdict against the
seed's claim and its finding, filled from the numbers, which ``run`` puts into
them as ``numbers["verdict"]`` and ``numbers["finding"]``. It runs alone as
``python -m bpjax.experiments.NAME [--quick]``. Adding one touches
its own file and its test: ``REGISTRY`` lists every module here but the
helpers, grouped by seed. ``bpjax reproduce`` runs them into one report page
(``bpjax.experiments.report``).
"""

import ast
import importlib
from pathlib import Path

HELPERS = ("findings", "page", "report", "script", "tables")  # the modules that are not experiments
# The seed documents (../shared/seeds/NNN_*.txt), by the titles the report page gives them.
SEEDS = {
    "000": "A backprop 'paradox': a weight that first moves the wrong way (Q&A)",
    "001": "Sontag, Some remarks on the backpropagation algorithm for neural net learning",
    "002": "Is gradient descent broken because it steps along a tangent? (Q&A)",
    "003": "Backpropagation algorithm: textbook notes (after Russell & Norvig, ch. 18.7)",
    "004": "Why does a ReLU net fail to converge from U[-1, 1] weights? (Q&A)",
}


VERDICTS = {"reproduced": "Reproduced", "refuted": "Refuted", "partly": "Partly reproduced",
            "open": "Open"}  # an experiment's verdict -> how the page and the README write it


def _declared(path: Path) -> dict:
    """The module's top-level assignments of literals (``SIZES = {"quick": dict(n=8)}``
    too), read without importing it: the report's process needs no experiment's imports."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            try:
                value = _literal(node.value)
            except ValueError:
                continue  # computed: known only to the module
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = value
    return found


def _literal(node):
    """``ast.literal_eval``, and ``dict(key=literal, ...)`` calls."""
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "dict" and not node.args \
            and all(k.arg is not None for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    return ast.literal_eval(node)  # ValueError where the node is not a literal


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


def declared(name: str) -> dict:
    """The constants experiment ``name`` declares (SEED, QUESTION, ...), without importing it."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(REGISTRY)}")
    return _declared(Path(__file__).parent / f"{name}.py")


def load(name: str):
    """The experiment module ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(REGISTRY)}")
    return importlib.import_module(f"bpjax.experiments.{name}")
