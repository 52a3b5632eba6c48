"""Which inits and learning rates make a ReLU net on real data converge (seed 004)?

The seed: a from-scratch ReLU net with a softmax output and MSE loss never
converges from U[-1, 1] weights at lr 0.01 or 0.001, converges from
U[-0.5, 0.5] or a normal init, and from U[-1, 1] only at lr 1e-4. We train the
same kind of net on the 8x8 digits (a real 10-class set), for every init x
learning rate x seed, with softmax+MSE and with cross-entropy, in one sweep per
loss. The seed gives no sizes; we use two hidden ReLU layers of 32 units
(64-32-32-10), biases initialized to 0, plain mini-batch SGD (batch 32).

A run counts as converged when its final training accuracy is >= 80% (chance is
10%) within the step budget; the second map shows runs whose loss fell by less
than 5% over the whole run (the seed's "error remains the same"), which is what
both saturated nets and tiny learning rates give.

Learning rates. bpjax's loss is the batch *mean* of the per-example loss (and the
per-example MSE sums over the 10 outputs), so one SGD step at lr eta on a batch of
32 moves the weights like 32 per-sample updates at eta / 32. The seed's from-scratch
net most likely updates per sample, so its lr corresponds to ours times 32 (times
3.2 if its MSE averages over the outputs); 800 of our steps are 25,600 examples, 19
epochs of the 1348 training images. Each seed case is read at its nominal lr and
at both conversions, and wherever no init at all reaches the bar at that lr the
verdict is "the step budget decides": such a cell says nothing about the init.

What we measure (summary.json, default size): with softmax+MSE no init reaches
80% below lr 0.032 within 800 steps, so every seed case read at its nominal lr
(0.01, 0.001, 1e-4) is decided by the budget ("fails at 1e-4 too", reported before,
was guaranteed by it). Read as per-sample lrs, the seed's contrast, the same lr
failing from U[-1, 1] and training from U[-0.5, 0.5], is measured at lr 0.032
(U[-1, 1]: 0 of 4 seeds, 56% median train accuracy; U[-0.5, 0.5]: 4 of 4, 91%):
that is the seed's lr 0.01 under the x3.2 conversion (where its U[-0.5, 0.5] at
0.01 agrees too) and its 0.001 under x32 (where U[-1, 1] at 0.01, our 0.32, trains
on every seed, against the seed). Its lr 1e-4 cure is decided by the budget under
both. "normal" converges only with a small std: N(0, 1) trains at no lr (87% of
its softmax outputs saturated at init, U[-1, 1] 41%), so the seed's normal init
must have been a scaled one. With cross-entropy, U[-1, 1] trains at lr 0.01 to
0.3. The diagnostics say why the others stall: at init, U[-1, 1] makes the logits
so large (std ~ 10) that the softmax saturates, and the MSE gradient through a
saturated softmax vanishes; cross-entropy's gradient (p - y) does not vanish
there, so the same init trains with cross-entropy.

The seed's control: with sigmoid hidden units, it says, the range ([0,1], [-1,1] or
[-0.5,0.5]) barely matters. The softmax+MSE sweep has the activation as a grid axis
(traced: one program for both nets; the ReLU runs' numbers are those of a sweep of the
ReLU net alone, bit for bit, on the same keys), and
every init also runs from U[0,1]. Measured (default size): U[0,1] trains neither net at
any lr (all its weights positive), so over the seed's three
ranges the fraction converged differs by 1.0 at every lr where anything trains, for
sigmoid as for ReLU; between U[-1,1] and U[-0.5,0.5] alone it differs less for sigmoid
(0.38 against 0.56 on average) and so does the median final accuracy over the three
(0.24 against 0.39): the control holds only partly. The sigmoid net trains from no init
below lr 0.32 within 800 steps.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

import bpjax
from bpjax import diagnostics, initializers, losses, nets, problems
from bpjax.compilation_cache import jit_fast, jit_once
from bpjax.experiments import script

SEED = "004"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Does a softmax+MSE ReLU net fail from U[-1,1] at lr 0.01 and 0.001 but train from "
            "U[-0.5,0.5], normal inits or lr 1e-4 (the seed's per-sample lrs, read also as "
            "our batch-mean ones), and why? (seed 004)")
SIZES = {"default": dict(lrs=11, seeds=4, steps=800, record_every=40),
         "quick": dict(lrs=6, seeds=2, steps=100, record_every=25)}
NET = nets.mlp([64, 32, 32, 10], activation="relu")
# The seed's control: the same net with sigmoid hidden units, where it says the init range
# barely matters. A traced grid axis of the softmax+MSE sweep (nets.chosen).
NETS = {"relu": NET, "sigmoid": nets.mlp([64, 32, 32, 10], activation="sigmoid")}
CONTROL = "sigmoid"
INITS = {  # label -> weight initializer (biases start at 0)
    "U[-1,1]": initializers.uniform(1.0),
    "U[-0.5,0.5]": initializers.uniform(0.5),
    "N(0,1)": initializers.normal(1.0),
    "N(0,0.1)": initializers.normal(0.1),
    "N(0,0.01)": initializers.normal(0.01),
    "Xavier": initializers.xavier(),
    "He": initializers.he(),
    "U[0,1]": lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype),
}
# The three ranges the seed tried with sigmoid ("[0,1] or [-1,1] or [-0.5,0.5]").
SEED_RANGES = ("U[0,1]", "U[-1,1]", "U[-0.5,0.5]")
SYMMETRIC = ("U[-1,1]", "U[-0.5,0.5]")  # the two of them the ReLU claim is about
LOSSES = {"softmax+MSE": "softmax_mse", "cross-entropy": "cross_entropy"}
# The seed's reports, for softmax+MSE: (init, lr) -> converged?
SEED_CASES = {("U[-1,1]", 1e-2): False, ("U[-1,1]", 1e-3): False, ("U[-1,1]", 1e-4): True,
              ("U[-0.5,0.5]", 1e-2): True, ("N(0,1)", 1e-2): True}
THRESHOLD = 0.8
BATCH = 32
# The seed's lr is for its own from-scratch net, most likely one update per sample. Our
# loss is the batch *mean* of the per-example loss, so one step at lr eta moves like
# BATCH per-sample steps at eta / BATCH: the seed's lr corresponds to ours times 32, and
# times 3.2 if its MSE averages over the 10 outputs (ours sums them, a 10x larger
# gradient). Each seed case is read at all three conversions.
LR_CONVERSIONS = {"as our batch-mean lr (x1)": 1.0,
                  "per-sample, MSE summed over outputs (x32)": float(BATCH),
                  "per-sample, MSE averaged over outputs (x3.2)": BATCH / 10}


def list_inits() -> list[str]:
    return list(INITS)

STALL = 0.05


def init(config, key):
    """The init named by the traced index config["init"] (lax.switch picks one); the
    nets' params do not depend on their activation."""
    branches = [lambda k, f=f: NET.init(k, w_init=f) for f in INITS.values()]
    return jax.lax.switch(config["init"].astype(jnp.int32), branches, key)


