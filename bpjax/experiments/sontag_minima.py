"""Local minima of a single tanh neuron (seed 001, Sontag section 2, n = 2, m = 1).

E(x) = (tanh(x) - 1)^2 + (tanh(a x) - 1)^2: the line through (1, a), target e = (1, 1).
For a > 0 (his case 2) E decreases to 0 as x -> +inf: no finite minimum. For a < 0
(case 3) E -> 4 at both ends. For large x, with u = exp(-2x),
E ~ 4 + 4u^2 - 8u^|a|: if |a| > 2 it approaches 4 from above, so there is a finite
local maximum, a finite minimum left of it (E < 2), and a second "minimum" at
+infinity; for |a| <= 2 there is only the finite minimum. So a = -2 is exactly
where the second minimum appears (Sontag says "large a").

Both critical points are found by bisection on E' = jax.grad(E), vmapped over a;
then one sweep of gradient descent over (a, x0) shows which starts reach the
finite minimum and which drift to +infinity, and the basin boundary it draws is
compared with the root-found maximum.

Sontag's cases 1 and 2 ("no other local minima") are checked, not only plotted: case 1,
the line through (0, 1), has E(x) = 1 + (tanh(x) - 1)^2, which is case 2's E at a = 0 with
the coordinates swapped, so both are E for a >= 0. There E' = 2 (tanh x - 1) tanh'(x)
+ 2 a (tanh(a x) - 1) tanh'(a x) < 0 (his formula squares the second (tanh(a x) - 1), a
typo): the first term is negative, the second nonpositive. ``critical_point_count`` counts
the sign changes of E' = jax.grad(E) on a fine float64 grid of [-15, 15] (beyond ~19,
1 - tanh(x) rounds to 0 and E' is exactly 0) for a from 0 to 10, and the same count on
case 3's values of a, which must find its two critical points, shows that it can see them.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

import bpjax
from bpjax.compilation_cache import jit_fast
from bpjax.experiments import script
from bpjax.problems import sontag_loss

SEED = "001"  # the seed document it answers (../shared/seeds/)
QUESTION = ("Where are the local minima of a single tanh neuron on Sontag's two-point problem, "
            "and which gradient-descent starts end in each? (seed 001)")
SIZES = {"default": dict(n_a=48, n_x=240, steps=4000, n_fine=300_001),
         "quick": dict(n_a=12, n_x=60, steps=1500, n_fine=30_001)}
A_RANGE = (-10.0, -2.5)
X_RANGE = (-1.0, 3.0)
CASE_2_A = (0.0, 10.0)  # a >= 0 (case 1 is a = 0), up to case 3's largest |a|
FINE_X = (-15.0, 15.0)
LR = 0.01


def bisect(f, lo, hi, iters: int = 60):
    """A root of f in [lo, hi], given f(lo) and f(hi) of opposite signs."""
    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        same = jnp.sign(f(mid)) == jnp.sign(f(lo))
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)
    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


@jit_fast
def critical_points(a):
    """(x_min, x_max) of E for each a < -2: E' < 0 at -3, > 0 at 0, and < 0 at large x."""
    def one(a):
        d = lambda x: jax.grad(sontag_loss)(x, a)  # noqa: E731
        x_min = bisect(d, -3.0, 0.0)
        # E' > 0 just right of 0 and < 0 beyond the maximum: scan for the first x with E' < 0.
        xs = jnp.linspace(0.0, 8.0, 4001)
        after = xs[jnp.argmax((jax.vmap(d)(xs) < 0) & (xs > 0))]
        x_max = bisect(d, 0.0, after)
        return x_min, x_max
    return jax.vmap(one)(a)


def critical_point_count(a, n: int):
    """Per a: the sign changes of E' = jax.grad(E) over n points of FINE_X, and the largest
    E' there, in float64."""
    with jax.enable_x64(True):
        changes, largest = _sign_changes(jnp.asarray(a, jnp.float64), n)
        return np.asarray(changes), np.asarray(largest)


# One program, not one per jnp op: run() calls it for two a's of the same shape.
@jit_fast(static_argnums=1)
def _sign_changes(a, n: int):
    xs = jnp.linspace(*FINE_X, n, dtype=jnp.float64)
    d = jax.vmap(lambda av: jax.vmap(jax.grad(sontag_loss), (0, None))(xs, av))(a)  # (a, x)
    return jnp.sum(jnp.sign(d[:, :-1]) != jnp.sign(d[:, 1:]), axis=1), d.max(axis=1)


