"""Train with ES, TES, PES, NRES or hybrid from one command.

    python train.py                                   # PES on Swimmer-v5 (the default run)
    python train.py agent=tes agent.sigma=0.05 train.iterations=500
    python train.py -m agent=pes,nres train.seed=0,1  # a sweep, one run dir each
    python train.py experiment=influence_balancing_pes logger=wandb

Every key of configs/train.yaml (and its groups) can be overridden on the command line.
Resume a stopped run with the same overrides plus ``hydra.run.dir=RUN_DIR resume=true``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import pes_rl
from pes_rl.run_dir import cli_run_dir, remove_if_unused, unusable_reason


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    logging.getLogger().setLevel(logging.WARNING)  # library INFO chatter (JAX, Brax, orbax)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    try:
        result = pes_rl.train(cfg)
    except ValueError as error:  # nothing was trained: leave no empty run dir behind
        remove_if_unused(Path(cfg.run_dir))
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except pes_rl.TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # agent=random_search: nothing to resume, nothing lost
        print(f"\nstopped; every finished iteration is in {cfg.run_dir}/metrics.jsonl",
              file=sys.stderr)  # fmt: skip
        sys.exit(130)
    except pes_rl.TrainingInterrupted as stopped:
        resume = " ".join([*overrides, f"hydra.run.dir={stopped.run_dir}", "resume=true"])
        print(f"\n{stopped}\nresume with: python train.py {resume}", file=sys.stderr)
        sys.exit(130)
    last = result.history[-1]
    print(
        f"done: {last['iteration']} iterations, {last['env_steps']:,} env steps, "
        f"eval_return {last.get('eval_return', float('nan')):.6g}\n"
        f"results in {cfg.run_dir} (metrics.jsonl, config.yaml, checkpoints/)"
    )
    return last.get("eval_return")


if __name__ == "__main__":
    # Hydra creates hydra.run.dir before main() runs and fails on a bad one with a traceback.
    run_dir = cli_run_dir(sys.argv[1:])
    problem = unusable_reason(run_dir) if run_dir else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