def accuracy(params, x, y, net=NET):
    return jnp.mean(jnp.argmax(jax.vmap(net.apply, (None, 0))(params, x), -1) == y)


def run(out: str, quick: bool = False) -> dict:
    from bpjax.experiments import _relu_control
    from bpjax.experiments import _relu_init_map_figures as figures  # (they import this)

    size = SIZES["quick" if quick else "default"]
    (x, y), _ = problems.digits()
    grid = bpjax.Grid(init=np.arange(len(INITS)), lr=np.geomspace(1e-5, 1, size["lrs"]),
                      seed=np.arange(size["seeds"]))
    start = bpjax.initial_params(init, grid)
    flat = lambda tree: jax.tree.map(lambda a: a.reshape((-1,) + a.shape[3:]), tree)  # noqa: E731
    results, numbers = {}, {"net": "64-32-32-10 ReLU, biases 0", "optimizer": "SGD, batch 32",
                            "steps": size["steps"], "seeds": size["seeds"],
                            "converged_if_train_accuracy_at_least": THRESHOLD,
                            "lr": grid.axes["lr"], "inits": list(INITS)}
    for label, loss_name in LOSSES.items():
        loss = losses.supervised(NET.apply, loss_name)
        both = label == "softmax+MSE"  # the sigmoid control: softmax+MSE only, to stay fast
        swept = bpjax.Grid(activation=np.arange(len(NETS)), **grid.axes) if both else grid
        res = bpjax.sweep(_loss(loss_name) if both else loss, init, "sgd", swept,
                          size["steps"], data=(x, y), batch_size=32,
                          record_every=size["record_every"], record_params=False)
        if both:
            numbers[f"{CONTROL} control"] = _relu_control.maps(
                res.sel(activation=list(NETS).index(CONTROL)), flat(start), grid, x, y)
            res = res.sel(activation=list(NETS).index("relu"))
        acc = jit_fast(jax.vmap(accuracy, (0, None, None)))(flat(res.final_params), x, y)
        acc = np.asarray(acc).reshape(grid.shape)
        converged = (acc >= THRESHOLD) & ~res.diverged
        stalled = ((res.loss[..., 0] - res.loss[..., -1]) < STALL * res.loss[..., 0]) \
            & ~res.diverged
        diag = _diagnostics(loss, flat(start), flat(res.final_params), x, y, grid.shape)
        results[label] = (res, converged, stalled, diag)
        seed_cases = {}
        best_over_inits = converged.mean(-1).max(0)  # (lr,): did any init train there?
        for (name, lr), ok in SEED_CASES.items():
            cell = (list(INITS).index(name), _nearest(grid.axes["lr"], lr))
            seed_cases[f"{name} lr={lr:g}"] = {
                "seed_reports": "converges" if ok else "never converges",
                "fraction_stalled": float(stalled[cell].mean()),
                "fraction_converged": float(converged[cell].mean()),
                "agrees": bool((converged[cell].mean() >= 0.5) == ok),
                **{conversion: _verdict(converged, best_over_inits, grid.axes["lr"], name,
                                        lr * factor, ok)
                   for conversion, factor in LR_CONVERSIONS.items()},
            }
        conv = converged.mean(-1)
        wide, narrow = list(INITS).index("U[-1,1]"), list(INITS).index("U[-0.5,0.5]")
        contrast = [float(v) for v, a, b in zip(grid.axes["lr"], conv[wide], conv[narrow])
                    if a < 0.5 <= b]
        numbers[label] = {
            "fraction_converged": converged.mean(-1),  # (init, lr)
            "fraction_stalled": stalled.mean(-1),
            "fraction_diverged": res.diverged.mean(-1),
            "final_train_accuracy_median": np.median(acc, -1),
            "plateau_fraction_median": np.median(diagnostics.plateau_fraction(res.loss), -1),
            "softmax_saturation_at_init": diag["saturation_init"].mean(axis=(1, 2)),
            "dead_units_at_init": diag["dead_init"].mean(axis=(1, 2)),
            "dead_units_at_end": diag["dead_end"].mean(-2),  # (init, lr, layer)
            "grad_norm_per_layer_at_init": diag["grad_init"].mean(axis=(1, 2)),
            "seed_cases": seed_cases,
            "lrs_where_any_init_converges": [float(v) for v, b in
                                             zip(grid.axes["lr"], best_over_inits) if b > 0],
            "lrs_where_U[-0.5,0.5]_converges_and_U[-1,1]_does_not": contrast,
        }
    numbers["epochs"] = size["steps"] * BATCH / len(y)
    numbers["init_spread"] = _relu_control.spreads(numbers)
    numbers = {**finding(numbers), **numbers}
    figures.map_figure(results, grid, os.path.join(out, "convergence_map.png"), size)
    figures.why_figure(results, grid, os.path.join(out, "why.png"))
    return script.save_summary(out, numbers)


