"""One process of a 2-process sweep (jax.distributed, gloo collectives on CPU).

    python distributed_case.py PROCESS_ID NUM_PROCESSES PORT OUT.npz [FOLDER [STEPS]]

With FOLDER, the sweep runs again with out=FOLDER (OUT-out.npz), and once more
there (finished: loaded, OUT-again.npz). With STEPS, only a sweep of that many
steps with out=FOLDER runs, saving progress at every segment (to be killed).
"""

import os
import sys


def save(path, res) -> None:
    import numpy as np

    np.savez(path, loss=res.loss, w=res.final_params["layers"][0]["w"],
             diverged_at=res.diverged_at, reached_at=res.reached_at,
             config_steps=res.meta["config_steps"], processes=res.meta["processes"])


def main(rank: int, procs: int, port: int, out: str, folder: str | None = None,
         steps: str | None = None) -> None:
    # (all of this here, not at import: pytest imports this file to look for doctests)
    sys.path.insert(0, os.path.dirname(__file__))
    os.environ["BPJAX_CPU_DEVICES"] = "1"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=procs,
                               process_id=rank)
    import numpy as np
    import resume_case as rc

    assert jax.process_count() == procs and len(jax.local_devices()) == 1
    if steps:
        save(out, rc.run_distributed(int(steps), out=folder, checkpoint_seconds=0.0))
    else:
        save(out, rc.run_distributed())
    if folder and not steps:
        res = rc.run_distributed(out=folder)
        assert isinstance(res.loss, np.memmap)  # mapped from the folder's files
        save(out.replace(".npz", "-out.npz"), res)
        save(out.replace(".npz", "-again.npz"), rc.run_distributed(out=folder))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
