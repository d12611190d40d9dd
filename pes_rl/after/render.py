"""Frames of a trained policy's episodes, and MP4 files of them.

Gymnasium envs render themselves (``render_mode="rgb_array"``; MuJoCo envs at the video's frame
size, others at their own size); Brax and MuJoCo Playground envs are drawn by MuJoCo's renderer
from the joint positions of each step. On a machine without a display MuJoCo needs a headless
OpenGL (EGL or OSMesa), chosen by ``MUJOCO_GL`` when mujoco is first imported: call
:func:`use_headless_gl` before anything imports it.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from pes_rl.after.trained import TrainedPolicy
from pes_rl.envs.brax_env import BraxEnv
from pes_rl.envs.playground_env import PlaygroundEnv
from pes_rl.stepping import engine

TRACKING_CAMERA = "track"
HOW_TO_FIX = (
    "install a headless OpenGL (Debian/Ubuntu: apt install libegl1, or libosmesa6 with "
    "MUJOCO_GL=osmesa) or run where a display is attached"
)


class RenderError(RuntimeError):
    """Rendering is impossible here; the message says why and how to fix it, in one line."""


def use_headless_gl() -> None:
    """Without a display: EGL for MuJoCo and SDL's offscreen driver for pygame, unless the
    user chose otherwise."""
    if os.environ.get("DISPLAY"):
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (classic control) draws offscreen


def first_line(error: BaseException) -> str:
    """``Type: the message's first line`` (200 characters at most); for an empty message,
    where the error was raised (``AssertionError at grid.py:30``)."""
    message = (str(error).splitlines() or [""])[0][:200]
    if message:
        return f"{type(error).__name__}: {message}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{where}"


def physics_view(env) -> tuple[Any, Callable[[Any], Any], float] | None:
    """For a MuJoCo-based JAX env: its MuJoCo model, the map from an env state to its joint
    positions, and the seconds per env step. None for envs without MuJoCo physics."""
    if isinstance(env, BraxEnv):
        brax_env = env.brax_env
        return brax_env.sys.mj_model, lambda state: state.pipeline_state.q, float(brax_env.dt)
    if isinstance(env, PlaygroundEnv):
        playground_env = env.playground_env
        return (
            playground_env.mj_model,
            lambda state: state.inner.data.qpos,
            float(playground_env.dt),
        )
    return None


def can_render(env, env_id: str) -> str | None:
    """None when episodes of ``env`` (``env_id``) can be drawn; else why not (one line)."""
    if getattr(env, "is_host", False) or physics_view(env) is not None:
        return None
    return (
        f"{env_id} has nothing to draw: videos need a Gymnasium env that renders "
        "rgb_array frames, or a Brax or MuJoCo Playground env"
    )


def physics_video(
    trained: TrainedPolicy,
    seed: int,
    episodes: int,
    size: tuple[int, int],
    camera: str | None = None,
) -> tuple[list[np.ndarray], float]:
    """Frames of ``episodes`` episodes of a Brax or Playground env, one after another, drawn
    by MuJoCo's renderer, and the frame rate (one frame per env step)."""
    model, joint_positions, seconds_per_step = physics_view(trained.env)
    chosen = pick_camera(model, camera)
    frames = []
    for episode in range(episodes):
        key = jax.random.fold_in(jax.random.key(seed), episode)
        qpos = episode_joint_positions(trained, joint_positions, key)
        frames += draw(model, qpos, size, chosen)
    return frames, 1.0 / seconds_per_step


def episode_joint_positions(trained: TrainedPolicy, joint_positions, key: jax.Array) -> np.ndarray:
    """[steps + 1, nq]: the joint positions after ``env.reset(key)`` and after each step of θ
    unperturbed, until the episode ends (or the horizon)."""
    env, policy, params, obs_norm = trained.env, trained.policy, trained.params, trained.obs_norm
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def episode(key):
        particles = engine.reset_particles(env, key[None])
        _, window, qpos = engine.unroll(
            env, lambda theta, obs: policy.apply(unravel(theta), obs), particles, flat[None],
            key, env.spec.horizon, autoreset=False, obs_norm=obs_norm, record=joint_positions,
        )  # fmt: skip
        start = jax.vmap(joint_positions)(particles.env_state)[0]
        return start, qpos[:, 0], window.steps_first[0]

    start, qpos, length = jax.device_get(episode(key))
    return np.concatenate([np.asarray(start)[None], np.asarray(qpos)[: int(length)]])


