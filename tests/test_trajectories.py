"""The per-weight tools against a plain Python reading of the same sequences."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bpjax import trajectories


def python_turns(w, atol=0.0):
    last, turns, first = 0, 0, -1
    for i in range(len(w) - 1):
        d = w[i + 1] - w[i]
        s = 0 if abs(d) <= atol else (1 if d > 0 else -1)
        if s and last and s != last:
            turns += 1
            first = i if first < 0 else first
        last = s or last
    return turns, first


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=12))
def test_turns_match_a_python_loop(values):
    w = np.cumsum(np.array(values, np.float32))
    turns, first = python_turns(w)
    assert int(trajectories.turning_points(w)) == turns
    assert int(trajectories.first_turn(w)) == first
    assert bool(trajectories.is_monotone(w)) == (turns == 0)


def test_analyze_over_a_grid():
    w = np.array([[[0.0, 1, 2, 3], [0.0, 1, 0.5, 2]], [[3.0, 2, 1, 0], [1.0, 1, 1, 1]]])
    loss = np.array([[[4.0, 3, 2, 1], [4.0, 0.5, 3, 0]], [[2.0, 2, 2, 2], [0.1, 0, 0, 0]]])
    out = trajectories.analyze({"w": w}, loss, threshold=1.5)
    assert out["monotone"]["w"].tolist() == [[True, False], [True, True]]
    assert out["turns"]["w"].tolist() == [[0, 2], [0, 0]]
    assert out["first_turn"]["w"].tolist() == [[-1, 1], [-1, -1]]
    assert out["first_below"].tolist() == [[3, 1], [-1, 0]]
