"""relu_init_map's sigmoid control (seed 004: "the init range barely matters for a sigmoid
net"): the control's maps, how much the init range moves convergence per activation, and
the control's verdict and sentence in the finding."""

import jax
import numpy as np

from bpjax import diagnostics
from bpjax.compilation_cache import jit_fast
from bpjax.experiments import relu_init_map as exp


def spread_over_inits(fraction_converged, names=exp.SEED_RANGES):
    """Per lr, the largest minus the smallest fraction of seeds converged over the inits
    ``names``: 0 where the init range does not matter at that lr."""
    rows = np.asarray(fraction_converged)[[list(exp.INITS).index(n) for n in names]]
    return rows.max(0) - rows.min(0)


def verdict(spread) -> str:
    """agrees / partly / disagrees / open: does the init range (the seed's three, or only
    its two symmetric ones) move the fraction converged less for sigmoid than for ReLU?"""
    mean = lambda act, k: spread[act][f"mean_spread_over_{k}"]  # noqa: E731
    if mean(exp.CONTROL, "seed_ranges") is None or mean("relu", "seed_ranges") is None:
        return "open"
    if mean(exp.CONTROL, "seed_ranges") < mean("relu", "seed_ranges"):
        return "agrees"
    return ("partly" if mean(exp.CONTROL, "symmetric_ranges") < mean("relu", "symmetric_ranges")
            else "disagrees")


def text(numbers, control) -> str:
    spread, ctrl = numbers["init_spread"], numbers[f"{exp.CONTROL} control"]
    get = lambda k: (spread[exp.CONTROL][k], spread["relu"][k])  # noqa: E731
    acc_sig, acc_relu = get("mean_accuracy_spread_over_seed_ranges")
    head = (f" The seed's {exp.CONTROL} control (the same net and loss, {exp.CONTROL} hidden units"
            f"; control {control}): ")
    acc_text = (f"the median final accuracy differs over the seed's three ranges by "
                f"{acc_sig:.2f} for {exp.CONTROL} against {acc_relu:.2f} for ReLU, averaged over "
                "every lr")
    if control == "open":
        idle = exp.CONTROL if get("mean_spread_over_seed_ranges")[0] is None else "ReLU"
        return (head + f"{idle}"
                " trains from no init at any lr within the step budget, so the maps cannot say "
                f"whether the init range matters less; {acc_text}.")
    sig, relu = get("mean_spread_over_seed_ranges")
    sym_sig, sym_relu = get("mean_spread_over_symmetric_ranges")
    u01 = get("best_fraction_converged_from_U[0,1]")
    lrs = [lr for lr, f in zip(numbers["lr"], ctrl["fraction_converged"]
                               [list(exp.INITS).index("U[-1,1]")]) if f >= 0.5]
    bar = f"{100 * numbers['converged_if_train_accuracy_at_least']:.0f}%"
    return (head + f"over U[0,1], U[-1,1], U[-0.5,0.5] the fraction of seeds reaching {bar} "
            f"differs by {sig:.2f} on average over the lrs where some init of the net trains, "
            f"against {relu:.2f} for ReLU (U[0,1] trains at best {100 * u01[0]:.0f}% of "
            f"{exp.CONTROL} and {100 * u01[1]:.0f}% of ReLU seeds); between U[-1,1] and "
            f"U[-0.5,0.5] alone by {sym_sig:.2f} against {sym_relu:.2f}; {acc_text}; "
            f"{exp.CONTROL} trains from U[-1,1] "
            + (f"at lr {min(lrs):.2g} to {max(lrs):.2g}" if lrs else "at no lr")
            + " and from no init below lr "
            + f"{min(spread[exp.CONTROL]['lrs_where_some_init_converges']):.2g}.")


def maps(res, start, grid, x, y) -> dict:
    """The sigmoid net's maps, as the ReLU net's (fraction of seeds per init x lr), from
    its sweep and the (flattened) params it started from: the same for either net."""
    net = exp.NETS[exp.CONTROL]
    flat = lambda tree: jax.tree.map(lambda a: a.reshape((-1,) + a.shape[3:]), tree)  # noqa: E731
    acc = jit_fast(jax.vmap(lambda p: exp.accuracy(p, x, y, net)))(flat(res.final_params))
    acc = np.asarray(acc).reshape(grid.shape)
    converged = (acc >= exp.THRESHOLD) & ~res.diverged
    sat = jit_fast(lambda s: jax.lax.map(lambda p: diagnostics.softmax_saturation(  # one program
        jax.vmap(net.apply, (None, 0))(p, x[:512])), s, batch_size=64))(start)
    return {"net": f"64-32-32-10 {exp.CONTROL}, biases 0", "loss": "softmax+MSE",
            "fraction_converged": converged.mean(-1),  # (init, lr)
            "fraction_diverged": res.diverged.mean(-1),
            "final_train_accuracy_median": np.median(acc, -1),
            "softmax_saturation_at_init": np.asarray(sat).reshape(grid.shape).mean((1, 2))}


def spreads(numbers) -> dict:
    """How much the init decides convergence, per activation: over the seed's three
    ranges and over every init, the spread of the fraction converged at each lr, and its
    mean over the lrs where some init of that net converges (elsewhere the step budget,
    not the init, decides; None when that is every lr). The spread of the median final
    accuracy over the seed's ranges, averaged over every lr, says the same without the
    bar."""
    out = {"inits_of_the_seed": list(exp.SEED_RANGES)}
    control = numbers[f"{exp.CONTROL} control"]
    for act, row in (("relu", numbers["softmax+MSE"]), (exp.CONTROL, control)):
        m = np.asarray(row["fraction_converged"])
        live = m.max(0) > 0  # (lr,)
        seed3, every = spread_over_inits(m), spread_over_inits(m, list(exp.INITS))
        sym = spread_over_inits(m, exp.SYMMETRIC)
        mean = lambda a, live=live: float(a[live].mean()) if live.any() else None  # noqa: E731
        out[act] = {"lrs_where_some_init_converges": [float(v) for v, b in
                                                      zip(numbers["lr"], live) if b],
                    "spread_over_seed_ranges": seed3, "spread_over_all_inits": every,
                    "mean_spread_over_seed_ranges": mean(seed3),
                    "mean_spread_over_all_inits": mean(every),
                    "spread_over_symmetric_ranges": sym,
                    "mean_spread_over_symmetric_ranges": mean(sym),
                    "best_fraction_converged_from_U[0,1]": float(m[list(exp.INITS).index("U[0,1]")]
                                                                 .max()),
                    "mean_accuracy_spread_over_seed_ranges": float(spread_over_inits(
                        row["final_train_accuracy_median"]).mean())}
    return out
