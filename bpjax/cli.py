"""The ``bpjax`` command line."""

import argparse
import json
import os
import sys

import numpy as np

EXAMPLE = """example:
  bpjax sweep --problem xor --net 2,8,1 --activation tanh --optimizer sgd,momentum,adam \\
      --lr 1e-3:1:32:log --init-scale 0.1:3:32 --seeds 4 --steps 2000 --out runs/xor

ranges: START:STOP:NUM (linear), START:STOP:NUM:log (geometric), or a comma list 0.1,0.5,1
"""


def parse_range(text: str, name: str) -> np.ndarray:
    """``"1e-3:1:32:log"`` -> 32 log-spaced values; ``"0.1,0.5"`` -> a list; ``"3"`` -> [3]."""
    usage = (f"{name}: malformed range {text!r}; expected START:STOP:NUM[:log] "
             "(e.g. 1e-3:1:32:log) or comma-separated numbers (e.g. 0.1,0.5)")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1 or num > 10_000_000 or not np.isfinite([start, stop]).all():
                raise ValueError
            if len(parts) == 4 and parts[3] == "log":
                if start <= 0 or stop <= 0:
                    raise argparse.ArgumentTypeError(f"{name}: a log range needs START, STOP > 0, "
                                                     f"got {text!r}")
                values = np.geomspace(start, stop, num)
            else:
                values = np.linspace(start, stop, num)
        else:
            values = np.array([float(v) for v in text.split(",")])
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(usage) from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"{name}: values must be finite numbers, got {text!r}")
    return values


def _range(name):
    def parse(text):
        return parse_range(text, name)
    return parse


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--net: expected widths like 2,8,1, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--net: need >= 2 positive widths, got {text!r}")
    return sizes


def _positive(name):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected a positive integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {text!r}")
        return v
    return parse


PROBLEMS = {
    "xor": dict(net="2,8,1", loss="mse"),
    "digits": dict(net="64,32,10", loss="cross_entropy"),
}


