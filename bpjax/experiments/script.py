"""What every experiment script shares: its command line and its summary.json."""

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from bpjax.experiments import VERDICTS
from bpjax.io import write_json


def to_json(value):
    """NumPy scalars and arrays become plain JSON numbers and lists."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, constrained_layout=False,
             **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a bare ``Figure``: no pyplot state and
    no backend chosen at import, so that importing an experiment changes nothing in a
    user's session (a notebook keeps its backend); ``fig.savefig`` writes the file.

    >>> fig, (a, b) = subplots(1, 2, figsize=(4, 2))
    >>> type(fig).__name__, a.get_figure() is fig
    ('Figure', True)
    """
    fig = Figure(figsize=figsize, layout="constrained" if constrained_layout else None)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def stated(verdict: str, finding: str) -> dict:
    """An experiment's answer, as its ``finding(numbers)`` returns it and ``summary.json``
    stores it: the verdict against the seed's claim (a key of ``VERDICTS``) and the finding,
    a few sentences filled from the measured numbers.

    >>> stated("refuted", "0.31 > 0.25 for sigmoid + He")
    {'verdict': 'refuted', 'finding': '0.31 > 0.25 for sigmoid + He'}
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return {"verdict": verdict, "finding": finding}


def save_summary(out: str, numbers: dict) -> dict:
    numbers = to_json(numbers)
    write_json(os.path.join(out, "summary.json"), numbers, indent=2)
    return numbers


def main(run: Callable[..., dict], doc: str, name: str) -> None:
    """``python -m bpjax.experiments.NAME [--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests")
    parser.add_argument("--out", default=os.path.join("out", name),
                        help=f"output folder (default out/{name})")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    numbers = run(args.out, quick=args.quick)
    print(json.dumps(to_json(numbers), indent=2))
    print(f"{name}: wrote {args.out}/ in {time.perf_counter() - t0:.1f} s")
