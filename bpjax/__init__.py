"""bpjax: study backpropagation and its optimizers with compiled, vectorized sweeps."""

__version__ = "0.1.0"

from bpjax import compilation_cache, devices

devices.arrange()  # one JAX CPU device per core, before JAX initializes (see bpjax.devices)
compilation_cache.enable()  # compiled programs kept on disk for the next process
compilation_cache.unroll_threefry()  # random numbers compile faster on the CPU, same bits

from bpjax import initializers, metrics, nets, optim, problems  # noqa: E402
from bpjax.grid import Grid, static  # noqa: E402
from bpjax.recorders import Record  # noqa: E402
from bpjax.result import Result, load  # noqa: E402
from bpjax.sweep import Options, initial_params, sweep  # noqa: E402
from bpjax.train import Run, train  # noqa: E402

init = initializers  # the old name (it clashed with every ``init`` parameter)

__all__ = ["Grid", "Options", "Record", "Result", "Run", "devices", "initial_params",
           "initializers", "load", "metrics", "nets", "optim", "problems", "static", "sweep",
           "train"]
