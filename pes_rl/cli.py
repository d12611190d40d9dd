"""The ``pes-rl`` command: train, evaluate and plot from any directory.

    pes-rl train [group=option ...] [key=value ...]   # exactly python train.py ...
    pes-rl evaluate RUN_DIR [--episodes N] [--seed S] [--video out.mp4]
    pes-rl plot RUN_DIR [RUN_DIR ...] [--out curves.png]
    pes-rl lopt-eval RUN_DIR                          # a learned optimizer against tuned baselines

The configs ship inside the package, so ``pes-rl train`` needs no checkout; run dirs are made
under the current directory (``runs/...``), as with ``python train.py``.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from pes_rl import interrupts

# The pes-rl script imports this module before main() runs: a Ctrl-C from here on waits for
# main(), which stops in one line (python train.py installs the handler before importing it).
if __name__ == "__main__" or Path(sys.argv[0]).name.startswith("pes-rl"):
    interrupts.install(raising=False)

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pes_rl.training import config
from pes_rl.training.run_dir import (
    cli_run_dir,
    env_path,
    foreign_run,
    holds_results,
    path_part,
    remove_if_unused,
    unusable_reason,
)

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

COMMANDS = {  # name: (module whose main(argv) runs it, what it does)
    "evaluate": ("pes_rl.after.evaluate", "returns over N episodes of trained θ, and a video"),
    "plot": ("pes_rl.after.plot", "learning curves of runs and sweeps"),
    "lopt-eval": (
        "pes_rl.meta.lopt_eval",
        "a learned optimizer against tuned Adam, RMSProp and SGD+momentum",
    ),
}

# configs/train.yaml's run dirs: runs/gymnax/CartPole-v1/... for a family other than gym, and
# no colon for "module:Id" envs.
OmegaConf.register_new_resolver("path_part", path_part, replace=True)
OmegaConf.register_new_resolver("env_path", env_path, replace=True)


@hydra.main(config_path="pkg://pes_rl.configs", config_name="train", version_base="1.3")
def hydra_train(cfg: DictConfig) -> float | None:
    """One training run (or one job of a sweep); exits 2 with one line on a config error and
    130 on Ctrl-C."""
    import pes_rl

    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    run_dir = Path(cfg.run_dir)
    # Another program's run is refused by train() and left as it is; only a dir this run
    # could claim is cleaned up after a start that failed.
    ours = not foreign_run(run_dir)
    try:
        try:
            # Hydra has made the run dir: Ctrl-C raises again (one that came meanwhile, now).
            with interrupts.raising(True):
                return report(cfg, pes_rl.train(cfg))
        finally:  # a start that never finished an iteration leaves no run dir behind
            if ours:
                remove_if_unused(run_dir)
    except KeyboardInterrupt:  # during start-up, or agent=random_search (nothing to resume)
        if holds_results(run_dir):
            print(f"\nstopped; every finished iteration is in {run_dir}/metrics.jsonl",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"\n{interrupts.STOPPED_AT_START}", file=sys.stderr)
        sys.exit(130)
    except (ValueError, pes_rl.TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except pes_rl.TrainingInterrupted as stopped:
        resume = " ".join([*overrides, f"hydra.run.dir={stopped.run_dir}", "resume=true"])
        print(f"\n{stopped}\nresume with: {train_program()} {resume}", file=sys.stderr)
        sys.exit(130)


def report(cfg: DictConfig, result) -> float | None:
    """A finished run's last lines (what it trained, where the results are, how to evaluate
    them); returns its final eval return, the value of a Hydra sweep's job."""
    from pes_rl.stepping import distributed

    if Path(cfg.run_dir).resolve() != result.run_dir.resolve():
        remove_if_unused(Path(cfg.run_dir))  # another process's run dir was used: this one's
    if not distributed.is_primary():  # process 0 reports for a distributed run
        return None
    last = result.history[-1]
    print(
        f"done: {last['iteration']} iterations, {last['env_steps']:,} env steps, "
        f"eval_return {last.get('eval_return', float('nan')):.6g}\n"
        f"results in {cfg.run_dir} (metrics.jsonl, config.yaml, policy.npz, checkpoints/)\n"
        f"evaluate: pes-rl evaluate {cfg.run_dir}{video_hint(cfg)}"
    )
    return last.get("eval_return")