def build_parser() -> argparse.ArgumentParser:
    from bpjax import __version__

    parser = argparse.ArgumentParser(
        prog="bpjax",
        description="Train whole grids of networks in one compiled JAX call and see which "
                    "initializations, learning rates and optimizers converge.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bpjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sw = sub.add_parser(
        "sweep", help="train an MLP over a grid of learning rates x init scales x seeds",
        description="Train an MLP on a built-in problem for every combination of optimizer, "
                    "learning rate, init scale and seed, in one compiled call per optimizer; "
                    "save the result (npz), a heatmap of the final loss, and print a table.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--problem", choices=sorted(PROBLEMS), default="xor",
                    help="data set: xor (4 points) or digits (8x8 images, 10 classes)")
    sw.add_argument("--net", type=_sizes, help="layer widths, inputs first (default per problem: "
                    "xor 2,8,1; digits 64,32,10)")
    sw.add_argument("--activation", default="tanh", choices=["sigmoid", "tanh", "relu", "identity"])
    sw.add_argument("--output-activation", default=None,
                    choices=["sigmoid", "tanh", "relu", "identity", "softmax"])
    sw.add_argument("--no-bias", action="store_true", help="layers without biases")
    sw.add_argument("--loss", choices=["mse", "half_mse", "cross_entropy", "softmax_mse"],
                    help="per-example loss, averaged (default: xor mse, digits cross_entropy)")
    sw.add_argument("--optimizer", default="sgd",
                    help="comma list of sgd, momentum, nesterov, adam (default sgd)")
    sw.add_argument("--lr", type=_range("--lr"), default=parse_range("1e-2:1:8:log", "--lr"),
                    help="learning rates (default 1e-2:1:8:log)")
    sw.add_argument("--momentum", type=_range("--momentum"), help="momentum values (momentum, "
                    "nesterov)")
    sw.add_argument("--init", default="uniform", choices=["uniform", "normal", "xavier", "he"],
                    help="weight init: U[-s, s], N(0, s^2), or xavier/he with gain s")
    sw.add_argument("--init-scale", type=_range("--init-scale"), default=np.array([1.0]),
                    help="init scale s (default 1)")
    sw.add_argument("--seeds", type=_positive("--seeds"), default=1,
                    help="independent inits per configuration (default 1)")
    sw.add_argument("--steps", type=_positive("--steps"), default=1000)
    sw.add_argument("--record-every", type=_positive("--record-every"),
                    help="record the loss every k steps (default: steps/100 when it divides)")
    sw.add_argument("--batch-size", type=_positive("--batch-size"),
                    help="mini-batch size (default: full batch)")
    sw.add_argument("--converged-below", type=float, default=1e-2,
                    help="a run counts as converged when its final loss is below this")
    sw.add_argument("--out", help="folder for result.npz, heatmap.png and summary.json; the "
                    "sweep checkpoints there and, rerun with the same --out, resumes")
    sw.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    sw.add_argument("--no-progress", action="store_true")

    sub.add_parser("list", help="list the registered experiments and their questions")
    rp = sub.add_parser(
        "reproduce", help="run experiments into figures, summary.json and one report page",
        description="Run the registered experiments (all by default) into OUT/NAME/ (PNG "
                    "figures and summary.json) and write OUT/index.html, a static page with "
                    "every question, figure and number. Unchanged experiments are reused.")
    rp.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default all)")
    rp.add_argument("--quick", action="store_true", help="small sizes (minutes, not more)")
    rp.add_argument("--out", default="report", help="output folder (default report/)")
    rp.add_argument("--force", action="store_true", help="rerun even unchanged experiments")
    rp.add_argument("--jobs", type=_positive("--jobs"), metavar="N",
                    help="experiments run at once, each in its own process (default: one "
                         "per core on CPU, 1 on a GPU); the numbers do not depend on it")
    rp.add_argument("--readme", nargs="?", const="README.md", metavar="PATH",
                    help="run nothing: rewrite the findings table of the README (default "
                         "./README.md) from bpjax/experiments/findings.json, the default-size "
                         "findings that `bpjax reproduce` stores (filled anew from their "
                         "numbers by the current templates)")
    return parser


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # the sweep has said how to resume; no traceback
        return 130


