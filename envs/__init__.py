"""Environments: the JAX env protocol, the registry, and the built-in tasks.

Examples:
  >>> from pes_rl import envs
  >>> env = envs.make("influence_balancing")
  >>> env.spec.horizon is None
  True
"""

import gymnasium

from pes_rl.envs.base import Env, EnvSpec, State
from pes_rl.envs.brax_env import BraxEnv
from pes_rl.envs.custom import factory_takers, make_custom
from pes_rl.envs.gymnasium_env import GymnasiumEnv, gym_takers
from pes_rl.envs.gymnax_env import GymnaxEnv, gymnax_takers
from pes_rl.envs.hparams29 import Hparams29
from pes_rl.envs.influence_balancing import InfluenceBalancing
from pes_rl.envs.learned_optimizer import LearnedOptimizer
from pes_rl.envs.lr_schedule import LRSchedule
from pes_rl.envs.lr_toy2d import LRToy2D
from pes_rl.envs.playground_env import PlaygroundEnv
from pes_rl.envs.registry import list_envs, make, register, register_prefix
from pes_rl.envs.unrolled import UnrolledOptimizationEnv

register("influence_balancing", InfluenceBalancing)
register("lr_toy2d", LRToy2D)
register("lr_schedule", LRSchedule)
register("hparams29", Hparams29)
register("learned_optimizer", LearnedOptimizer)
register_prefix("brax", BraxEnv)
register_prefix("gym", GymnasiumEnv, gym_takers)
register_prefix("gymnax", GymnaxEnv, gymnax_takers)
register_prefix("jax", make_custom, factory_takers)
register_prefix("playground", PlaygroundEnv)

# Gymnasium's "module:Id" form imports this module, which registers these ids.
for _gym_id, _env_id in [
    ("InfluenceBalancing-v0", "influence_balancing"),
    ("LRToy2D-v0", "lr_toy2d"),
    ("LRSchedule-v0", "lr_schedule"),
    ("Hparams29-v0", "hparams29"),
    ("LearnedOptimizer-v0", "learned_optimizer"),
]:
    if _gym_id not in gymnasium.registry:
        gymnasium.register(
            id=_gym_id,
            entry_point="pes_rl.envs.gymnasium_api:JaxAsGymnasiumEnv",
            kwargs={"env_id": _env_id},
            disable_env_checker=True,
        )

__all__ = [
    "BraxEnv",
    "Env",
    "GymnasiumEnv",
    "GymnaxEnv",
    "EnvSpec",
    "State",
    "Hparams29",
    "InfluenceBalancing",
    "LearnedOptimizer",
    "LRSchedule",
    "LRToy2D",
    "PlaygroundEnv",
    "UnrolledOptimizationEnv",
    "list_envs",
    "make",
    "register",
    "register_prefix",
]
