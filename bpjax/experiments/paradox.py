"""The "paradox" of seed 000: a weight that first moves the wrong way, over all starts.

Net y = sigmoid(w2 sigmoid(w1 x)), no biases, x = 0.9, target 0.9, loss
0.5 (y - 0.9)^2, lr 0.1. While y < 0.9, dL/dw1 = (y - t) y (1 - y) w2 h (1 - h) x
has the sign of -w2, so gradient descent moves w1 in the direction of sign(w2):
down while w2 < 0, up once w2 > 0. w1 turns exactly at the step where w2 changes
sign (tested), and this is not a flaw: the loss falls monotonically all along.

Here the seed's two runs, then a sweep over a dense grid of starts (w1, w2) for
SGD, momentum and Adam at lr 0.1: where each weight is non-monotone, how many
steps each start needs to reach the loss threshold, and whether the loss itself
ever rises. Then the seed's question, "would it be better to anticipate a positive
w2?", measured with two oracles over the same grid (6,000 steps at both sizes):
SGD whose w1 may never decrease, and SGD that puts w2's final sign (+: every
solution has w2 > logit(0.9) = 2.2) into w1's gradient, so that w1 moves up from
the first step. Steps to the threshold per start are written to
steps_to_threshold.csv.

What we measure (default size, 96 x 96 starts in [-3, 3]^2): with SGD, w1 is
non-monotone in 45% of starts, w2 in none, and the loss never rises; w1's turn
comes at a median 8% of the steps to reach the loss threshold, after a median
detour of 0.31. SGD needs a median 2,460 steps on the flat sigmoid (over the 90%
of starts that reach the threshold in 6,000 steps), momentum 240, Adam 80
(though Adam's fixed-size steps make every weight oscillate). Anticipating w2's
sign saves little in the median but more than the detour: over the starts with
w2 < 0 the sign oracle needs a median 2,720 steps against SGD's 3,120 (w1 never
decreasing: 2,900; a start not reached counts as slowest), and it reaches the
threshold from all of them where SGD reaches it from 79%; over all starts 2,480
against 2,560. The detour is not free: lowering w1 shrinks h = s(0.9 w1), and
w2's gradient is proportional to h, so from the corner (-3, -3) SGD needs 151,100
steps (a float32 NumPy loop, past the sweep's budget), the sign oracle 3,700 and
the w1-never-decreases one 9,240. Rescaling the steps (momentum, Adam) still
saves 10 to 30 times more in the median.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import bpjax
from bpjax import problems, trajectories
from bpjax.compilation_cache import jit_fast
from bpjax.experiments import script

SEED = "000"  # the seed document it answers (../shared/seeds/)
QUESTION = ("In the 1-1-1 sigmoid net, which starts make a weight move the 'wrong' way before "
            "turning, does it cost anything, and could an optimizer anticipate it? (seed 000)")
SIZES = {"default": dict(n=96, steps=6000, record_every=20, oracle_steps=6000),
         # SGD needs thousands of steps on the flat sigmoid: at 600 its map was all "not reached"
         "quick": dict(n=24, steps=6000, record_every=10, oracle_steps=6000)}
OPTIMIZERS = ["sgd", "momentum", "adam"]
THRESHOLD = 1e-4  # loss: |y - 0.9| < 0.014
LR = problems.SEED000_LR


def seed_runs(steps: int):
    return {w2: bpjax.train(problems.seed000_loss, {"w1": 0.1, "w2": w2}, bpjax.optim.sgd(LR),
                            steps) for w2 in (0.1, -0.5)}


def w1_never_decreases(lr):
    """Oracle: SGD whose w1 may not move down (every solution has w2 > logit(0.9) > 0, so
    w1's steps end up upward; the 'wrong-way' ones are skipped)."""
    sgd = optax.sgd(lr)

    def update(grads, state, params=None):
        updates, state = sgd.update(grads, state, params)
        return {**updates, "w1": jnp.maximum(updates["w1"], 0.0)}, state

    return optax.GradientTransformation(sgd.init, update)


def w2_sign_known(lr):
    """Oracle: SGD with w2's final sign (+) in w1's gradient. dL/dw1 is proportional to w2,
    so this uses |w2| there: w1 moves as it will once w2 > 0, from the first step."""
    sgd = optax.sgd(lr)

    def update(grads, state, params):
        grads = {**grads, "w1": grads["w1"] * jnp.sign(params["w2"])}
        return sgd.update(grads, state, params)

    return optax.GradientTransformation(sgd.init, update)


ORACLES = {"sgd": bpjax.optim.sgd, "oracle: w1 never decreases": w1_never_decreases,
           "oracle: w2's final sign known": w2_sign_known}


def oracle_steps(w: np.ndarray, steps: int, record_every: int) -> np.ndarray:
    """Steps to the loss threshold, (oracle, w1, w2), -1 where not reached."""
    grid = bpjax.Grid(w1=w, w2=w, lr=[LR])
    res = bpjax.sweep(problems.seed000_loss, lambda c, k: {"w1": c["w1"], "w2": c["w2"]},
                      ORACLES, grid, steps, record_every=record_every, record_params=False)
    first = trajectories.first_below(res.sel(lr=LR).loss, THRESHOLD)  # NumPy in, NumPy out
    return np.where(first >= 0, first * record_every, -1)


@jit_fast
def _turns(w_xT, atol):
    """Per trajectory (leading axes kept): whether it is monotone, and its first turn (-1:
    never), moves below ``atol`` ignored; as ``trajectories.analyze``, in one program."""
    flat = jnp.reshape(w_xT, (-1, w_xT.shape[-1]))
    monotone, first = jax.vmap(lambda t: (trajectories.is_monotone(t, atol),
                                          trajectories.first_turn(t, atol)))(flat)
    return monotone.reshape(w_xT.shape[:-1]), first.reshape(w_xT.shape[:-1])


def _analyze(weights_xT, loss_xT, atol: float) -> dict:
    """``trajectories.analyze``'s monotone, first_turn and first_below, in NumPy, from one
    compiled program (analyze runs op by op: a few dozen one-op programs to compile);
    weights and loss of one shape share it."""
    turns = {k: [np.asarray(v) for v in _turns(w, atol)] for k, w in weights_xT.items()}
    return {"monotone": {k: m for k, (m, _) in turns.items()},
            "first_turn": {k: f for k, (_, f) in turns.items()},
            "first_below": trajectories.first_below(loss_xT, THRESHOLD)}


def _median_steps(s: np.ndarray) -> float:
    """Median steps to the threshold; a start that never reaches it counts as slower than
    every one that does (inf when fewer than half reach it)."""
    return float(np.median(np.where(s >= 0, s, np.inf))) if s.size else None


def compare_oracles(w: np.ndarray, steps_to: np.ndarray) -> dict:
    """GD (index 0 of ``steps_to``, (oracle, w1, w2)) against each oracle, over all starts
    and over those with w2 < 0 (where GD's w1 takes the detour)."""
    w2 = np.broadcast_to(w[None, :], steps_to.shape[1:])
    gd = steps_to[0]
    out = {}
    for o, name in list(enumerate(ORACLES))[1:]:
        s = steps_to[o]
        out[name] = {}
        for region, mask in (("all starts", np.ones_like(w2, bool)),
                             ("starts with w2 < 0", w2 < 0)):
            both = mask & (s >= 0) & (gd >= 0)
            out[name][region] = {
                "starts": int(mask.sum()),
                "gd_fraction_reaching": float(np.mean(gd[mask] >= 0)),
                "oracle_fraction_reaching": float(np.mean(s[mask] >= 0)),
                "gd_median_steps": _median_steps(gd[mask]),
                "oracle_median_steps": _median_steps(s[mask]),
                "median_ratio_gd_over_oracle_where_both_reach": float(np.median(
                    gd[both] / np.maximum(s[both], 1))) if both.any() else None,
                "starts_only_oracle_reaches": int(np.sum(mask & (s >= 0) & (gd < 0))),
                "starts_only_gd_reaches": int(np.sum(mask & (s < 0) & (gd >= 0))),
            }
    return out


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    runs = seed_runs(size["steps"])
    w = np.linspace(-3, 3, size["n"])
    grid = bpjax.Grid(w1=w, w2=w, lr=[LR])
    res = bpjax.sweep(problems.seed000_loss, lambda c, k: {"w1": c["w1"], "w2": c["w2"]},
                      OPTIMIZERS, grid, size["steps"], record_every=size["record_every"])
    res = res.sel(lr=LR)
    info = _analyze(res.params, res.loss, atol=1e-7)
    loss_turns = _analyze({"loss": res.loss}, res.loss, atol=1e-9)
    steps_to = np.where(info["first_below"] >= 0, info["first_below"] * size["record_every"],
                        -1)
    w1 = res.params["w1"]
    numbers = {"steps": size["steps"], "starts": int(w.size**2), "threshold": THRESHOLD,
               "seed_runs": {}, "per_optimizer": {}}
    for w2, r in runs.items():
        turn = int(_turns(r.params["w1"], 0.0)[1])
        numbers["seed_runs"][f"w2={w2:g}"] = {
            "w1_first_turn_step": turn,
            "w2_first_positive_step": int(np.argmax(r.params["w2"] > 0)) if w2 < 0 else None,
            "w1_lowest": float(r.params["w1"].min()),
            "loss_monotone": bool(np.all(np.diff(r.loss) <= 0)),
            "steps_to_threshold": int(trajectories.first_below(r.loss, THRESHOLD)),
        }
    for o, name in enumerate(OPTIMIZERS):
        reached = steps_to[o] >= 0
        detour = np.maximum(w1[o, ..., 0] - w1[o].min(axis=-1), 0)  # how far w1 fell first
        turned = info["first_turn"]["w1"][o] >= 0
        numbers["per_optimizer"][name] = {
            "fraction_w1_non_monotone": float(np.mean(~info["monotone"]["w1"][o])),
            "fraction_w2_non_monotone": float(np.mean(~info["monotone"]["w2"][o])),
            "fraction_loss_non_monotone": float(np.mean(~loss_turns["monotone"]["loss"][o])),
            "fraction_reaching_threshold": float(np.mean(reached)),
            "median_steps_to_threshold": float(np.median(steps_to[o][reached]))
            if reached.any() else None,
            "worst_steps_to_threshold": int(steps_to[o][reached].max()) if reached.any() else None,
            "median_w1_detour_where_w1_turns": float(np.median(detour[turned]))
            if turned.any() else 0.0,
            "median_turn_step_over_steps_to_threshold": float(np.median(
                info["first_turn"]["w1"][o][turned & reached] * size["record_every"]
                / np.maximum(steps_to[o][turned & reached], 1))) if (turned & reached).any()
            else None,
        }
    oracle = oracle_steps(w, size["oracle_steps"], size["record_every"])
    numbers["oracles"] = {"steps": size["oracle_steps"], **compare_oracles(w, oracle)}
    _write_steps_csv(os.path.join(out, "steps_to_threshold.csv"), w, steps_to, oracle,
                     size)
    numbers.update(finding(numbers))
    _oracle_figure(w, oracle, size["oracle_steps"], os.path.join(out, "oracles.png"))
    _seed_figure(runs, os.path.join(out, "seed_runs.png"))
    _grid_figure(res, w, info, steps_to, os.path.join(out, "grid.png"), size)
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """The verdict and finding, filled from the measured numbers: the seed's wrong-way turn
    of w1 and its answer's monotone loss are measured as fractions of starts; whether
    anticipating w2's sign pays is the sign oracle's median against SGD's."""
    sgd = numbers["per_optimizer"]["sgd"]
    o = numbers["oracles"]["oracle: w2's final sign known"]
    neg, every = o["starts with w2 < 0"], o["all starts"]
    up = numbers["oracles"]["oracle: w1 never decreases"]["starts with w2 < 0"]
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    steps = lambda v: f"{float(v):,.0f}"  # noqa: E731 - a median may be inf (stored "inf")
    wrong_way = sgd["fraction_w1_non_monotone"] > 0
    monotone = sgd["fraction_loss_non_monotone"] == 0
    pays = float(neg["oracle_median_steps"]) < float(neg["gd_median_steps"])
    verdict = ("refuted" if not (wrong_way and monotone) else "partly" if pays
               else "reproduced")
    return script.stated(verdict, (
        f"the paradox is real and harmless to the loss: with SGD w1 moves the wrong way first "
        f"in {pct(sgd['fraction_w1_non_monotone'])} of {numbers['starts']:,} starts, w2 in "
        f"{pct(sgd['fraction_w2_non_monotone'])}, and the loss rises in "
        f"{pct(sgd['fraction_loss_non_monotone'])}, as the answer says; median "
        f"{steps(sgd['median_steps_to_threshold'])} steps to loss {numbers['threshold']:g} "
        f"(momentum {steps(numbers['per_optimizer']['momentum']['median_steps_to_threshold'])}"
        f", Adam {steps(numbers['per_optimizer']['adam']['median_steps_to_threshold'])}). "
        + ("But anticipating w2's sign pays, against the answer's 'nothing is going wrong'"
           if pays else "Anticipating w2's sign does not pay")
        + f": over starts with w2 < 0 an oracle that puts w2's final sign into w1's step needs "
        f"a median {steps(neg['oracle_median_steps'])} steps against SGD's "
        f"{steps(neg['gd_median_steps'])} (w1 never decreasing: "
        f"{steps(up['oracle_median_steps'])}) and reaches the threshold from "
        f"{pct(neg['oracle_fraction_reaching'])} of them within "
        f"{numbers['oracles']['steps']:,} steps, SGD from {pct(neg['gd_fraction_reaching'])}; "
        f"over all starts {steps(every['oracle_median_steps'])} against "
        f"{steps(every['gd_median_steps'])}. The detour costs more than its length: lowering "
        f"w1 shrinks h = s(0.9 w1), and w2's gradient is proportional to h."))


def _write_steps_csv(path, w, steps_to, oracle, size):
    """Per start: steps to the threshold of every optimizer and oracle (-1: not reached)."""
    ww1, ww2 = np.meshgrid(w, w, indexing="ij")
    cols = [f"{name} [{size['steps']} steps]" for name in OPTIMIZERS] + [
        f"{name} [{size['oracle_steps']} steps]" for name in ORACLES]
    table = np.column_stack([ww1.ravel(), ww2.ravel()]
                            + [a.ravel() for a in steps_to] + [a.ravel() for a in oracle])
    np.savetxt(path, table, fmt=["%.9g", "%.9g"] + ["%d"] * len(cols), delimiter=",",
               header=",".join(["w1", "w2"] + cols), comments="")


def _oracle_figure(w, oracle, budget, path):
    fig, axes = script.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    w2 = np.broadcast_to(w[None, :], oracle.shape[1:])
    # not reached: drawn past the budget; already below at the start: drawn at 10
    gd = np.where(oracle[0] >= 0, np.maximum(oracle[0], 10), 1.15 * budget)
    for ax, (o, name) in zip(axes, list(enumerate(ORACLES))[1:]):
        s = np.where(oracle[o] >= 0, np.maximum(oracle[o], 10), 1.15 * budget)
        for mask, color, label in ((w2 >= 0, "#4c72b0", "start w2 >= 0"),
                                   (w2 < 0, "#c44e52", "start w2 < 0 (w1 detours)")):
            ax.plot(gd[mask], s[mask], ".", color=color, ms=4, label=label)
        ax.plot([1, 1.2 * budget], [1, 1.2 * budget], color="gray", lw=1, label="same steps")
        ax.axvline(budget, color="k", ls=":", lw=1)
        ax.axhline(budget, color="k", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlim=(8, 1.3 * budget), ylim=(8, 1.3 * budget),
               xlabel=f"SGD: steps to loss < {THRESHOLD:g} (past the dotted line: not in "
                      f"{budget})", ylabel=f"{name}: steps",
               title=f"{name} against SGD, every start (lr {LR:g})")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Does anticipating w2's sign help? Points below the diagonal: the oracle is "
                 "faster")
    fig.savefig(path, dpi=110)


