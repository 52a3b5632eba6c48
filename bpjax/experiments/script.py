"""What every experiment script shares: its command line and its summary.json."""

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

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