def draw(model, qpos: np.ndarray, size: tuple[int, int], camera: str | None) -> list[np.ndarray]:
    """One frame per row of ``qpos`` through ``camera`` (None: MuJoCo's free camera)."""
    import mujoco

    try:
        height, width = size
        renderer = mujoco.Renderer(model, height=height, width=width)
    except Exception as error:  # any OpenGL failure means no renderer on this machine
        raise RenderError(f"cannot render here ({first_line(error)}); {HOW_TO_FIX}") from None
    data = mujoco.MjData(model)
    frames = []
    for positions in qpos:
        data.qpos[:] = positions
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=-1 if camera is None else camera)
        frames.append(renderer.render())
    renderer.close()
    return frames


def camera_names(model) -> list[str]:
    """The named cameras of a MuJoCo model."""
    import mujoco

    names = (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam))
    return [name for name in names if name]


def pick_camera(model, camera: str | None) -> str | None:
    """``camera`` if the model has it (else a RenderError listing those it has); by default its
    ``track`` camera, which follows the body (MuJoCo locomotion models), else the free one."""
    names = camera_names(model) if model is not None else []
    if camera is None:
        return TRACKING_CAMERA if TRACKING_CAMERA in names else None
    if camera not in names:
        raise RenderError(f"--camera {camera!r}: the model's cameras are {names}")
    return camera


def is_mujoco(gym_env: gymnasium.Env) -> bool:
    """Whether ``gym_env`` is a Gymnasium MuJoCo env, which takes a frame size (``width``,
    ``height``) and a camera; other envs may read those keywords otherwise (MiniGrid: the
    grid's size)."""
    from gymnasium.envs.mujoco import MujocoEnv

    return isinstance(gym_env.unwrapped, MujocoEnv)


def gym_renderer(trained: TrainedPolicy, size: tuple[int, int], camera: str | None = None):
    """A single Gymnasium env of the run's id, wrapped as in training, that renders
    ``rgb_array`` frames: a MuJoCo env at ``size`` through ``camera`` (see
    :func:`pick_camera`), any other env at its own size."""
    env = trained.env
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gym_env = env.make_single(render_mode="rgb_array")
            if not is_mujoco(gym_env):
                if camera is not None:
                    gym_env.close()
                    raise RenderError(f"--camera {camera!r}: {env.gym_id} has no MuJoCo cameras")
                return gym_env
            chosen = pick_camera(gym_env.unwrapped.model, camera)
            gym_env.close()
            named = {} if chosen is None else {"camera_name": chosen}
            return env.make_single(render_mode="rgb_array", width=width, height=height, **named)
    except RenderError:
        raise
    except Exception as error:
        raise RenderError(f"cannot render {env.gym_id} ({first_line(error)})") from None


def render_frame(gym_env) -> np.ndarray:
    """``gym_env.render()`` as one RGB frame; a RenderError naming the env and why when it
    cannot (for a MuJoCo env, how to get an OpenGL without a display)."""
    try:
        frame = gym_env.render()
    except gymnasium.error.DependencyNotInstalled as error:  # the message names the install
        raise RenderError(f"cannot render {gym_env.spec.id}: {error}") from None
    except Exception as error:
        fix = f"; {HOW_TO_FIX}" if is_mujoco(gym_env) else ""
        raise RenderError(f"cannot render {gym_env.spec.id} ({first_line(error)}){fix}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise RenderError(f"{gym_env.spec.id} renders no rgb_array frames (got {type(frame)})")
    return frame


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """An H.264 MP4 through imageio's bundled ffmpeg."""
    import imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # ffmpeg is a subprocess: JAX's fork warning does not apply
        warnings.simplefilter("ignore", RuntimeWarning)
        with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, np.uint8))
