"""One process of a 2-process sweep (jax.distributed, gloo collectives on CPU).

    python distributed_case.py PROCESS_ID NUM_PROCESSES PORT OUT.npz
"""

import os
import sys


def main(rank: int, procs: int, port: int, out: str) -> None:
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
    res = rc.run_distributed()
    np.savez(out, loss=res.loss, w=res.final_params["layers"][0]["w"],
             diverged_at=res.diverged_at, reached_at=res.reached_at,
             config_steps=res.meta["config_steps"], processes=res.meta["processes"])
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
