"""Evaluate a trained policy and watch it: returns over N episodes of θ unperturbed, and a video.

    python -m pes_rl.evaluate RUN_DIR                       # 10 episodes, mean ± std return
    python -m pes_rl.evaluate RUN_DIR --episodes 50 --seed 1
    python -m pes_rl.evaluate RUN_DIR --video swimmer.mp4   # and an MP4 of the first episode
    python -m pes_rl.evaluate RUN_DIR --iteration 200       # an older checkpoint

RUN_DIR may also be a copied ``policy.npz``. Gymnasium envs step on the host, one episode at a
time, through ``TrainedPolicy.act``; JAX envs run all episodes in one jitted rollout. A run
logged to W&B gets the returns (and the video) in its W&B run too. The run dir is only read.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from pes_rl.cli import program
from pes_rl.render import use_headless_gl

VIDEO_SIZE = (240, 320)  # height, width


def host_episodes(
    trained, episodes: int, seed: int, video_episodes: int, camera: str | None = None
) -> tuple[list[float], list[np.ndarray], float]:
    """Returns of ``episodes`` Gymnasium episodes (seeds drawn from ``seed``), the frames of the
    first ``video_episodes`` of them and the env's frame rate."""
    from pes_rl.render import gym_renderer, render_frame

    env = trained.env
    gym_env = gym_renderer(trained, VIDEO_SIZE, camera) if video_episodes else env.make_single()
    max_steps = env.spec.horizon or trained.config.train.eval_steps
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=episodes)
    returns, frames = [], []
    try:
        for episode, episode_seed in enumerate(seeds):
            obs, _ = gym_env.reset(seed=int(episode_seed))
            filming = episode < video_episodes
            frames += [render_frame(gym_env)] if filming else []
            total = 0.0
            for _ in range(max_steps):
                obs, reward, terminated, truncated, _ = gym_env.step(trained.act(obs))
                total += float(reward)
                frames += [render_frame(gym_env)] if filming else []
                if terminated or truncated:
                    break
            returns.append(total)
        fps = float(gym_env.metadata.get("render_fps") or 30)
    finally:
        gym_env.close()
    return returns, frames, fps


def jax_episodes(trained, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes of a JAX env, all in one jitted rollout."""
    import jax

    from pes_rl.evaluation import make_episode_returns

    episode_returns = make_episode_returns(
        trained.env, trained.policy, episodes, trained.config.train.eval_steps
    )
    returns = episode_returns(trained.params, trained.obs_norm, jax.random.key(seed))
    return [float(r) for r in np.asarray(returns)]


def log_to_wandb(trained, run_dir: Path, summary: dict, video: Path | None) -> None:
    """Adds the evaluation (and the video) to the run's own W&B run, resumed by its id."""
    from pes_rl.run_log import WandbRun

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
    parser = argparse.ArgumentParser(
        prog=program("evaluate", "python -m pes_rl.evaluate"),
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("run_dir", type=Path, help="a run dir, or a policy.npz file")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to average (10)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the episodes' resets (0)")
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
    from pes_rl import render
    from pes_rl.trained import load

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

    frames, fps = [], 30.0
    try:
        if getattr(trained.env, "is_host", False):
            filmed = args.video_episodes if args.video else 0
            returns, frames, fps = host_episodes(
                trained, args.episodes, args.seed, filmed, args.camera
            )
        else:
            returns = jax_episodes(trained, args.episodes, args.seed)
            if args.video:
                frames, fps = render.physics_video(
                    trained, args.seed, args.video_episodes, VIDEO_SIZE, args.camera
                )
    except render.RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    summary = {
        "iteration": trained.iteration,
        "episodes": args.episodes,
        "seed": args.seed,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "return_min": float(np.min(returns)),
        "return_max": float(np.max(returns)),
    }
    print(
        f"{trained.env_id}, iteration {trained.iteration}: return {summary['return_mean']:.6g} "
        f"± {summary['return_std']:.3g} (std over {args.episodes} "
        f"episode{'s' if args.episodes > 1 else ''}, seed {args.seed}; "
        f"min {summary['return_min']:.6g}, max {summary['return_max']:.6g})"
    )
    if args.video:
        render.write_mp4(args.video, frames, fps)
        print(f"video: {args.video} ({len(frames)} frames at {fps:.0f} fps)")
    if args.json:
        args.json.write_text(json.dumps(summary | {"returns": returns}, indent=1) + "\n")
    if args.run_dir.is_dir():
        log_to_wandb(trained, args.run_dir, summary, args.video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
