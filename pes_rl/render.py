"""Frames of a trained policy's episodes, and MP4 files of them.

Gymnasium envs render themselves (``render_mode="rgb_array"``); Brax envs are drawn by MuJoCo's
renderer from the episode's physics states. On a machine without a display MuJoCo needs a
headless OpenGL (EGL or OSMesa), chosen by ``MUJOCO_GL`` when mujoco is first imported: call
:func:`use_headless_gl` before anything imports it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import gymnasium
import jax
import numpy as np

from pes_rl import normalization
from pes_rl.envs.brax_env import BraxEnv
from pes_rl.trained import TrainedPolicy

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
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def can_render(trained: TrainedPolicy) -> str | None:
    """None when episodes of this run can be drawn; else why not (one line)."""
    if getattr(trained.env, "is_host", False) or isinstance(trained.env, BraxEnv):
        return None
    return (
        f"{trained.env_id} has nothing to draw: videos need a Gymnasium env that renders "
        "rgb_array frames or a Brax env"
    )


def brax_video(
    trained: TrainedPolicy,
    seed: int,
    episodes: int,
    size: tuple[int, int],
    camera: str | None = None,
) -> tuple[list[np.ndarray], float]:
    """Frames of ``episodes`` episodes of a Brax env, one after another, and the frame rate."""
    chosen = pick_camera(trained.env.brax_env.sys.mj_model, camera)
    frames = []
    for episode in range(episodes):
        key = jax.random.fold_in(jax.random.key(seed), episode)
        frames += brax_frames(trained, key, trained.env.spec.horizon, size, chosen)
    return frames, 1.0 / float(trained.env.brax_env.dt)


def brax_frames(
    trained: TrainedPolicy,
    key: jax.Array,
    max_steps: int,
    size: tuple[int, int],
    camera: str | None = None,
) -> list[np.ndarray]:
    """Frames of one episode of a Brax env from ``env.reset(key)``, until it ends or
    ``max_steps``: one frame per env step."""
    env: BraxEnv = trained.env
    policy, params, obs_norm = trained.policy, trained.params, trained.obs_norm

    @jax.jit
    def episode(key):
        def step(state, unused_t):
            obs = normalization.normalize(obs_norm, state.obs[None])[0]
            next_state = env.step(state, policy.apply(params, obs))
            return next_state, (next_state.pipeline_state, next_state.done)

        start = env.reset(key)
        _, (states, dones) = jax.lax.scan(step, start, None, length=max_steps)
        return start.pipeline_state, states, dones

    start, states, dones = jax.device_get(episode(key))
    ended = np.flatnonzero(np.asarray(dones) > 0)
    length = int(ended[0]) + 1 if ended.size else max_steps
    trajectory = [start] + [jax.tree.map(lambda x, i=i: x[i], states) for i in range(length)]
    try:
        from brax.io import image

        height, width = size
        frames = image.render_array(
            env.brax_env.sys, trajectory, height=height, width=width, camera=camera
        )
    except Exception as error:  # any OpenGL failure means no renderer on this machine
        raise RenderError(f"cannot render here ({first_line(error)}); {HOW_TO_FIX}") from None
    return list(frames)


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


def gym_renderer(trained: TrainedPolicy, size: tuple[int, int], camera: str | None = None):
    """A single Gymnasium env of the run's id that renders ``rgb_array`` frames (a MuJoCo env
    through ``camera``; see :func:`pick_camera`)."""
    env = trained.env
    kwargs = dict(env.make_kwargs, render_mode="rgb_array")
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gym_env = gymnasium.make(env.gym_id, width=width, height=height, **kwargs)
            except TypeError:  # not a MuJoCo env: no frame size, no cameras
                return gymnasium.make(env.gym_id, **kwargs)
            chosen = pick_camera(getattr(gym_env.unwrapped, "model", None), camera)
            if chosen is None:
                return gym_env
            gym_env.close()
            return gymnasium.make(
                env.gym_id, width=width, height=height, camera_name=chosen, **kwargs
            )
    except RenderError:
        raise
    except Exception as error:
        raise RenderError(f"cannot render {env.gym_id} ({first_line(error)})") from None


def render_frame(gym_env) -> np.ndarray:
    """``gym_env.render()`` as one RGB frame; a RenderError saying why when it cannot."""
    try:
        frame = gym_env.render()
    except gymnasium.error.DependencyNotInstalled as error:  # the message names the install
        raise RenderError(f"cannot render {gym_env.spec.id}: {error}") from None
    except Exception as error:  # no OpenGL, ...
        raise RenderError(f"cannot render here ({first_line(error)}); {HOW_TO_FIX}") from None
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
