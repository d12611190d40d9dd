"""Augmented Random Search V2-t (Mania, Guy & Recht, 2018) as an estimator.

ARS is ES on whole antithetic episodes with three changes, each a pes_rl option the other
estimators can use too:

* the top ``b`` directions: only the ``agent.top_directions`` pairs with the largest
  max(R+, R−) are credited (:meth:`Estimator._kept_particles`);
* the step α / (b·σ_R) with σ_R the std of the 2b returns used: ``fitness_shaping=std`` over
  the kept returns, with the estimate in ARS's units (``direction_scale``) so that
  ``optimizer=sgd optimizer.lr=α`` takes ARS's step exactly:
  ``M += α / (b·σ_R) · Σ_top (R+ − R−)·δ_k`` with δ_k = ε_k / ν;
* the running state normalization from every state visited in training
  (``agent.obs_normalization=true``, "V2"), and the survival-bonus shift in training rollouts
  (``agent.reward_shift``).

References: https://arxiv.org/abs/1803.07055, https://github.com/modestyachts/ARS
"""

from __future__ import annotations

from pes_rl.agents.es import ES
from pes_rl.checks import SettingError


class ARS(ES):
    """ARS V2-t: whole antithetic episodes, top-b pairs, the step α/(b·σ_R)."""

    name = "ars"

    def __init__(self, env, policy, num_particles, sigma, unroll_length=None, **kwargs):
        if not kwargs.get("antithetic", True):
            raise SettingError(
                "ars samples antithetic pairs (M ± ν·δ): it needs {antithetic}=true"
            )
        if kwargs.get("fitness_shaping", "std") != "std":
            raise SettingError(
                "ars divides by σ_R, the std of the returns it uses: it takes "
                f"{{fitness_shaping}}=std, got {kwargs['fitness_shaping']!r}"
            )
        kwargs["fitness_shaping"] = "std"
        super().__init__(env, policy, num_particles, sigma, unroll_length, **kwargs)
        # std shaping averages w·R/σ_R over the 2b kept particles, with w = ±ν·δ; ARS sums
        # (R+ − R−)·δ/σ_R over the b pairs: a factor 2/ν.
        self.direction_scale = 2.0 / self.sigma
