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
from pes_rl.envs.gymnasium_env import GymnasiumEnv
from pes_rl.envs.influence_balancing import InfluenceBalancing
from pes_rl.envs.registry import list_envs, make, register, register_prefix

register("influence_balancing", InfluenceBalancing)
register_prefix("brax", BraxEnv)
register_prefix("gym", GymnasiumEnv)

# Gymnasium's "module:Id" form imports this module, which registers these ids.
for _gym_id, _env_id in [("InfluenceBalancing-v0", "influence_balancing")]:
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
    "EnvSpec",
    "State",
    "InfluenceBalancing",
    "list_envs",
    "make",
    "register",
    "register_prefix",
]
