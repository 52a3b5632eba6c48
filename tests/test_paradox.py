"""Seed 000: the turn of w1, against the sign of w2, and the sweep's numbers."""

import os
import sys

import numpy as np

from bpjax import trajectories
from experiments import paradox

sys.path.insert(0, os.path.dirname(__file__))
from test_seed000 import numpy_gd  # noqa: E402


def test_w1_turns_exactly_when_w2_changes_sign():
    runs = paradox.seed_runs(400)
    r = runs[-0.5]
    w1, w2 = r.params["w1"], r.params["w2"]
    # Analytic: while y < 0.9 the step of w1 has the sign of w2.
    moves = np.sign(np.diff(w1))
    assert np.all(moves[w2[:-1] < 0] < 0) and np.all(moves[w2[:-1] > 0] > 0)
    _, w2_numpy, _ = numpy_gd(0.1, -0.5, 400)  # the hand-written NumPy loop
    first_positive = int(np.argmax(w2_numpy > 0))
    assert int(trajectories.first_turn(w1)) == first_positive == int(np.argmax(w2 > 0))
    assert np.all(np.diff(r.loss) <= 0)  # the output approaches the target monotonically
    assert trajectories.is_monotone(runs[0.1].params["w1"])


def test_sweep_numbers(tmp_path):
    numbers = paradox.run(str(tmp_path), quick=True)
    sgd = numbers["per_optimizer"]["sgd"]
    # In SGD only w1 can turn (w2's step has the sign of 0.9 - y), and the loss never rises.
    assert sgd["fraction_w2_non_monotone"] == 0
    assert sgd["fraction_loss_non_monotone"] == 0
    assert 0.2 < sgd["fraction_w1_non_monotone"] <= 0.5  # w2 < 0 is half the grid
    turn = numbers["seed_runs"]["w2=-0.5"]
    assert turn["w1_first_turn_step"] == turn["w2_first_positive_step"]
    assert (tmp_path / "grid.png").exists() and (tmp_path / "seed_runs.png").exists()
