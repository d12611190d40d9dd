"""Gymnasium envs written for the tests; importing this module registers them.

``CountingEnv`` logs every reset and step it really performs, so tests can check the host
engine's windows against what happened in the sub-envs, and it refuses a step after its episode
ended without a reset (which is what a reset transition would be).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

LOG: dict[int, list[tuple]] = {}  # id(env) -> [("reset", seed, length) | ("step", reward, done)]


class CountingEnv(gymnasium.Env):
    """Reward = action + step index; episodes last 2..5 steps, set by the reset seed."""

    def __init__(self, discrete: bool = False):
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = (
            spaces.Discrete(3) if discrete else spaces.Box(-1.0, 1.0, (1,), np.float32)
        )
        self.t, self.length, self.done = 0, 0, True
        LOG[id(self)] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length, self.done = 0, int(self.np_random.integers(2, 6)), False
        LOG[id(self)].append(("reset", seed, self.length))
        return self._obs(), {}

    def step(self, action):
        if self.done:
            raise AssertionError("stepped after the episode ended: a reset transition")
        self.t += 1
        reward = float(np.asarray(action).reshape(-1)[0]) + self.t
        self.done = self.t >= self.length
        LOG[id(self)].append(("step", reward, self.done))
        return self._obs(), reward, self.done, False, {}

    def _obs(self):
        return np.array([self.t, self.length], np.float32)


class DictObservationEnv(CountingEnv):
    """CountingEnv with its observation as a dict: ``{"length": [length], "t": [t]}``."""

    def __init__(self):
        super().__init__()
        box = spaces.Box(0, 10, (1,), np.float32)
        self.observation_space = spaces.Dict({"length": box, "t": box})

    def _obs(self):
        return {"length": np.array([self.length], np.float32), "t": np.array([self.t], np.float32)}


class AppendObservation(gymnasium.ObservationWrapper):
    """Appends ``value`` to a flat Box observation (the tests' wrapper, to see order and kwargs)."""

    def __init__(self, env: gymnasium.Env, value: float = 0.0):
        super().__init__(env)
        space = env.observation_space
        self.value = value
        low, high = (
            np.append(bound, value).astype(np.float32) for bound in (space.low, space.high)
        )
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation):
        return np.append(observation, self.value).astype(np.float32)


class MultiDiscreteActionEnv(CountingEnv):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.MultiDiscrete([2, 2])


class HazardGymEnv(gymnasium.Env):
    """``toy_envs.HazardEnv`` as a Gymnasium env: reward a = clip(action, −2, 2) per step, and
    the episode ends after each step with probability h(a) = base + slope·a² (the horizon is
    the registered TimeLimit). Like ``HazardEnv`` it draws one uniform U per episode from
    ``np_random`` and ends at the first step whose survival Π(1 − h(a_s)) falls below U, so
    sub-envs reset with the same seed (antithetic partners) share U."""

    def __init__(self, base_hazard: float = 0.01, hazard_slope: float = 0.04):
        self.base_hazard, self.hazard_slope = base_hazard, hazard_slope
        self.observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.log_u, self.log_survival = np.log(self.np_random.random()), 0.0
        return np.ones(1, np.float32), {}

    def step(self, action):
        action = float(np.clip(np.asarray(action).reshape(-1)[0], -2.0, 2.0))
        self.log_survival += np.log1p(-(self.base_hazard + self.hazard_slope * action**2))
        return np.ones(1, np.float32), action, bool(self.log_survival < self.log_u), False, {}


for _id, _entry in [
    ("Counting-v0", "toy_gym:CountingEnv"),
    ("DictObservation-v0", "toy_gym:DictObservationEnv"),
    ("MultiDiscreteAction-v0", "toy_gym:MultiDiscreteActionEnv"),
]:
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_entry, max_episode_steps=100, disable_env_checker=True)
if "Hazard-v0" not in gymnasium.registry:
    gymnasium.register(
        "Hazard-v0", entry_point="toy_gym:HazardGymEnv", max_episode_steps=1000,
        disable_env_checker=True,
    )  # fmt: skip


class MissionSpace(spaces.Space):
    """A space of mission strings that Gymnasium cannot flatten, as MiniGrid's."""

    def sample(self, mask=None, probability=None):
        return "get to the green goal square"

    def contains(self, x):
        return isinstance(x, str)


class MissionObservationEnv(CountingEnv):
    """CountingEnv with a MiniGrid-like observation: ``{"image": [t, length], "mission": str}``."""

    def __init__(self):
        super().__init__()
        box = spaces.Box(0, 10, (2,), np.float32)
        self.observation_space = spaces.Dict({"image": box, "mission": MissionSpace()})

    def _obs(self):
        return {"image": super()._obs(), "mission": "get to the green goal square"}


class SequenceObservationEnv(CountingEnv):
    """CountingEnv whose whole observation is a Sequence (Gymnasium cannot flatten it)."""

    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Sequence(spaces.Discrete(10))

    def _obs(self):
        return (self.t, self.length)


class GridRenderEnv(CountingEnv):
    """A grid env that renders rgb_array frames of its own size, 8 pixels a cell; like
    MiniGrid, ``width`` and ``height`` are the grid's size (in cells, at most 16), not the
    frame's. ``broken=True``: rendering fails with an empty AssertionError, as MiniGrid's did."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, width=5, height=4, render_mode=None, broken=False):
        assert width <= 16 and height <= 16
        super().__init__(discrete=True)
        self.width, self.height, self.render_mode, self.broken = width, height, render_mode, broken

    def render(self):
        assert not self.broken
        frame = np.zeros((8 * self.height, 8 * self.width, 3), np.uint8)
        frame[:8, : 8 * (self.t + 1)] = 255  # a bar that grows with the step
        return frame


class FixedSizeRenderEnv(CountingEnv):
    """An env that renders 32x48 rgb_array frames and takes no ``width``/``height``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        super().__init__(discrete=True)
        self.render_mode = render_mode

    def render(self):
        return np.full((32, 48, 3), 40 * self.t, np.uint8)


for _id, _entry in [
    ("MissionObservation-v0", "toy_gym:MissionObservationEnv"),
    ("SequenceObservation-v0", "toy_gym:SequenceObservationEnv"),
    ("GridRender-v0", "toy_gym:GridRenderEnv"),
    ("FixedSizeRender-v0", "toy_gym:FixedSizeRenderEnv"),
]:
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_entry, max_episode_steps=100, disable_env_checker=True)
