"""bpjax: study backpropagation and its optimizers with compiled, vectorized sweeps."""

__version__ = "0.1.0"

from bpjax import devices

devices.arrange()  # one JAX CPU device per core, before JAX initializes (see bpjax.devices)

from bpjax import init, nets, optim, problems  # noqa: E402
from bpjax.grid import Grid  # noqa: E402
from bpjax.result import Result, load  # noqa: E402
from bpjax.sweep import initial_params, sweep  # noqa: E402
from bpjax.train import Run, train  # noqa: E402

__all__ = ["Grid", "Result", "Run", "devices", "init", "initial_params", "load", "nets", "optim",
           "problems", "sweep", "train"]