# E at the critical points, one program for both (eager, each jnp op compiles its own).
_energy = jit_fast(sontag_loss)


def run(out: str, quick: bool = False) -> dict:
    size = SIZES["quick" if quick else "default"]
    a = np.linspace(*A_RANGE, size["n_a"])
    x0 = np.linspace(*X_RANGE, size["n_x"])
    x_min, x_max = (np.asarray(v) for v in critical_points(np.float32(a)))

    def loss(params, config):
        return sontag_loss(params["x"], config["a"])

    res = bpjax.sweep(loss, lambda c, k: {"x": c["x0"]}, "sgd",
                      bpjax.Grid(a=a, x0=x0, lr=[LR]), size["steps"],
                      record_every=size["steps"], record_params=False).sel(lr=LR)
    x_t = res.final_params["x"]
    arrived = np.abs(x_t - x_min[:, None]) < 0.01
    # Heading for the finite minimum: arrived, or moving left (E' > 0 only on (x_min, x_max));
    # a start just left of the maximum is in the basin but leaves its flat top slowly.
    to_min = arrived | (x_t < x0[None, :])
    # The sweep's boundary: the first start on each a's row that does not reach the minimum.
    first_out = np.argmax(~to_min, axis=1)
    boundary = x0[first_out]
    dx = x0[1] - x0[0]
    e_min = np.asarray(_energy(x_min, np.float32(a)))
    e_max = np.asarray(_energy(x_max, np.float32(a)))
    a_case_2 = np.linspace(*CASE_2_A, size["n_a"])
    changes, largest = critical_point_count(a_case_2, size["n_fine"])
    changes_3, _ = critical_point_count(a, size["n_fine"])
    numbers = {
        "a": a, "x_min": x_min, "x_max": x_max, "E_at_min": e_min, "E_at_max": e_max,
        "E_at_infinity": 4.0,
        "second_minimum_exists_iff_a_below": -2.0,
        "grid_spacing_x0": float(dx),
        "boundary_minus_x_max_in_cells": (boundary - x_max) / dx,
        "rows_within_one_cell": float(np.mean(np.abs(boundary - x_max) <= dx)),
        "fraction_of_starts_to_finite_minimum": float(to_min.mean()),
        "fraction_of_those_arrived_within_the_steps": float(arrived.sum() / to_min.sum()),
        "gd_runs": int(to_min.size), "lr": LR, "steps": size["steps"],
        "cases_1_and_2": {
            "a": a_case_2, "x_range": list(FINE_X), "grid_points": size["n_fine"],
            "critical_points_found": int(changes.sum()),
            "largest_dE_over_the_grid": float(largest.max()),
            "critical_points_per_a_in_case_3_same_count": changes_3,
        },
    }
    numbers.update(finding(numbers))
    _figures(a, x0, x_min, x_max, to_min, out)
    return script.save_summary(out, numbers)


