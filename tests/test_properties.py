"""Random malformed input: every case gets a clean error naming it, or a correct run."""

import argparse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpjax
from bpjax import cli, problems

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-3, 3),
    st.sampled_from([0.0, -0.1, 0.05, 0.2, 1e-30, 1e30]),
)
axis = st.one_of(
    st.lists(number, min_size=0, max_size=3),
    st.lists(st.lists(number, max_size=2), max_size=2),
    st.text(max_size=3),
    st.none(),
    st.lists(st.sampled_from(["a", None, True]), max_size=2),
)
names = st.sampled_from(["lr", "x0", "momentum", "seed", "step", "1bad", "eps"])


def quartic_numpy(lr, x0, steps):
    """GD on x^4 in float32; returns (final loss, diverged)."""
    x = np.float32(x0)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            new = np.float32(x - np.float32(lr) * np.float32(4) * x**3)
            if not (np.isfinite(new) and np.isfinite(new**4) and np.isfinite(4 * new**3)):
                return x**4, True
            x = new
    return x**4, False


valid = st.lists(st.sampled_from([0.01, 0.05, 0.2, 0.5, 1.0, 1.5, 3.0]), min_size=1, max_size=3)
grids = st.builds(  # a valid grid, then up to two random (often broken) changes
    lambda lr, x0, changes, drop: {k: v for k, v in {"lr": lr, "x0": x0, **changes}.items()
                                   if k != drop},
    valid, valid, st.dictionaries(names, axis, max_size=2),
    st.sampled_from([None, None, None, "lr", "x0"]))


@SETTINGS
@given(axes=st.one_of(grids, st.dictionaries(names, axis, min_size=0, max_size=3)),
       steps=st.one_of(st.integers(1, 6), st.integers(-2, 6), st.floats(0, 5), st.none()),
       record_every=st.sampled_from([1, 2, 3, 0, -1, 1.5]),
       optimizer=st.sampled_from(["sgd", "sgd", "momentum", "adam", "bogus", 3, None, ["sgd"]]))
def test_api_random_grids(axes, steps, record_every, optimizer):
    try:
        res = bpjax.sweep(problems.quartic, lambda c, k: {"x": c["x0"]}, optimizer, axes, steps,
                          record_every=record_every)
    except (ValueError, TypeError, KeyError) as e:
        assert str(e)  # a message, from bpjax's own checks
        return
    # A run happened: it must be right. Check plain SGD exactly against NumPy.
    assert np.all(np.isfinite(res.final_loss))
    if optimizer == "sgd" and set(axes) == {"lr", "x0"}:
        for i, lr in enumerate(res.coords["lr"]):
            for j, x0 in enumerate(res.coords["x0"]):
                final, diverged = quartic_numpy(lr, x0, steps)
                assert res.diverged[i, j] == diverged
                np.testing.assert_allclose(res.final_loss[i, j], final, rtol=1e-5, atol=1e-30)


range_text = st.one_of(
    st.text(alphabet="0123456789.:,-elogabcx ", max_size=14),
    st.builds(lambda a, b, n, log: f"{a}:{b}:{n}" + (":log" if log else ""),
              st.sampled_from(["1e-3", "0", "-1", "abc", "0.1", ""]),
              st.sampled_from(["1", "1e400", "0.5", "x"]),
              st.sampled_from(["1", "2", "0", "-3", "abc", "1.5"]), st.booleans()),
)


@SETTINGS
@given(text=range_text)
def test_parse_range_random_text(text):
    try:
        values = cli.parse_range(text, "--lr")
    except argparse.ArgumentTypeError as e:
        assert "--lr" in str(e)
        return
    assert values.ndim == 1 and values.size >= 1 and np.all(np.isfinite(values))


@SETTINGS
@given(flag=st.sampled_from(["--lr", "--init-scale", "--seeds", "--steps", "--net",
                             "--momentum", "--optimizer", "--record-every", "--batch-size"]),
       text=range_text)
def test_cli_random_arguments(flag, text, capsys):
    argv = ["sweep", "--steps", "2", "--lr", "0.1", "--no-progress", f"{flag}={text}"]
    capsys.readouterr()  # the fixture is shared by all examples: start clean
    try:
        code = cli.main(argv)
    except SystemExit as e:
        assert e.code == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
        return
    assert code == 0
    assert "runs in" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["1e-3:1:abc", "1:2", "::", "1e-3:1:4:cubic", "a,b", ""])
def test_known_malformed_ranges(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--lr"):
        cli.parse_range(text, "--lr")