def finding(numbers) -> dict:
    from bpjax.experiments import _relu_control
    """The verdict and finding, filled from the measured maps. The seed's five cases, read
    as per-sample lrs (x32, x3.2): reproduced if under one reading every case agrees,
    partly if some do, refuted if none does and some disagree, open if the step budget
    decides them all. The sigmoid control agrees when the init range (the seed's three)
    moves the fraction converged less for the sigmoid net than for the ReLU net, partly
    when only U[-1,1] against U[-0.5,0.5] does; "reproduced" needs a control that agrees,
    and one that agrees at least partly makes "refuted" or "open" "partly"."""
    mse, names = numbers["softmax+MSE"], numbers["inits"]
    lrs = mse["lrs_where_any_init_converges"]
    contrast = mse["lrs_where_U[-0.5,0.5]_converges_and_U[-1,1]_does_not"]
    said = {c: {case: row[c]["verdict"] for case, row in mse["seed_cases"].items()}
            for c in LR_CONVERSIONS}
    nominal, per_sample = list(LR_CONVERSIONS)[0], list(LR_CONVERSIONS)[1:]
    flat = [v for c in per_sample for v in said[c].values()]
    verdict = ("reproduced" if any(all(v == "agrees" for v in said[c].values())
                                   for c in per_sample)
               else "partly" if "agrees" in flat else "refuted" if "disagrees" in flat
               else "open")
    control = _relu_control.verdict(numbers["init_spread"])
    if (verdict == "reproduced" and control != "agrees") or (
            verdict in ("refuted", "open") and control in ("agrees", "partly")):
        verdict = "partly"
    word = lambda v: v if v in ("agrees", "disagrees") else "budget decides"  # noqa: E731
    reads = [f"{c.split('(')[-1][:-1]}: " + ", ".join(f"{case} {word(v)}"
                                                      for case, v in said[c].items())
             for c in per_sample]
    bar = f"{100 * numbers['converged_if_train_accuracy_at_least']:.0f}%"
    text = (f"with softmax+MSE no init reaches {bar} train accuracy in {numbers['steps']} "
            f"steps ({numbers['epochs']:.0f} epochs) below lr {min(lrs):.2g} (ours, a "
            "batch-mean lr)" if lrs else
            f"with softmax+MSE no init reaches {bar} train accuracy at any lr in "
            f"{numbers['steps']} steps")
    if all(word(v) == "budget decides" for v in said[nominal].values()):
        text += (", so read at the seed's nominal lrs (0.01, 0.001, 1e-4) every case is "
                 "decided by the step budget, not the init")
    else:
        text += "; read at the seed's nominal lrs: " + ", ".join(
            f"{case} {word(v)}" for case, v in said[nominal].items())
    normal = np.asarray(mse["fraction_converged"])[names.index("N(0,1)")].max()
    sat = np.asarray(mse["softmax_saturation_at_init"])
    ce = np.asarray(numbers["cross-entropy"]["fraction_converged"])[names.index("U[-1,1]")]
    ce_lrs = [lr for lr, f in zip(numbers["lr"], ce) if f >= 0.5]
    return script.stated(verdict, text + (
        ". Read as per-sample lrs (ours = 32x or 3.2x theirs), the seed's contrast, the same "
        "lr failing from U[-1,1] and training from U[-0.5,0.5], is measured at lr "
        f"{', '.join(f'{v:.2g}' for v in contrast) or 'none'}; " + "; ".join(reads)
        + ". N(0,1) trains " + ("at no lr" if normal == 0 else
                                f"at best {100 * normal:.0f}% of seeds")
        + f" ({100 * sat[names.index('N(0,1)')]:.0f}% of its softmax outputs saturated at "
        f"init, U[-1,1] {100 * sat[names.index('U[-1,1]')]:.0f}%)"
        + (", so the seed's normal init must have been a scaled one" if normal < 0.5 else "")
        + "; with cross-entropy U[-1,1] trains "
        + (f"at lr {min(ce_lrs):.2g}" + (f" to {max(ce_lrs):.2g}." if len(ce_lrs) > 1 else ".")
           if ce_lrs else "at no lr.") + _relu_control.text(numbers, control)))


