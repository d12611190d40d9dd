"""Compare runs: return vs. env steps, one curve per label, mean ± std over seeds.

    python -m pes_rl.after.plot runs/sweeps/<time>/*/ -o compare.png [--budgets 400000 1600000]
    python -m pes_rl.after.plot runs/h29/*/ --metric eval_val_loss --best --budgets 50000 100000

Each RUN_DIR holds the ``metrics.jsonl`` (or an archived ``metrics.jsonl.gz``) and
``config.yaml`` that ``python train.py`` writes.
Runs whose configs differ only in ``train.seed`` share a label and are drawn as a mean curve
with a ±1 std band; runs that differ in other settings get labels that name them.
"""

from __future__ import annotations

import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pes_rl.cli import ArgumentParser, program
from pes_rl.training.config import dotted
from pes_rl.training.run_dir import env_name, foreign_run, has_metrics, metrics_file
from pes_rl.training.run_log import read_records

PANELS = (
    ("eval_return", "eval return (θ unperturbed)"),
    ("train_return", "train return (episodes completed in windows)"),
)


def label_of(run_dir: Path) -> str:
    """Agent and the settings that distinguish ES-family runs."""
    return config_label(OmegaConf.load(run_dir / "config.yaml"))


def config_label(cfg: DictConfig) -> str:
    """:func:`label_of` for a loaded run config."""
    agent, env = cfg.agent, env_name(cfg.env.get("family"), cfg.env.id)
    if agent.get("sigma") is None:  # a search strategy: no perturbation, points per iteration
        name = agent.name.upper().replace("_", " ")
        return f"{name} {env} {agent.num_particles} points/iteration"
    unroll = agent.unroll_length if agent.unroll_length is not None else "T"
    if agent.get("curriculum"):
        unroll = f"{agent.curriculum.start}→{unroll}"
    label = f"{agent.name.upper()} {env} K={unroll} σ={agent.sigma} N={agent.num_particles}"
    if agent.get("top_directions"):
        label += f" b={agent.top_directions}"
    return label


# Keys that differ between seeds of one setting, or that do not change what a run computes.
NOT_SETTINGS = ("train.seed", "run_dir", "resume", "train.progress", "train.iterations",
                "train.checkpoint_every", "train.keep_checkpoints", "train.devices")  # fmt: skip


# Settings label_of already shows.
IN_LABEL = ("env.family", "env.id", "agent.name", "agent.unroll_length", "agent.sigma",
            "agent.num_particles", "agent.top_directions", "agent.curriculum")  # fmt: skip


def group_runs(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Runs by label: runs whose configs differ only in ``train.seed`` (and bookkeeping keys)
    share one; where runs of one agent on one env differ in settings :func:`label_of` does
    not show (a sweep over ``optimizer.lr``), every label of them names those (``lr=0.5``)."""
    settings, kinds = {}, defaultdict(list)
    labels = {}
    for run_dir in run_dirs:
        cfg = OmegaConf.load(run_dir / "config.yaml")
        labels[run_dir] = config_label(cfg)
        config = dotted(OmegaConf.to_container(cfg))
        settings[run_dir] = {
            k: v for k, v in config.items()
            if k not in NOT_SETTINGS and not k.startswith(IN_LABEL)
        }  # fmt: skip
        kinds[(config.get("env.family"), config.get("env.id"), config.get("agent.name"))].append(
            run_dir
        )
    groups: dict[str, list[Path]] = defaultdict(list)
    for dirs in kinds.values():
        keys = sorted({k for d in dirs for k in settings[d]})
        differing = [k for k in keys if len({repr(settings[d].get(k)) for d in dirs}) > 1]
        for run_dir in dirs:
            named = " ".join(f"{k.split('.')[-1]}={settings[run_dir].get(k)}" for k in differing)
            label = labels[run_dir]
            groups[f"{label} {named}" if named else label].append(run_dir)
    return groups


def skip_reason(run_dir: Path) -> str | None:
    """Why ``run_dir`` is not plotted: it lacks a run's config.yaml or a metrics record (a
    failed start, a run still starting, a dir of other files), or it holds another program's
    run under those names; None for a run to plot."""
    if not (run_dir / "config.yaml").exists() or not has_metrics(run_dir):
        return "it holds no run (no config.yaml, or no metrics record)"
    other_run = foreign_run(run_dir)
    return f"not a pes_rl run ({other_run})" if other_run else None


def lower_is_better(key: str) -> bool:
    """Loss metrics improve downward; returns and accuracies upward."""
    return key.endswith("loss")


X_AXES = {"env_steps": "env steps", "iteration": "outer iterations"}
# Built-in meta tasks: one env step is one step of an inner training run.
META_TASKS = ("lr_toy2d", "lr_schedule", "hparams29", "learned_optimizer")


def x_label(x: str, run_dirs: list[Path]) -> str:
    """The x axis's label: env steps of RL runs are "env steps", of meta tasks "inner steps"."""
    if x != "env_steps":
        return X_AXES[x]
    meta = set()
    for run_dir in run_dirs:
        env = OmegaConf.load(run_dir / "config.yaml").env
        meta.add(env.get("family") is None and env.id in META_TASKS)
    if meta == {True}:
        return "inner steps"
    return X_AXES[x] if meta == {False} else "env steps (meta tasks: inner steps)"


