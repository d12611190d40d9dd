"""Learning-rate schedule of an MLP classifier (PES paper, "MNIST learning rate schedule";
official code ``hyperopt.py``).

lr_t = exp(θ0) / (1 + t/decay_steps)^exp(θ1), from θ_0 = (log 0.003, log 30); an MLP with two
hidden layers of 100 ReLU units trained by SGD with momentum 0.9 (buf ← 0.9·buf + g;
p ← p − lr·buf) on minibatches of 100. ``decay_steps`` defaults to the horizon T (5000 in the
paper, where both are 5000). Objectives (``objective=``):

* ``train_loss`` (differentiable): the training loss on a fresh minibatch after each step; a
  window's return is minus its sum.
* ``val_accuracy`` (not differentiable): the reward is the accuracy on a validation minibatch
  after each step (higher is better).

Data: scikit-learn's digits by default (64 features, shipped with the package), or an MNIST
``.npz`` on disk (``dataset=path``); see :mod:`pes_rl.meta.data`. The paper's finding: truncated ES
is biased toward too-strong decay; PES finds a schedule with a lower meta-objective.

References: https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pes_rl.envs import unrolled
from pes_rl.meta import data

OBJECTIVES = ("train_loss", "val_accuracy")
THETA_INIT = (float(np.log(0.003)), float(np.log(30.0)))
MOMENTUM = 0.9


class LRSchedule(unrolled.UnrolledOptimizationEnv):
    """SGD + momentum on an MLP with the schedule exp(θ0) / (1 + t/decay_steps)^exp(θ1).

    Args:
      horizon: T, inner steps per run (5000 in the paper).
      objective: ``train_loss`` (differentiable) or ``val_accuracy``.
      dataset: ``"digits"`` or the path of an MNIST-style ``.npz`` (see :mod:`pes_rl.meta.data`).
      hidden_sizes: hidden ReLU units of the inner MLP.
      batch_size: inner minibatch size.
      decay_steps: the schedule's time scale; None = ``horizon``.
      loss_cap: an inner run whose loss is non-finite or above this has diverged.
    """

    def __init__(
        self,
        horizon: int = 5000,
        objective: str = "train_loss",
        dataset: str = "digits",
        hidden_sizes: tuple[int, ...] = (100, 100),
        batch_size: int = 100,
        decay_steps: int | None = None,
        loss_cap: float = 1e3,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        super().__init__(
            THETA_INIT, horizon, differentiable=objective == "train_loss", loss_cap=loss_cap
        )
        self.objective = objective
        if objective == "val_accuracy":
            self.diverged_objective = 0.0  # a diverged run's accuracy is 0 (objective −accuracy)
        self.data = data.load(dataset)
        self.sizes = (self.data.train_x.shape[1], *hidden_sizes, self.data.num_classes)
        self.batch_size = unrolled.check_count("batch_size", batch_size)
        self.decay_steps = unrolled.check_count(
            "decay_steps", horizon if decay_steps is None else decay_steps
        )

    def init_inner(self, key):
        params = unrolled.init_mlp(key, self.sizes)
        return params, jax.tree.map(jnp.zeros_like, params)

    def learning_rate(self, theta: jax.Array, t: jax.Array) -> jax.Array:
        """lr_t = exp(θ0) / (1 + t / decay_steps)^exp(θ1)."""
        return jnp.exp(theta[0]) / (1.0 + t / self.decay_steps) ** jnp.exp(theta[1])

    def inner_step(self, theta, params, opt_state, t, key):
        batch_key, objective_key = jax.random.split(key)
        d = self.data
        x, y = unrolled.minibatch(batch_key, d.train_x, d.train_y, self.batch_size)
        grads = jax.grad(lambda p: unrolled.cross_entropy(unrolled.mlp_logits(p, x), y))(params)
        params, opt_state = unrolled.momentum_sgd(
            params, opt_state, grads, self.learning_rate(theta, t), MOMENTUM
        )
        if self.objective == "train_loss":
            x, y = unrolled.minibatch(objective_key, d.train_x, d.train_y, self.batch_size)
            return params, opt_state, unrolled.cross_entropy(unrolled.mlp_logits(params, x), y)
        x, y = unrolled.minibatch(objective_key, d.val_x, d.val_y, self.batch_size)
        return params, opt_state, -unrolled.accuracy(unrolled.mlp_logits(params, x), y)

    def final_metrics(self, theta, params, opt_state):
        del theta, opt_state
        return unrolled.classifier_metrics(self.data, params)

    def sample_search_point(self, key):
        """log lr uniform in [log 1e-4, log 1], log decay power uniform in [log 0.01, log 100]."""
        low = jnp.log(jnp.array([1e-4, 1e-2]))
        high = jnp.log(jnp.array([1.0, 1e2]))
        return jax.random.uniform(key, (2,), minval=low, maxval=high)
