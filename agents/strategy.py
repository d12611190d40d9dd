"""The one interface the trainer runs: every estimator and search strategy is a ``Strategy``.

optax's pair: ``init(key, params) -> state`` and ``update(optimizer, params, opt_state, state,
key, window) -> (params, opt_state, state, metrics)``. A strategy owns its key splits
(``run_keys``), its perturbations, its credit assignment, its optax step and its population
(``make_evaluate``, ``close``); the trainer asks it nothing else, and checks no strategy's name
or class. ES, ARS, TES, PES, NRES and hybrid implement it through
:class:`pes_rl.agents.base.Estimator`; random search (:mod:`pes_rl.agents.random_search`)
implements it directly. docs/own-estimator.md writes a new one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import jax
import optax
from jax.sharding import Mesh

from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping.evaluation import Evaluation, RunKeys

Params = Any


class Strategy(Protocol):
    """What the trainer needs of a strategy (``agent.name`` in the config)."""

    name: ClassVar[str]
    supports_sharding: ClassVar[bool]  # the population may be split over a device mesh
    env: Env
    policy: Policy
    num_particles: int
    unroll_length: int  # the longest window the strategy compiles
    mesh: Mesh | None
    state_bytes: int  # the state's bytes on one device (the memory check's estimate)
    jittable: bool  # ``update`` runs inside jit
    restorable: bool  # a checkpoint of ``init``'s state continues the run bit for bit
    shortens_windows: bool  # ``window_length`` takes lengths below ``unroll_length``

    @classmethod
    def run_keys(cls, seed: int) -> RunKeys:
        """The keys a run of this strategy draws from ``seed``."""

    @classmethod
    def splits_over_devices(cls, env: Env) -> bool:
        """Whether a population on ``env`` can be split over a device mesh."""

    def init(self, key: jax.Array, params: Params) -> Any:
        """The state (with an ``obs_norm`` field, None when unused) for θ = ``params``."""

    def update(
        self,
        optimizer: optax.GradientTransformation,
        params: Params,
        opt_state: optax.OptState,
        state: Any,
        key: jax.Array,
        window: Any,
    ) -> tuple[Params, optax.OptState, Any, dict]:
        """One iteration: new θ, optimizer state, strategy state and the iteration's metrics
        (``env_steps`` at least)."""

    def window_length(self, unroll_length: int | None) -> Any:
        """The window of ``unroll_length`` steps (None: ``self.unroll_length``) to pass to
        ``update``."""

    def make_evaluate(self, num_episodes: int, num_steps: int) -> Evaluation:
        """``evaluate(params, obs_norm, key) -> metrics`` of θ unperturbed."""

    def close(self) -> None:
        """Releases what the strategy holds outside JAX (a host population's sub-envs)."""


STRATEGY_METHODS = ("run_keys", "splits_over_devices", "init", "update", "window_length",
                    "make_evaluate", "close")  # fmt: skip


def is_strategy(candidate: Any) -> bool:
    """Whether ``candidate`` is a class with the methods of :class:`Strategy`."""
    return isinstance(candidate, type) and all(
        callable(getattr(candidate, method, None)) for method in STRATEGY_METHODS
    )