def load_curve(
    run_dir: Path, key: str, best: bool = False, x: str = "env_steps"
) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of ``key``, x = env steps or iterations; ``best``: the best value so far at
    each point (the minimum for ``*loss`` metrics, else the maximum)."""
    steps, values = [], []
    for record in read_records(metrics_file(run_dir)):
        if key in record:
            steps.append(record[x])
            values.append(record[key])
    values = np.asarray(values, float)
    if best and len(values):
        values = (np.minimum if lower_is_better(key) else np.maximum).accumulate(values)
    return np.asarray(steps, float), values


def plot_runs(
    run_dirs: list[Path],
    output: Path,
    panels: tuple[tuple[str, str], ...] = PANELS,
    best: bool = False,
    x_axes: tuple[str, ...] = ("env_steps",),
    log_y: bool = False,
    negate: bool = False,
) -> dict[str, int]:
    """Draws every panel against every x axis for ``run_dirs`` into ``output``; returns runs
    per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(run_dirs)
    # One color per label in every panel, whether or not a run logged that panel's metric.
    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(groups))}
    grid_panels = [(key, title, x) for key, title in panels for x in x_axes]
    x_labels = {x: x_label(x, run_dirs) for x in x_axes}
    fig, axes = plt.subplots(
        1, len(grid_panels), figsize=(6 * len(grid_panels), 4.5), squeeze=False
    )
    for ax, (key, title, x) in zip(axes[0], grid_panels, strict=True):
        for label, dirs in sorted(groups.items()):
            curves = [c for c in (load_curve(d, key, best, x) for d in dirs) if len(c[0])]
            if negate:  # a meta task's return is minus its summed loss: plot the loss
                curves = [(steps, -values) for steps, values in curves]
            if not curves:
                continue
            # Seeds are put on a common env-step grid before averaging.
            end = min(c[0][-1] for c in curves)
            grid = np.linspace(max(c[0][0] for c in curves), end, 200)
            values = np.stack([np.interp(grid, s, v) for s, v in curves])
            mean, std = values.mean(0), values.std(0)
            seeds = f" ({len(curves)} seeds)" if len(curves) > 1 else ""
            single = grid[0] == grid[-1]  # one evaluation: a dot, not an invisible line
            (line,) = ax.plot(
                grid, mean, label=label + seeds, marker="o" if single else None,
                color=colors[label],
            )  # fmt: skip
            if len(curves) > 1:
                ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(x_labels[x])
        if log_y:
            ax.set_yscale("log")
        title = f"−{title}" if negate else title
        ax.set_title(f"best {title} so far" if best else title)
        ax.grid(alpha=0.3)
        if ax.lines:  # long labels (runs that differ in several settings) wrap to the panel
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles, [textwrap.fill(label, 60) for label in labels], fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {key} in these runs", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return {label: len(dirs) for label, dirs in groups.items()}


