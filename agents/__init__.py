"""Strategies the trainer runs (:class:`Strategy`): the gradient estimators ES, ARS, TES, PES,
NRES and hybrid behind one ``init`` / ``estimate`` API, and random search.

Examples:
  >>> import jax
  >>> from pes_rl import agents, envs, policies
  >>> env = envs.make("influence_balancing")
  >>> policy = policies.make("constant", env)
  >>> agent = agents.make("pes", env=env, policy=policy, num_particles=4, sigma=0.1,
  ...                     unroll_length=1)
  >>> params = policy.init(jax.random.key(0))
  >>> state = agent.init(jax.random.key(1), params)
  >>> grad, state, metrics = agent.estimate(state, params, jax.random.key(2))
  >>> grad.shape
  (1,)
"""

import importlib
import inspect
from typing import Any

from pes_rl.agents.ars import ARS
from pes_rl.agents.base import Estimator
from pes_rl.agents.es import ES, ESState
from pes_rl.agents.hybrid import Hybrid, HybridState
from pes_rl.agents.nres import NRES, NRESState
from pes_rl.agents.pes import PES, PESState
from pes_rl.agents.random_search import RandomSearch
from pes_rl.agents.strategy import Strategy, is_strategy
from pes_rl.agents.tes import TES, TESState
from pes_rl.checks import SettingError

ESTIMATORS: dict[str, type[Estimator]] = {
    "es": ES,
    "ars": ARS,
    "tes": TES,
    "pes": PES,
    "nres": NRES,
    "hybrid": Hybrid,
}
# What ``agent=`` names: the estimators and the search strategies.
AGENTS: dict[str, type[Strategy]] = ESTIMATORS | {"random_search": RandomSearch}


def resolve(name: str) -> type[Strategy]:
    """The strategy class ``name`` names: one of ``AGENTS``, or ``module:Class`` for your own
    (a subclass of :class:`Estimator`, or any class with :class:`Strategy`'s methods;
    docs/own-estimator.md); a ValueError says why not."""
    if ":" not in name:
        if name not in AGENTS:
            raise ValueError(
                f"unknown agent {name!r}: agent must be one of {list(AGENTS)} or "
                "'module:Class' (your own Estimator subclass)"
            )
        return AGENTS[name]
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for agent {name!r}: {error}") from None
    strategy = getattr(module, attribute, None)
    if not is_strategy(strategy):
        raise ValueError(
            f"agent {name!r}: {module_name!r} has no subclass of pes_rl.agents.Estimator "
            f"(or other pes_rl.agents.Strategy) named {attribute!r}"
        )
    return strategy


def settings_of(strategy: type[Strategy]) -> list[str]:
    """The keyword arguments ``strategy`` is built with (an estimator's that pass ``**kwargs``
    on take :class:`Estimator`'s)."""
    accepted = []
    for cls in strategy.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        accepted += [p.name for p in parameters if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if all(p.kind != p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(accepted))


def make(name: str, **kwargs: Any) -> Strategy:
    """Builds strategy ``name`` (one of ``AGENTS``, or ``module:Class``); see ``Estimator``."""
    estimator = resolve(name)
    accepted = settings_of(estimator)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise SettingError(
            f"{{{unknown[0]}}} is not a setting of agent {name!r}: it takes "
            f"{[p for p in accepted if p not in ('env', 'policy', 'mesh')]}"
        )
    return estimator(**kwargs)


__all__ = [
    "AGENTS",
    "ESTIMATORS",
    "ARS",
    "ES",
    "ESState",
    "Hybrid",
    "HybridState",
    "Estimator",
    "NRES",
    "NRESState",
    "PES",
    "PESState",
    "RandomSearch",
    "Strategy",
    "TES",
    "TESState",
    "make",
    "resolve",
]
