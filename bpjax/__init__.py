"""bpjax: study backpropagation and its optimizers with compiled, vectorized sweeps."""

__version__ = "0.1.0"

from bpjax import init, nets, optim, problems
from bpjax.grid import Grid
from bpjax.result import Result, load
from bpjax.sweep import initial_params, sweep
from bpjax.train import Run, train

__all__ = ["Grid", "Result", "Run", "init", "initial_params", "load", "nets", "optim", "problems",
           "sweep", "train"]
