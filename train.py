"""Train with ES, TES, PES, NRES or hybrid from one command (the same as ``pes-rl train``).

    python train.py                                   # PES on Swimmer-v5 (the default run)
    python train.py agent=tes agent.sigma=0.05 train.iterations=500
    python train.py -m agent=pes,nres train.seed=0,1  # a sweep, one run dir each
    python train.py experiment=influence_balancing_pes logger=wandb

Every key of configs/train.yaml (and its groups) can be overridden on the command line.
Resume a stopped run with the same overrides plus ``hydra.run.dir=RUN_DIR resume=true``.
"""

import sys

from pes_rl import interrupts

if __name__ == "__main__":
    # Ctrl-C is ours before the heavy imports (Hydra, then JAX in the run): one line, exit 130.
    with interrupts.stopped_in_one_line(interrupts.STOPPED_AT_START):
        from pes_rl.cli import train

        train(sys.argv[1:])
