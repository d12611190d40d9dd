"""The 2D learning-rate-schedule toy of the PES paper (Vicol et al., 2021, official code
``toy_regression.py``).

Inner problem: f(x) = sqrt(x0² + 5) − sqrt(5) + sin²(x1)·exp(−5·x0²) + 0.25·|x1 − 100|, from
x = (1, 1) at the start of every inner run, plain gradient descent (weight decay 1e-10).
θ = (θ0, θ1) are the log learning rates at the start and the end of the run:
lr_t = (1 − t/T)·e^θ0 + (t/T)·e^θ1. Reward of a step = −f after the step, so a window's
return is minus the sum of f over its steps. T = 100; θ_0 = (−4, −4), where the full-horizon
meta-loss Σ_t f(x_t) is ≈ 2487.8. The surface over θ ∈ [−5, 5]² is rugged: a long flat
plateau and a narrow valley (minimum ≈ 553 near (2.75, −1.75)), where truncated methods
stall and PES does not.

References: https://arxiv.org/abs/2112.13835 (Fig. "LR optimization for 2D regression").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pes_rl.envs.unrolled import UnrolledOptimizationEnv

THETA_INIT = (-4.0, -4.0)
WEIGHT_DECAY = 1e-10


def toy_loss(x: jax.Array) -> jax.Array:
    """The inner objective f(x)."""
    return (
        jnp.sqrt(x[0] ** 2 + 5.0) - jnp.sqrt(5.0)
        + jnp.sin(x[1]) ** 2 * jnp.exp(-5.0 * x[0] ** 2)
        + 0.25 * jnp.abs(x[1] - 100.0)
    )  # fmt: skip


class LRToy2D(UnrolledOptimizationEnv):
    """Gradient descent on the 2D toy with a linearly interpolated log-LR schedule.

    Args:
      horizon: T, inner steps per run (100 in the paper).
      loss_cap: an inner run whose loss is non-finite or above this has diverged.
    """

    def __init__(self, horizon: int = 100, loss_cap: float = 1e6):
        super().__init__(THETA_INIT, horizon, differentiable=True, loss_cap=loss_cap)

    def init_inner(self, key: jax.Array):
        del key  # every inner run starts at x = (1, 1); there is no data
        return jnp.ones(2, jnp.float32), ()

    def inner_step(self, theta, params, opt_state, t, key):
        del key  # deterministic
        fraction = t / self.spec.horizon
        lr = (1.0 - fraction) * jnp.exp(theta[0]) + fraction * jnp.exp(theta[1])
        params = params - lr * (jax.grad(toy_loss)(params) + WEIGHT_DECAY * params)
        return params, opt_state, toy_loss(params)

    def final_metrics(self, theta, params, opt_state):
        del theta, opt_state
        return {"final_loss": toy_loss(params)}

    def sample_search_point(self, key: jax.Array) -> jax.Array:
        """Uniform over the plotted square θ ∈ [−5, 5]²."""
        return jax.random.uniform(key, (2,), minval=-5.0, maxval=5.0)
