"""bpjax: study backpropagation and its optimizers with compiled, vectorized sweeps."""

__version__ = "0.1.0"

from bpjax import compilation_cache, devices

devices.arrange()  # one JAX CPU device per core, before JAX initializes (see bpjax.devices)
compilation_cache.enable()  # compiled programs kept on disk for the next process

from bpjax import init, nets, optim, problems  # noqa: E402
from bpjax.grid import Grid, static  # noqa: E402
from bpjax.result import Result, load  # noqa: E402
from bpjax.sweep import Options, initial_params, sweep  # noqa: E402
from bpjax.train import Run, train  # noqa: E402

__all__ = ["Grid", "Options", "Result", "Run", "devices", "init", "initial_params", "load", "nets",
           "optim", "problems", "static", "sweep", "train"]