def record_steps(run_dir: Path) -> np.ndarray:
    """The env steps of every record of a run, in order."""
    return np.asarray([r["env_steps"] for r in read_records(metrics_file(run_dir))], float)


def final_env_steps(run_dir: Path) -> float:
    """The env steps a run trained for: its last record's, or its ``train.max_env_steps``
    where it reached that budget (its last iteration passes the budget by less than one)."""
    steps = record_steps(run_dir)
    budget = OmegaConf.load(run_dir / "config.yaml").train.get("max_env_steps")
    end = steps[-1] if len(steps) else 0.0
    return min(end, budget) if budget is not None else end


def unequal_budgets(run_dirs: list[Path], tolerance: float = 0.05) -> str | None:
    """One line when the runs end at env steps more than ``tolerance`` apart (ES against PES
    on an iteration schedule): what each label trained for, and how to compare fairly."""
    groups = group_runs(run_dirs)
    ends = {label: [final_env_steps(d) for d in dirs] for label, dirs in groups.items()}
    every = [end for label_ends in ends.values() for end in label_ends]
    if max(every) <= (1 + tolerance) * min(every):
        return None

    def span(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:,.0f}" if low == high else f"{low:,.0f}-{high:,.0f}"

    trained = "; ".join(f"{label}: {span(v)}" for label, v in sorted(ends.items()))
    return (
        f"warning: these runs end at different env steps ({trained}); train them with one "
        "train.max_env_steps and train.eval_every_steps to compare them at equal env steps"
    )


def value_at(steps: np.ndarray, curve: tuple[np.ndarray, np.ndarray], budget: float):
    """A run's value at ``budget`` env steps: its last evaluation up to the first iteration
    that reached the budget (the one ``train.eval_every_steps`` and ``train.max_env_steps``
    evaluate); None for a run that never reached it. ``steps``: every record's env steps."""
    reached = steps[steps >= budget]
    if not len(reached):
        return None
    evaluated_steps, values = curve
    before = evaluated_steps <= reached[0]
    return values[before][-1] if np.any(before) else None


