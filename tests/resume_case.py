"""One small sweep shared by the kill-and-resume test and its worker process."""

import sys

import numpy as np

import bpjax
from bpjax import initializers, losses, nets, problems

NET = nets.mlp([2, 8, 1], activation="tanh")
LOSS = losses.supervised(NET.apply, "mse")


def init(config, key):
    return NET.init(key, w_init=initializers.uniform(config["scale"]))


def run(out=None, **kw):
    grid = bpjax.Grid(lr=np.geomspace(0.01, 0.5, 8), scale=[0.5, 1.0, 2.0], seed=[0, 1])
    return bpjax.sweep(LOSS, init, ["sgd", "adam"], grid, 3000, record_every=30,
                       data=problems.xor(), chunk_size=16, segments=25, out=out,
                       checkpoint_seconds=0.0, progress=False, **kw)


def run_distributed(steps=600, **kw):
    """A grid of 45 (not a multiple of 2 processes), SGD and Adam, 600 steps."""
    grid = bpjax.Grid(lr=np.geomspace(0.01, 0.5, 5), scale=[0.5, 1.0, 2.0], seed=[0, 1, 2])
    return bpjax.sweep(LOSS, init, ["sgd", "adam"], grid, steps, record_every=30,
                       data=problems.xor(), target=0.01, chunk_size=8, progress=False, **kw)


if __name__ == "__main__":
    print("started", flush=True)
    run(sys.argv[1])
    print("finished", flush=True)