def _loss(loss_name):
    """The per-example loss through the net of the traced config["activation"] (an index
    into NETS): one program for both nets."""
    def loss(params, batch, config):
        net = nets.mlp([64, 32, 32, 10], activation=nets.chosen(config["activation"], NETS))
        return losses.supervised(net.apply, loss_name)(params, batch)
    return loss


def _verdict(converged, best_over_inits, lrs, name, lr, ok) -> dict:
    """The seed's claim about (name, lr) against the grid cell nearest lr. When no init at
    all reaches the bar there within the step budget, the budget decides, not the init."""
    if lr > lrs[-1] * 1.5:
        return {"lr": lr, "verdict": "outside the grid"}
    j = _nearest(lrs, lr)
    frac = float(converged[list(INITS).index(name), j].mean())
    verdict = ("the step budget decides (no init converges at this lr)"
               if best_over_inits[j] == 0 else "agrees" if (frac >= 0.5) == ok else "disagrees")
    return {"lr": float(lrs[j]), "fraction_converged": frac, "verdict": verdict}


def _nearest(values, v):
    return int(np.argmin(np.abs(np.log(values) - np.log(v))))


def _diagnostics(loss, start, final, x, y, shape):
    xs = x[:512]

    def at(params):
        logits = jax.vmap(NET.apply, (None, 0))(params, xs)
        return (diagnostics.softmax_saturation(logits), diagnostics.dead_units(params, xs),
                diagnostics.layer_grad_norms(loss, params, (xs, y[:512])))

    @jit_once  # one program: eagerly, each lax.map and its remainder's ops compiled their own
    def both(start, final):  # (at the end, only the dead units)
        return jax.lax.map(at, start, batch_size=64), jax.lax.map(
            lambda p: diagnostics.dead_units(p, xs), final, batch_size=64)

    (s0, d0, g0), d1 = both(start, final)
    r = lambda a: np.asarray(a).reshape(shape + a.shape[1:])  # noqa: E731
    return {"saturation_init": r(s0), "dead_init": r(d0), "dead_end": r(d1), "grad_init": r(g0)}


if __name__ == "__main__":
    script.main(run, __doc__, "relu_init_map")