def finding(numbers: dict) -> dict:
    """Reproduced when every a in the range has a finite maximum above E(+inf) = 4 (so a
    second minimum at +infinity), gradient descent's basin boundary agrees with it, and
    E' < 0 with no sign change on the fine grid for every a >= 0 (cases 1 and 2)."""
    a, e_min, e_max = (np.asarray(numbers[k], float) for k in ("a", "E_at_min", "E_at_max"))
    second = bool(np.all(e_max > numbers["E_at_infinity"]) and np.all(e_min < e_max))
    basins = numbers["rows_within_one_cell"] == 1.0
    c12 = numbers["cases_1_and_2"]
    a12 = np.asarray(c12["a"], float)
    none = c12["critical_points_found"] == 0 and c12["largest_dE_over_the_grid"] < 0
    seen = np.asarray(c12["critical_points_per_a_in_case_3_same_count"])
    verdict = ("reproduced" if second and basins and none else "partly" if second or none
               else "refuted")
    return script.stated(verdict, (
        f"for every a from {a.max():g} to {a.min():g} ({a.size} lines through (1, a)) E has a "
        f"finite local maximum, E = {e_max.min():.4g} to {e_max.max():.4g} > "
        f"{numbers['E_at_infinity']:g} = E(+infinity), with the finite minimum left of it "
        f"(E = {e_min.min():.3g} to {e_min.max():.3g}) and a second minimum at +infinity "
        f"right of it: Sontag's 'large a'. Analytically (E ~ 4 + 4u^2 - 8u^|a|, u = e^(-2x)) "
        f"the second minimum exists exactly when a < "
        f"{numbers['second_minimum_exists_iff_a_below']:g}. Over {numbers['gd_runs']:,} "
        f"gradient-descent runs (lr {numbers['lr']:g}, {numbers['steps']:,} steps) the basin "
        f"boundary lies within one grid cell ({numbers['grid_spacing_x0']:.3g}) of the "
        f"root-found maximum for {100 * numbers['rows_within_one_cell']:.0f}% of the values "
        f"of a; {100 * numbers['fraction_of_starts_to_finite_minimum']:.0f}% of the starts "
        "head for the finite minimum. Cases 1 and 2 (a >= 0; case 1 is a = 0 with the "
        f"coordinates swapped): for {a12.size} values of a from {a12.min():g} to "
        f"{a12.max():g}, on {c12['grid_points']:,} points of x in "
        f"[{c12['x_range'][0]:g}, {c12['x_range'][1]:g}] in float64, E' changes sign "
        f"{c12['critical_points_found']} times and is at most "
        f"{c12['largest_dE_over_the_grid']:.1e}" + (
            ": no finite critical point, so no local minimum besides the one at +infinity "
            "(distance 0, or 1 at a = 0), as Sontag says" if none else
            ": a finite critical point exists, against Sontag's 'no other local minima'")
        + "; the same count finds " + (f"exactly {seen.min()}" if seen.min() == seen.max()
                                       else f"{seen.min()} to {seen.max()}")
        + " critical points for each case-3 a."))


def _figures(a, x0, x_min, x_max, to_min, out):
    xs = np.linspace(-3, 4, 800)
    fig, axes = script.subplots(2, 2, figsize=(11, 9), constrained_layout=True)
    for col, av in enumerate((2.0, -5.0)):
        e = np.asarray(_energy(np.float32(xs), np.float32(av)))
        axes[0, col].plot(xs, e)
        axes[0, col].axhline(4.0 if av < 0 else 0.0, color="grey", ls=":", lw=1,
                             label="E at +infinity")
        axes[0, col].set(xlabel="x", ylabel="E(x)", title=f"Fig. {col + 1}: E(x), line through "
                         f"(1, {av:g}) (case {2 if av > 0 else 3})")
        axes[0, col].legend()
        t = np.linspace(-8, 8, 2000)
        axes[1, col].plot(np.tanh(t), np.tanh(av * t), label="T(line)")
        axes[1, col].plot([1], [1], "r*", ms=14, label="target e = (1, 1)")
        axes[1, col].set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
                         xlabel="tanh(x)", ylabel=f"tanh({av:g} x)",
                         title=f"Fig. {col + 3}: image of the line in the square")
        axes[1, col].legend(loc="lower right" if av > 0 else "lower left")
    fig.suptitle("Sontag's figures 1-4, theta = tanh")
    fig.savefig(os.path.join(out, "figures_1_to_4.png"), dpi=110)

    fig, ax = script.subplots(figsize=(8, 5.5), constrained_layout=True)
    mesh = ax.pcolormesh(x0, a, to_min.astype(float), cmap="coolwarm_r", vmin=0, vmax=1,
                         shading="nearest")
    ax.plot(x_max, a, "k-", lw=2, label="local maximum (bisection on E')")
    ax.plot(x_min, a, "w--", lw=2, label="finite minimum (bisection on E')")
    ax.set(xlabel="start x0", ylabel="a (line through (1, a))",
           title=f"Gradient descent (lr {LR}) from every (a, x0): blue reaches the finite "
                 "minimum,\nred drifts to the minimum at +infinity")
    ax.legend(loc="lower right")
    cbar = fig.colorbar(mesh, ax=ax, ticks=[0, 1])
    cbar.set_ticklabels(["to +infinity", "finite min"])
    fig.savefig(os.path.join(out, "basins.png"), dpi=110)


if __name__ == "__main__":
    script.main(run, __doc__, "sontag_minima")