def program(command: str, fallback: str) -> str:
    """How the user started ``command``: ``pes-rl <command>`` through the ``pes-rl`` script,
    else ``fallback`` (``python train.py``, ``python -m pes_rl.after.evaluate``): argparse's
    prog."""
    return f"pes-rl {command}" if Path(sys.argv[0]).name.startswith("pes-rl") else fallback


def train_program() -> str:
    """How the user started training: ``python train.py`` or ``pes-rl train``."""
    return program("train", "python train.py")


def video_hint(cfg: DictConfig) -> str:
    """`` (add --video episode.mp4 to watch)`` where ``pes-rl evaluate --video`` can film the
    run's env (the rule ``evaluate`` refuses by), else nothing."""
    from pes_rl.after import render
    from pes_rl.training.components import env_id_of, make_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the env was built once already: its notices were seen
        refusal = render.can_render(make_env(cfg), env_id_of(cfg))
    return "" if refusal else " (add --video episode.mp4 to watch)"


def import_from_cwd() -> None:
    """Modules in the current directory import (``env.id=my_module:make_env``), as with
    ``python -m``; ``python train.py`` puts the script's directory first on ``sys.path`` and an
    installed console script none, so both add the current directory."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a usage error as one line (``error: ...``, exit 2), like every other
    error of the ``pes-rl`` commands; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def plain_warnings() -> None:
    """Warnings reach the user as one plain line each (``warning: ...``), without the Python
    source line they were raised from."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


class CommandLine(NamedTuple):
    """What ``python train.py <argv>`` asks Hydra for."""

    multirun: bool  # -m: a sweep
    groups: dict[str, list[str]]  # group -> its options on the command line (several: swept)
    values: list[Override]  # key=value overrides of config keys (hydra.* left out)


def parse_command_line(argv: list[str]) -> CommandLine | None:
    """``argv`` parsed as Hydra parses it; None where Hydra alone should judge it (help,
    another config, an override it cannot parse, a sweep such as ``glob(*)``)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        args, _ = parser.parse_known_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides)
        groups, values, names = {}, [], config.groups()
        for override in overrides:
            key = override.key_or_group
            if key in names and override.package is None:
                groups[key] = (
                    list(override.sweep_string_iterator())
                    if override.is_sweep_override()
                    else [override.get_value_element_as_str()]
                )
            elif key != "hydra" and not key.startswith("hydra."):
                values.append(override)
    except (argparse.ArgumentError, HydraException):
        return None
    others = (args.help, args.hydra_help, args.info, args.shell_completion, args.config_path,
              args.config_name, args.config_dir, args.experimental_rerun)  # fmt: skip
    return None if any(others) else CommandLine(args.multirun, groups, values)


def run_configs(line: CommandLine) -> list[DictConfig] | None:
    """The configs, before their key=value overrides, of the runs ``line`` starts: one for
    each agent and experiment option of a sweep (the other swept groups at their first
    option); None when one does not compose (Hydra then says why)."""
    from hydra.errors import HydraException

    first = {group: options[0] for group, options in line.groups.items()}
    configs = []
    for agent, experiment in itertools.product(
        line.groups.get("agent", [None]), line.groups.get("experiment", [None])
    ):
        chosen = first | {k: v for k, v in (("agent", agent), ("experiment", experiment)) if v}
        selections = [f"{group}={option}" for group, option in chosen.items()]
        try:
            configs.append(config.compose(selections))
        except HydraException:
            return None
    return configs


def unknown_key(line: CommandLine, configs: list[DictConfig]) -> str | None:
    """``unknown key agent.sigmaa; did you mean agent.sigma?``: the first key=value override
    whose key a run's config lacks (Hydra's own message says "To append to your config use
    +agent.sigmaa"), with the nearest key that exists; None when every key exists."""
    from hydra.core.override_parser.types import OverrideType

    for override in line.values:
        key = override.key_or_group
        lacking = [cfg for cfg in configs if not config.has_key(cfg, key)]
        if override.type is not OverrideType.CHANGE or not lacking:
            continue  # +key and ++key add keys, ~key deletes one
        near = config.nearest_key(lacking[0], key)
        message = f"unknown key {key}" + (f"; did you mean {near}?" if near else "")
        if config.in_open_mapping(key):
            return f"{message} (+{override.input_line} passes a setting the config does not list)"
        return message if near else f"{message} ({train_program()} --cfg job lists the keys)"
    return None