def budget_table(
    run_dirs: list[Path], budgets: list[float], key: str = "eval_return", best: bool = False,
    threshold: float | None = None,
) -> str:  # fmt: skip
    """A markdown table: mean ± std of ``key`` for each label at each env-step budget.

    Runs are read at equal env steps: a run's value at a budget is its evaluation at the first
    iteration that reached that many env steps, or the last one before it (with ``best``: the
    best so far); a run that never reached the budget has none (the cell says how many seeds
    did when not all). With ``threshold``, two more columns: the median over seeds of the env
    steps at which ``key`` first reached it (and how many seeds did), and the runs' mean
    wall-clock minutes.
    """
    groups = group_runs(run_dirs)
    extra = [] if threshold is None else [f"env steps to {threshold:g}", "minutes"]
    titles = [f"{b:,.0f} steps" for b in budgets] + extra
    lines = ["| run | seeds | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]
    for label, dirs in sorted(groups.items()):
        curves = [load_curve(d, key, best) for d in dirs]
        steps = [record_steps(d) for d in dirs]
        cells = []
        for budget in budgets:
            at = [value_at(s, curve, budget) for s, curve in zip(steps, curves, strict=True)]
            values = [v for v in at if v is not None]
            seeds = "" if len(values) == len(dirs) else f" ({len(values)}/{len(dirs)} seeds)"
            cells.append(
                f"{_digits(np.mean(values), 4)} ± {_digits(np.std(values), 2)}{seeds}"
                if values
                else "–"
            )
        if threshold is not None:
            cells += [steps_to_threshold(curves, threshold, key), minutes_cell(dirs)]
        lines.append(f"| {label} | {len(dirs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def steps_to_threshold(curves: list[tuple[np.ndarray, np.ndarray]], threshold: float, key: str):
    """The median over seeds of the first env steps at which a curve reached ``threshold``
    (at or below it for a loss), and how many seeds reached it if not all did."""
    reached = []
    for steps, values in curves:
        hit = values <= threshold if lower_is_better(key) else values >= threshold
        if np.any(hit):
            reached.append(steps[np.argmax(hit)])
    if not reached:
        return f"not reached (0/{len(curves)})"
    cell = f"{np.median(reached):,.0f}"
    return cell if len(reached) == len(curves) else f"{cell} ({len(reached)}/{len(curves)})"


def minutes_cell(run_dirs: list[Path]) -> str:
    """The runs' mean wall-clock minutes, from each record's env steps and steps/s."""
    minutes = []
    for run_dir in run_dirs:
        records = [r for r in read_records(metrics_file(run_dir)) if r.get("steps_per_s")]
        if records:
            seconds = sum(r["env_steps_window"] / r["steps_per_s"] for r in records)
            minutes.append(seconds / 60)
    return f"{np.mean(minutes):.1f}" if minutes else "–"


def _digits(value: float, significant: int) -> str:
    """``value`` to ``significant`` digits, never in scientific notation (110, not 1.1e+02)."""
    return np.format_float_positional(value, precision=significant, fractional=False, trim="-")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog=program("plot", "python -m pes_rl.after.plot"), description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, help="run directories written by train.py"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("compare.png"), help="PNG to write"
    )
    parser.add_argument(
        "--budgets", type=float, nargs="*", default=[],
        help="also print a markdown table of the metric at these env-step budgets",
    )  # fmt: skip
    parser.add_argument(
        "--metric", default=None,
        help="plot (and tabulate) this metrics.jsonl key alone, e.g. eval_val_loss; default: "
        "eval_return and train_return",
    )  # fmt: skip
    parser.add_argument(
        "--best", action="store_true",
        help="the best value so far (minimum of *loss metrics, else maximum) at each point",
    )  # fmt: skip
    parser.add_argument(
        "--x", choices=[*X_AXES, "both"], default="env_steps",
        help="x axis: env steps (default), outer iterations, or both side by side",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="with --budgets: also tabulate the env steps to reach this value and the minutes",
    )  # fmt: skip
    parser.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    parser.add_argument(
        "--negate", action="store_true",
        help="plot minus the metric (a meta task's -eval_return is its summed inner loss)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    reasons = [(run_dir, skip_reason(run_dir)) for run_dir in args.run_dirs]
    for skipped, reason in reasons:
        if reason:
            print(f"skipped {skipped}: {reason}", file=sys.stderr)
    args.run_dirs = [run_dir for run_dir, reason in reasons if reason is None]
    if not args.run_dirs:
        print("error: none of these dirs holds a run (config.yaml and metrics.jsonl)",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    if args.metric is not None:
        keys = {k for d in args.run_dirs for r in read_records(metrics_file(d)) for k in r}
        if args.metric not in keys:
            print(f"error: no run logged --metric {args.metric!r}; they log {sorted(keys)}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(2)
    warning = unequal_budgets(args.run_dirs)
    if warning:
        print(warning, file=sys.stderr)
    panels = PANELS if args.metric is None else ((args.metric, args.metric),)
    x_axes = tuple(X_AXES) if args.x == "both" else (args.x,)
    counts = plot_runs(
        args.run_dirs, args.output, panels, args.best, x_axes, args.log_y, args.negate
    )
    for label, count in sorted(counts.items()):
        print(f"{label}: {count} run(s)")
    print(f"wrote {args.output}")
    if args.budgets:
        print(budget_table(args.run_dirs, args.budgets, args.metric or "eval_return", args.best,
                           args.threshold))  # fmt: skip


if __name__ == "__main__":
    main()
