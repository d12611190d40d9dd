"""Tuning many hyperparameters at once (PES paper, "Tuning many hyperparameters"; the official
code has 29 of them, not the 20 the paper's text says).

An MLP with 5 hidden layers of 100 ReLU units and an output layer (6 linear layers, 12
weight/bias leaves) trained by SGD with momentum (buf ← m·buf + g; p ← p − lr·buf), minibatches
of 100, T = 1000 steps. θ has 29 entries:

* θ[0:5]: mask logits; hidden layer l keeps its first ⌊sigmoid(θ_l)·100⌋ units,
* θ[5:17]: log learning rates, one per leaf (w0, b0, w1, b1, ...),
* θ[17:29]: logit momentums, one per leaf.

The objective is the validation loss on a validation minibatch after each step (a window's
return is minus its sum). The unit masks are piecewise constant in θ, so the task is not
differentiable. θ_0 is drawn at random (``policy.kwargs.random_init=true``): lr log-uniform in
[1e-4, 1e-2], momentum uniform in [0.01, 0.9], mask fraction uniform in [0.2, 0.8]. The
random-search baseline draws lr log-uniform in [1e-8, 10] and momentum and mask fraction
uniform in [0.01, 0.999].

Data: scikit-learn's digits by default, or a Fashion-MNIST ``.npz`` (``dataset=path``).

References: https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logit

from pes_rl.envs import unrolled
from pes_rl.meta import data

NUM_HIDDEN, WIDTH = 5, 100
NUM_LEAVES = 2 * (NUM_HIDDEN + 1)
NUM_HPARAMS = NUM_HIDDEN + 2 * NUM_LEAVES  # 29


# A fixed θ_0 in the middle of the random-init ranges (used without random_init): mask and
# momentum 0.5 (logit 0), learning rate 1e-3.
THETA_INIT = np.concatenate(
    [np.zeros(NUM_HIDDEN), np.full(NUM_LEAVES, np.log(1e-3)), np.zeros(NUM_LEAVES)]
).astype(np.float32)


def per_leaf(values: jax.Array) -> list[dict[str, jax.Array]]:
    """12 values in leaf order w0, b0, w1, b1, ... as a pytree like the MLP's layers."""
    return [{"w": values[2 * i], "b": values[2 * i + 1]} for i in range(NUM_LEAVES // 2)]


class Hparams29(unrolled.UnrolledOptimizationEnv):
    """Per-layer unit masks, per-leaf learning rates and momentums of a 5-hidden-layer MLP.

    Args:
      horizon: T, inner steps per run (1000 in the paper).
      dataset: ``"digits"`` or the path of a Fashion-MNIST-style ``.npz``.
      batch_size: inner minibatch size.
      loss_cap: an inner run whose loss is non-finite or above this has diverged.
    """

    def __init__(
        self,
        horizon: int = 1000,
        dataset: str = "digits",
        batch_size: int = 100,
        loss_cap: float = 1e3,
    ):
        super().__init__(THETA_INIT, horizon, differentiable=False, loss_cap=loss_cap)
        self.data = data.load(dataset)
        self.sizes = (self.data.train_x.shape[1], *[WIDTH] * NUM_HIDDEN, self.data.num_classes)
        self.batch_size = unrolled.check_count("batch_size", batch_size)

    @staticmethod
    def hyperparameters(theta: jax.Array):
        """θ → (unit masks [5, 100], per-leaf learning rates [12], per-leaf momentums [12])."""
        kept = jnp.floor(jax.nn.sigmoid(theta[:NUM_HIDDEN]) * WIDTH)
        masks = (jnp.arange(WIDTH)[None, :] < kept[:, None]).astype(jnp.float32)
        lr = jnp.exp(theta[NUM_HIDDEN : NUM_HIDDEN + NUM_LEAVES])
        momentum = jax.nn.sigmoid(theta[NUM_HIDDEN + NUM_LEAVES :])
        return masks, lr, momentum

    def init_inner(self, key):
        params = unrolled.init_mlp(key, self.sizes)
        return params, jax.tree.map(jnp.zeros_like, params)

    def inner_step(self, theta, params, opt_state, t, key):
        del t  # the schedule is constant
        masks, lr, momentum = self.hyperparameters(theta)
        batch_key, objective_key = jax.random.split(key)
        d = self.data
        x, y = unrolled.minibatch(batch_key, d.train_x, d.train_y, self.batch_size)

        def loss(p, x, y):
            return unrolled.cross_entropy(unrolled.mlp_logits(p, x, masks), y)

        grads = jax.grad(loss)(params, x, y)
        params, opt_state = unrolled.momentum_sgd(
            params, opt_state, grads, per_leaf(lr), per_leaf(momentum)
        )
        x, y = unrolled.minibatch(objective_key, d.val_x, d.val_y, self.batch_size)
        return params, opt_state, loss(params, x, y)

    def final_metrics(self, theta, params, opt_state):
        del opt_state
        masks, _, _ = self.hyperparameters(theta)
        return unrolled.classifier_metrics(self.data, params, masks)

    def sample_theta(self, key):
        return sample_hyperparameters(key, (0.2, 0.8), (1e-4, 1e-2), (0.01, 0.9))

    def sample_search_point(self, key):
        return sample_hyperparameters(key, (0.01, 0.999), (1e-8, 10.0), (0.01, 0.999))


def sample_hyperparameters(key: jax.Array, mask_range, lr_range, momentum_range) -> jax.Array:
    """θ with mask fractions and momentums uniform, learning rates log-uniform in the ranges."""
    mask_key, lr_key, momentum_key = jax.random.split(key, 3)
    masks = jax.random.uniform(mask_key, (NUM_HIDDEN,), minval=mask_range[0], maxval=mask_range[1])
    log_lr = jax.random.uniform(
        lr_key, (NUM_LEAVES,), minval=np.log(lr_range[0]), maxval=np.log(lr_range[1])
    )
    momentum = jax.random.uniform(
        momentum_key, (NUM_LEAVES,), minval=momentum_range[0], maxval=momentum_range[1]
    )
    return jnp.concatenate([logit(masks), log_lr, logit(momentum)])