ENV_STEP_SCHEDULE = {"train.max_env_steps": "end", "train.eval_every_steps": "be evaluated"}


def schedule_note(line: CommandLine, configs: list[DictConfig]) -> str | None:
    """One line when a sweep compares estimators on an iteration schedule: their iterations
    take different env steps (ES and ARS run whole episodes), so without
    ``train.max_env_steps`` the runs end, and without ``train.eval_every_steps`` they are
    evaluated, at different env steps."""
    agents = list(dict.fromkeys(cfg.agent.name for cfg in configs))
    if not line.multirun or len(agents) < 2:
        return None

    def on_env_steps(key: str) -> bool:
        for override in line.values:
            if override.key_or_group == key:
                return override.is_sweep_override() or override.value() is not None
        return all(OmegaConf.select(cfg, key) is not None for cfg in configs)

    missing = [key for key in ENV_STEP_SCHEDULE if not on_env_steps(key)]
    if not missing:
        return None
    unequal = " and ".join(ENV_STEP_SCHEDULE[key] for key in missing)
    return (
        f"note: {' and '.join(agents)} can take different env steps per iteration (es, ars run "
        f"whole episodes), so this sweep's runs can {unequal} at different env steps; add "
        f"{' '.join(f'{key}=N' for key in missing)} to compare them at equal env steps"
    )


def train(argv: list[str]) -> None:
    """``python train.py`` / ``pes-rl train`` with Hydra overrides ``argv``; Ctrl-C at any
    moment stops it in one line with exit code 130."""
    with interrupts.stopped_in_one_line(interrupts.STOPPED_AT_START):
        plain_warnings()
        import_from_cwd()
        # Hydra creates hydra.run.dir before the run starts and fails on a bad one with a
        # traceback.
        run_dir = cli_run_dir(argv)
        problem = unusable_reason(run_dir) if run_dir else None
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
        line = parse_command_line(argv)
        configs = run_configs(line) if line else None
        if configs:
            typo = unknown_key(line, configs)
            if typo:  # before any note, hint or warning
                print(f"error: {typo}", file=sys.stderr)
                sys.exit(2)
            note = schedule_note(line, configs)
            if note:
                print(note, file=sys.stderr)
        sys.argv = [sys.argv[0], *argv]
        # Hydra makes the run dir: a Ctrl-C meanwhile waits for hydra_train, which removes it.
        with interrupts.raising(False):
            hydra_train()


def main(argv: list[str] | None = None) -> None:
    """``pes-rl <command> ...``; Ctrl-C stops any command in one line (exit code 130)."""
    with interrupts.stopped_in_one_line("stopped"):
        run_command(sys.argv[1:] if argv is None else argv)


def run_command(argv: list[str]) -> None:
    """``pes-rl <argv>``."""
    plain_warnings()
    import_from_cwd()
    if not argv or argv[0] in ("-h", "--help"):
        commands = "\n".join(
            [f"  {'train':<10} train θ (Hydra overrides, as python train.py)"]
            + [f"  {name:<10} {what}" for name, (_, what) in COMMANDS.items()]
        )
        print(
            f"usage: pes-rl <command> [args]\n\ncommands:\n{commands}\n\n"
            "pes-rl <command> --help shows a command's options (train: Hydra's groups and keys)"
        )
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "train":
        train(rest)
    elif command in COMMANDS:
        sys.argv = [f"pes-rl {command}", *rest]
        sys.exit(importlib.import_module(COMMANDS[command][0]).main(rest))
    else:
        print(f"error: unknown command {command!r}: use train, {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)


if __name__ == "__main__":  # python -m pes_rl.cli, where the pes-rl script is not on PATH
    main()