def _seed_figure(runs, path):
    fig, axes = script.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for row, (w2, r) in enumerate(runs.items()):
        axes[row, 0].plot(r.steps, r.params["w1"], label="w1")
        axes[row, 0].plot(r.steps, r.params["w2"], label="w2")
        axes[row, 0].axhline(0, color="grey", lw=0.5)
        axes[row, 0].set(xlabel="iteration", ylabel="weight",
                         title=f"start (w1, w2) = (0.1, {w2:g}): weights")
        axes[row, 0].legend()
        axes[row, 1].semilogy(r.steps, r.loss)
        axes[row, 1].set(xlabel="iteration", ylabel="loss 0.5 (y - 0.9)^2",
                         title=f"start (0.1, {w2:g}): loss falls monotonically")
    fig.suptitle("Seed 000: y = s(w2 s(w1 x)), x = 0.9, target 0.9, SGD lr 0.1")
    fig.savefig(path, dpi=110)


def _grid_figure(res, w, info, steps_to, path, size):
    fig, axes = script.subplots(2, len(OPTIMIZERS), figsize=(5 * len(OPTIMIZERS), 9),
                             constrained_layout=True)
    ww1, ww2 = np.meshgrid(w, w, indexing="ij")
    surface = np.asarray(jit_fast(problems.seed000_loss)({"w1": ww1, "w2": ww2}))  # one program
    for o, name in enumerate(OPTIMIZERS):
        ax = axes[0, o]
        cs = ax.contourf(w, w, np.log10(surface.T + 1e-12), levels=20, cmap="Greys")
        nm = ~info["monotone"]["w1"][o]
        ax.contourf(w, w, nm.T.astype(float), levels=[0.5, 1.5], colors=["#e3b23c"], alpha=0.45)
        rng = np.random.default_rng(0)
        for i, j in rng.integers(0, len(w), size=(10, 2)):
            ax.plot(res.params["w1"][o, i, j], res.params["w2"][o, i, j], "-", lw=0.8,
                    color="#b03a2e")
            ax.plot(w[i], w[j], "o", ms=3, color="#b03a2e")
        ax.set(xlabel="w1", ylabel="w2", xlim=(w[0], w[-1]), ylim=(w[0], w[-1]),
               title=f"{name}: yellow = w1 non-monotone ({100 * nm.mean():.0f}%)")
        fig.colorbar(cs, ax=ax, label="log10 loss")
        ax = axes[1, o]
        # Starts already below the threshold (0 steps) are drawn at the scale's floor.
        steps = np.where(steps_to[o] >= 0, np.maximum(steps_to[o], 10), np.nan).astype(float)
        mesh = ax.pcolormesh(w, w, steps.T, shading="nearest", cmap="viridis",
                             norm=matplotlib.colors.LogNorm(vmin=10, vmax=size["steps"]))
        ax.set(xlabel="start w1", ylabel="start w2",
               title=f"{name}: steps to loss < {THRESHOLD:g}\n(white: not reached; "
                     "<= 10 incl. starts already below)")
        fig.colorbar(mesh, ax=ax, label="steps")
    fig.suptitle("Every start of the seed-000 net: trajectories on the loss surface (top), "
                 "speed (bottom), lr 0.1")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "paradox")
