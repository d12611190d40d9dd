"""Evaluate a trained policy and watch it: returns over N episodes of θ unperturbed, and a video.

    python -m pes_rl.after.evaluate RUN_DIR                       # 10 episodes, mean ± std return
    python -m pes_rl.after.evaluate RUN_DIR --episodes 50 --seed 1
    python -m pes_rl.after.evaluate RUN_DIR --video swimmer.mp4   # and an MP4 of the first episode
    python -m pes_rl.after.evaluate RUN_DIR --iteration 200       # an older checkpoint

RUN_DIR may also be a copied ``policy.npz``. The episodes run through the evaluation the trainer
runs (all episodes in one jitted rollout on a JAX env, one Gymnasium sub-env per episode on a
host env); without ``--seed`` they are reset as the run's own last evaluation was, so
``--episodes`` equal to the run's ``train.eval_episodes`` prints its last ``eval_return``. A run
logged to W&B gets the returns (and the video) in its W&B run too. The run dir is only read.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from pes_rl.after.render import use_headless_gl
from pes_rl.cli import ArgumentParser, program

VIDEO_SIZE = (240, 320)  # height, width


def episode_key(trained, seed: int | None):
    """The key the episodes' resets are drawn from: the run's own evaluation key after the
    loaded iteration (``seed`` None), else one from ``seed``."""
    import jax

    from pes_rl import agents
    from pes_rl.stepping.evaluation import evaluation_key

    if seed is None:
        config = trained.config
        keys = agents.resolve(config.agent.name).run_keys(config.train.seed)
        return evaluation_key(keys, trained.iteration)
    return jax.random.key(seed)


def episode_returns(trained, episodes: int, key) -> tuple[np.ndarray, float]:
    """The returns of ``episodes`` episodes of θ unperturbed and their mean, computed by the
    evaluation the trainer runs (so the run's own key repeats its ``eval_return``)."""
    from pes_rl.stepping.evaluation import mean_return
    from pes_rl.stepping.populations import make_episode_returns

    evaluate = make_episode_returns(
        trained.env, trained.policy, episodes, trained.config.train.eval_steps
    )
    try:
        returns = evaluate(trained.params, trained.obs_norm, key)
    finally:
        evaluate.close()  # a Gymnasium env's sub-envs
    return np.asarray(returns), float(mean_return(returns))


def host_video(
    trained, key, episodes: int, camera: str | None = None
) -> tuple[list[np.ndarray], float]:
    """Frames of the first ``episodes`` evaluated Gymnasium episodes (the same reset seeds),
    stepped one at a time through ``TrainedPolicy.act``, and the env's frame rate."""
    from pes_rl.after.render import gym_renderer, render_frame
    from pes_rl.stepping.host_engine import episode_seeds

    gym_env = gym_renderer(trained, VIDEO_SIZE, camera)
    max_steps = trained.env.spec.horizon or trained.config.train.eval_steps
    frames = []
    try:
        for episode_seed in episode_seeds(key, episodes):
            obs, _ = gym_env.reset(seed=int(episode_seed))
            frames.append(render_frame(gym_env))
            for _ in range(max_steps):
                obs, _, terminated, truncated, _ = gym_env.step(trained.act(obs))
                frames.append(render_frame(gym_env))
                if terminated or truncated:
                    break
        fps = float(gym_env.metadata.get("render_fps") or 30)
    finally:
        gym_env.close()
    return frames, fps


def log_to_wandb(trained, run_dir: Path, summary: dict, video: Path | None) -> None:
    """Adds the evaluation (and the video) to the run's own W&B run, resumed by its id."""
    from pes_rl.training.run_log import WandbRun

    if trained.config.logger.name != "wandb" or not (run_dir / "wandb_id.txt").exists():
        return
    record = {"iteration": trained.iteration}
    record |= {f"evaluate/{key}": value for key, value in summary.items()}
    wandb_run = WandbRun(trained.config, run_dir)  # W&B failures only warn
    if video is not None and wandb_run.run is not None:
        import wandb

        record["evaluate/video"] = wandb.Video(str(video), format="mp4")
    wandb_run.log(record)
    wandb_run.finish()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog=program("evaluate", "python -m pes_rl.after.evaluate"),
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("run_dir", type=Path, help="a run dir, or a policy.npz file")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to average (10)")
    parser.add_argument(
        "--seed", type=int,
        help="seeds the episodes' resets (default: the run's own evaluation seeds, so "
        "--episodes train.eval_episodes repeats the run's last eval_return)",
    )  # fmt: skip
    parser.add_argument("--iteration", type=int, help="a checkpoint's iteration (latest)")
    parser.add_argument("--video", type=Path, help="write an MP4 of the first episode(s) here")
    parser.add_argument("--video-episodes", type=int, default=1, help="episodes filmed (1)")
    parser.add_argument(
        "--camera", help="a MuJoCo camera by name (default: the model's 'track' camera, if any)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for flag in ("episodes", "video_episodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.video:
        use_headless_gl()  # before anything imports mujoco
    from pes_rl.after import render
    from pes_rl.after.trained import load

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Brax's unmaintained notice, gymnasium's checker
            trained = load(args.run_dir, args.iteration)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    video_reason = render.can_render(trained.env, trained.env_id) if args.video else None
    if video_reason:
        print(f"error: {video_reason}", file=sys.stderr)
        return 2

    key = episode_key(trained, args.seed)
    returns, mean = episode_returns(trained, args.episodes, key)
    frames, fps = [], 30.0
    try:
        if args.video and getattr(trained.env, "is_host", False):
            frames, fps = host_video(trained, key, args.video_episodes, args.camera)
        elif args.video:
            video_seed = trained.config.train.seed if args.seed is None else args.seed
            frames, fps = render.physics_video(
                trained, video_seed, args.video_episodes, VIDEO_SIZE, args.camera
            )
    except render.RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    summary = {
        "iteration": trained.iteration,
        "episodes": args.episodes,
        "seed": args.seed,
        "return_mean": mean,
        "return_std": float(np.std(returns)),
        "return_min": float(np.min(returns)),
        "return_max": float(np.max(returns)),
    }
    seeded = "the run's evaluation seeds" if args.seed is None else f"seed {args.seed}"
    print(
        f"{trained.env_id}, iteration {trained.iteration}: return {summary['return_mean']:.6g} "
        f"± {summary['return_std']:.3g} (std over {args.episodes} "
        f"episode{'s' if args.episodes > 1 else ''}, {seeded}; "
        f"min {summary['return_min']:.6g}, max {summary['return_max']:.6g})"
    )
    if args.video:
        render.write_mp4(args.video, frames, fps)
        print(f"video: {args.video} ({len(frames)} frames at {fps:.0f} fps)")
    if args.json:
        returns_list = [float(r) for r in returns]
        args.json.write_text(json.dumps(summary | {"returns": returns_list}, indent=1) + "\n")
    if args.run_dir.is_dir():
        log_to_wandb(trained, args.run_dir, summary, args.video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
