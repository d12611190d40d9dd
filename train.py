"""Train with ES, TES, PES, NRES or hybrid from one command (the same as ``pes-rl train``).

    python train.py                                   # PES on Swimmer-v5 (the default run)
    python train.py agent=tes agent.sigma=0.05 train.iterations=500
    python train.py -m agent=pes,nres train.seed=0,1  # a sweep, one run dir each
    python train.py experiment=influence_balancing_pes logger=wandb

Every key of configs/train.yaml (and its groups) can be overridden on the command line.
Resume a stopped run with the same overrides plus ``hydra.run.dir=RUN_DIR resume=true``.
"""

import sys

from pes_rl.cli import train

if __name__ == "__main__":
    train(sys.argv[1:])
