"""The bpjax command line: a real sweep, its files, and its argument errors."""

import json

import numpy as np
import pytest

import bpjax
from bpjax import cli


def test_cli_sweep_writes_result_heatmap_and_true_summary(tmp_path, capsys):
    out = tmp_path / "xor"
    code = cli.main(["sweep", "--problem", "xor", "--net", "2,4,1", "--optimizer", "sgd,adam",
                     "--lr", "1e-2:1:4:log", "--init-scale", "0.5,1", "--seeds", "2",
                     "--steps", "200", "--out", str(out), "--no-progress"])
    assert code == 0
    res = bpjax.load(out / "result.npz")
    assert res.dims == ("optimizer", "lr", "init_scale", "seed")
    np.testing.assert_allclose(res.coords["lr"], np.geomspace(1e-2, 1, 4), rtol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    for name in ("sgd", "adam"):
        part = res.sel(optimizer=name)
        expect = np.mean((part.final_loss < 1e-2) & ~part.diverged)
        assert summary["optimizers"][name]["converged_fraction"] == pytest.approx(expect)
        median = np.median(part.final_loss, axis=-1)
        assert summary["optimizers"][name]["best_median_final_loss"] == pytest.approx(median.min())
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "adam" in capsys.readouterr().out


@pytest.mark.parametrize("text,values", [
    ("1e-3:1:4:log", [1e-3, 1e-2, 1e-1, 1.0]),
    ("0:1:3", [0.0, 0.5, 1.0]),
    ("0.1,0.5", [0.1, 0.5]),
    ("2", [2.0]),
])
def test_parse_range(text, values):
    np.testing.assert_allclose(cli.parse_range(text, "--lr"), values, rtol=1e-12)


@pytest.mark.parametrize("argv,message", [
    (["--lr", "1e-3:1:abc"], "--lr: malformed range '1e-3:1:abc'"),
    (["--lr", "0:1:4:log"], "log range needs START, STOP > 0"),
    (["--lr=-1,0.1"], "lr must be > 0"),
    (["--optimizer", "adamw"], "--optimizer: unknown"),
    (["--net", "3,4,1"], "needs 2 inputs and 1 outputs"),
    (["--steps", "100", "--record-every", "7"], "must divide"),
    (["--seeds", "0"], "--seeds: expected a positive integer"),
    (["--momentum", "0.9"], "--momentum needs --optimizer momentum"),
])
def test_cli_errors_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--steps", "10", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--steps", "10", "--out", str(blocker / "sub")])
    assert "is not a writable folder" in capsys.readouterr().err


def test_help_is_useful(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--init-scale" in text and "START:STOP:NUM" in text and "example" in text


@pytest.mark.parametrize("flag", ["--steps", "--seeds", "--optimizer", "--lr"])
def test_a_double_dash_value_is_refused_by_name(flag, capsys):
    """argparse (Python 3.11, 3.12) turns `--steps=--` into an empty list that no type
    check sees; the CLI refuses it as a usage error naming the option."""
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--steps", "2", "--no-progress", f"{flag}=--"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected a value, not '--'" in err and "Traceback" not in err