def _main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for arg in argv:  # argparse (3.11, 3.12) drops a "--" value and leaves the option a list
        if arg.startswith("-") and arg.endswith("=--"):
            parser.error(f"argument {arg[:-3]}: expected a value, not '--'")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "sweep":
        return run_sweep(args, parser)
    from bpjax import experiments
    from bpjax.experiments import report

    if args.command == "list":
        for name in experiments.REGISTRY:
            print(f"{name:<20} {experiments.load(name).QUESTION}")
        return 0
    if args.readme:
        from bpjax.experiments import findings

        refilled = findings.refill()
        if refilled:
            print(f"{findings.FILE}: filled anew from its numbers: {', '.join(refilled)}")
        changed = findings.rewrite_readme(args.readme)
        print(f"{args.readme}: findings table " + ("rewritten from " if changed else
                                                  "already current with ") + str(findings.FILE))
        return 0
    unknown = [n for n in args.names if n not in experiments.REGISTRY]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; registered: "
                     f"{', '.join(experiments.REGISTRY)}")
    entries = report.reproduce(args.names, quick=args.quick, out=args.out, force=args.force,
                               jobs=args.jobs or report.default_jobs())
    failed = [n for n, e in entries.items() if e["status"] == "failed"]
    print(f"wrote {args.out}/index.html" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def run_sweep(args, parser) -> int:
    import jax

    import bpjax
    from bpjax import initializers, losses, nets, plots, problems

    defaults = PROBLEMS[args.problem]
    sizes = args.net or _sizes(defaults["net"])
    loss_name = args.loss or defaults["loss"]
    if args.problem == "xor":
        data = problems.xor()
    else:
        data, _ = problems.digits()
    n_in = data[0].shape[1]
    n_out = data[1].shape[1] if data[1].ndim == 2 else int(data[1].max()) + 1
    if sizes[0] != n_in or sizes[-1] != n_out:
        parser.error(f"--net {','.join(map(str, sizes))}: problem {args.problem} needs "
                     f"{n_in} inputs and {n_out} outputs")
    opt_names = [o.strip() for o in args.optimizer.split(",") if o.strip()]
    unknown = [o for o in opt_names if o not in bpjax.optim.BUILTIN]
    if not opt_names or unknown:
        parser.error(f"--optimizer: unknown {unknown or args.optimizer!r}; "
                     f"choose from {', '.join(bpjax.optim.BUILTIN)}")
    if args.momentum is not None and not {"momentum", "nesterov"} & set(opt_names):
        parser.error("--momentum needs --optimizer momentum or nesterov")
    record_every = args.record_every or (args.steps // 100 if args.steps % 100 == 0 else 1)
    if args.steps % record_every:
        parser.error(f"--record-every {record_every} must divide --steps {args.steps}")

    net = nets.mlp(sizes, activation=args.activation, bias=not args.no_bias,
                   output_activation=args.output_activation)
    loss = losses.supervised(net.apply, loss_name)
    init_name = args.init

    def init(config, key):
        return net.init(key, w_init=initializers.by_name(init_name, config["init_scale"]))

    axes = {"lr": args.lr}
    if args.momentum is not None:
        axes["momentum"] = args.momentum
    axes["init_scale"] = args.init_scale
    axes["seed"] = np.arange(args.seeds)
    optimizers = {o: o for o in opt_names}
    try:
        res = bpjax.sweep(loss, init, optimizers, bpjax.Grid(**axes), args.steps,
                          record_every=record_every, data=data, batch_size=args.batch_size,
                          seed=args.seed, progress=False if args.no_progress else None,
                          record_params=False, out=args.out)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    summary = summarize(res, args.converged_below)
    print(format_table(summary, jax.default_backend()))
    if args.out:
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        swept = [d for d in ("lr", "momentum", "init_scale") if d in res.dims
                 and len(res.coords[d]) > 1]
        if len(swept) >= 2:
            plots.final_loss_heatmap(
                res, swept[0], swept[1], os.path.join(args.out, "heatmap.png"),
                title=f"{args.problem}: {','.join(map(str, sizes))} {args.activation} net, "
                      f"{args.steps} steps, median over {args.seeds} seed(s)")
        print(f"saved {args.out}/result.npz, summary.json"
              + (", heatmap.png" if len(swept) >= 2 else ""))
    return 0


def summarize(res, threshold: float) -> dict:
    out = {"elapsed_s": res.meta["elapsed_s"], "configs": int(res.final_loss.size),
           "converged_below": threshold, "optimizers": {}}
    for name in res.coords["optimizer"].tolist():
        part = res.sel(optimizer=name)
        final = part.final_loss
        seed_axis = part.dims.index("seed")
        median = np.median(final, axis=seed_axis)
        dims = [d for d in part.dims if d != "seed"]
        best = np.unravel_index(np.argmin(median), median.shape)
        out["optimizers"][name] = {
            "best": {d: float(part.coords[d][i]) for d, i in zip(dims, best)},
            "best_median_final_loss": float(median[best]),
            "converged_fraction": float(np.mean((final < threshold) & ~part.diverged)),
            "diverged_fraction": float(np.mean(part.diverged)),
        }
    return out


def format_table(summary: dict, backend: str) -> str:
    lines = [f"{summary['configs']} runs in {summary['elapsed_s']:.1f}s on {backend}; "
             f"converged = final loss < {summary['converged_below']:g}",
             f"{'optimizer':<10} {'converged':>9} {'diverged':>9} {'best median loss':>17}  best"]
    for name, s in summary["optimizers"].items():
        best = ", ".join(f"{k}={v:.3g}" for k, v in s["best"].items())
        lines.append(f"{name:<10} {s['converged_fraction']:>9.1%} {s['diverged_fraction']:>9.1%} "
                     f"{s['best_median_final_loss']:>17.3e}  {best}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
