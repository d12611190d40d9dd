"""Meta-training a learned optimizer as an env: θ = the per-parameter MLP's weights.

One env step is one inner training step of a task from a family (:mod:`pes_rl.envs.lopt_tasks`)
with the learned optimizer of :mod:`pes_rl.lopt` at weights θ (the action, from the
``constant`` policy). Each reset draws a task variant, an initialization, a data order and an
inner horizon, log-uniform in [``min_length``, ``max_length``] (learned_optimization's
recipe; stagger the particles with ``agent.stagger=true`` to spread them over their runs).
Reward = −(the inner training loss of the step's minibatch, or a validation minibatch's loss:
``objective``), taken at the parameters the step starts from; with ``log_loss`` −log(that loss
+ 1e-6), which rewards the tenfold drop from 1e-3 to 1e-4 as much as the one from 1 to 0.1.
NaN gradients become 0; a loss that is non-finite or above ``loss_cap`` ends the run as
diverged, charged ``loss_cap`` (its log) for every step it had left
(:mod:`pes_rl.envs.unrolled`): a bad θ gets a bad, finite reward.

Evaluation during training (``eval_return``, ``eval_train_loss``) runs inner runs of a fixed
``eval_length`` steps on the same (training) distribution; ``pes-rl lopt-eval`` compares the
result with tuned Adam, RMSProp and SGD+momentum on the training and held-out distributions.

References:
  Metz et al., "Understanding and correcting pathologies in the training of learned
  optimizers", ICML 2019. https://arxiv.org/abs/1810.10180
  Vicol et al., PES, ICML 2021 (training learned optimizers). https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from pes_rl import lopt
from pes_rl.envs import lopt_tasks, unrolled

OBJECTIVES = ("train_loss", "val_loss")
LOSS_CAPS = {"mlp_digits": 10.0, "cnn_digits": 10.0, "quadratic": 1000.0}
THETA_SEED = 0  # θ_0 = lopt.init(key(THETA_SEED)) unless policy.kwargs.random_init=true


class LearnedOptimizer(unrolled.UnrolledOptimizationEnv):
    """Inner runs of a task family trained by the learned optimizer θ.

    Args:
      task: ``mlp_digits``, ``cnn_digits`` or ``quadratic`` (see :mod:`pes_rl.envs.lopt_tasks`).
      distribution: ``train`` (meta-training), ``heldout`` or, for ``cnn_digits``,
        ``heldout_mlp`` (evaluation only).
      min_length: shortest inner run; each episode draws its length log-uniformly.
      max_length: longest inner run (``min_length == max_length``: fixed length).
      eval_length: inner steps of the runs evaluation uses; None = ``max_length``.
      objective: ``train_loss`` or ``val_loss`` (a validation minibatch's loss).
      batch_size: inner minibatch size (classifier tasks).
      lopt_hidden_sizes: hidden ReLU units of the per-parameter MLP.
      loss_cap: a loss that is non-finite or above this has diverged; None = the task's
        ``LOSS_CAPS`` entry (about 4× a fresh network's loss; 50× a fresh quadratic's).
      dataset: ``digits`` or an MNIST-style ``.npz`` of 8×8 images (see :mod:`pes_rl.meta.data`).
      log_loss: reward −log(loss + 1e-6) per step instead of −loss (meta-objective: the mean
        log loss of the run, which keeps rewarding progress once the loss is small).
      step_mult: λ of the step o_dir·exp(λ·o_mag)·λ as meta-training sees it (None: the
        paper's 1e-3). θ_0 is the same optimizer for any value (o_dir's weights start divided by
        step_mult / 1e-3), but σ and the outer optimizer's steps move o_dir that many times
        more: large inner steps are reachable in fewer outer iterations. The saved θ
        (:meth:`lopt_theta`) is rescaled to the standard λ = 1e-3, so it loads alone.
      lopt_features: the MLP's inputs: ``base`` (None; learned_optimization's MLPLOpt: g, p,
        momenta, time) or ``rms`` (also RMSProp's and Adam's per-parameter directions, as
        Metz et al. 2019's RMS terms); see :mod:`pes_rl.lopt`.
      lopt_nominal_rate: θ_0 steps this rate along RMSProp's direction (normalized per
        tensor) and its random units add a tenth of their steps (``lopt.init``'s
        ``nominal_rate``); needs ``lopt_features`` rms. None: the paper's random θ_0.
      lopt_init: θ_0 = a saved learned optimizer (a ``lopt_theta.npz`` or a run dir holding
        one): meta-training goes on from it, e.g. with longer inner runs. Its feature set and
        hidden sizes must match ``lopt_features`` and ``lopt_hidden_sizes``. None: θ_0 as above.
    """

    def __init__(
        self,
        task: str = "mlp_digits",
        distribution: str = "train",
        min_length: int = 100,
        max_length: int = 10000,
        eval_length: int | None = None,
        objective: str = "train_loss",
        batch_size: int = 128,
        lopt_hidden_sizes: Sequence[int] = lopt.HIDDEN_SIZES,
        loss_cap: float | None = None,
        dataset: str = "digits",
        log_loss: bool = False,
        step_mult: float | None = None,
        lopt_features: str | None = None,
        lopt_nominal_rate: float | None = None,
        lopt_init: str | None = None,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(
                f"env.kwargs.objective must be one of {list(OBJECTIVES)}, got {objective!r}"
            )
        unrolled.check_count("min_length", min_length)
        unrolled.check_count("max_length", max_length)
        if min_length > max_length:
            raise ValueError(
                f"env.kwargs.min_length ({min_length}) must be <= max_length ({max_length})"
            )
        if task == "quadratic" and objective == "val_loss":
            raise ValueError("the quadratic task has no validation split: use objective=train_loss")
        self.task = lopt_tasks.make(task, distribution, batch_size, dataset)
        step_mult = lopt.STEP_MULT if step_mult is None else step_mult
        self.step_scale = unrolled.check_positive("step_mult", step_mult) / lopt.STEP_MULT
        self.lopt_hidden_sizes = tuple(lopt_hidden_sizes)
        try:
            self.lopt_features = lopt.check_features(lopt_features or "base")
        except ValueError as error:
            raise ValueError(f"env.kwargs.lopt_features: {error}") from None
        if lopt_nominal_rate is not None:
            unrolled.check_positive("lopt_nominal_rate", lopt_nominal_rate)
            if self.lopt_features != "rms":
                raise ValueError("env.kwargs.lopt_nominal_rate needs env.kwargs.lopt_features rms")
        self.lopt_nominal_rate = lopt_nominal_rate
        self.lopt_init = None if lopt_init is None else self._load_init(lopt_init)
        flat, self.unravel = ravel_pytree(self.as_meta_theta(jax.random.key(THETA_SEED)))
        if loss_cap is None:
            loss_cap = LOSS_CAPS[task]
        if not isinstance(log_loss, bool):
            raise ValueError(f"env.kwargs.log_loss must be true or false, got {log_loss!r}")
        super().__init__(
            flat, max_length, differentiable=True, loss_cap=loss_cap, log_objective=log_loss
        )
        # Episodes end at their own drawn horizons: resets are prepared for every window.
        self.spec = dataclasses.replace(self.spec, early_termination=True)
        self.min_length, self.max_length = min_length, max_length
        self.eval_length = unrolled.check_count(
            "eval_length", max_length if eval_length is None else eval_length
        )
        if self.eval_length > max_length:
            raise ValueError(f"env.kwargs.eval_length must be <= max_length ({max_length})")
        self.objective = objective

    def _load_init(self, path: str) -> lopt.Theta:
        """``lopt_init``'s θ, checked against the feature set and hidden sizes."""
        if self.lopt_nominal_rate is not None:
            raise ValueError(
                "env.kwargs.lopt_init and env.kwargs.lopt_nominal_rate exclude each other"
            )
        try:
            theta = lopt.load(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"env.kwargs.lopt_init: {error}") from None
        hidden_sizes = tuple(int(layer["w"].shape[1]) for layer in theta.layers[:-1])
        if theta.features != self.lopt_features or hidden_sizes != self.lopt_hidden_sizes:
            raise ValueError(
                f"env.kwargs.lopt_init: {path} holds a θ with {theta.features!r} "
                f"features and hidden sizes {list(hidden_sizes)}; this run has "
                f"{self.lopt_features!r} and {list(self.lopt_hidden_sizes)}"
            )
        return theta

    def as_meta_theta(self, key: jax.Array) -> lopt.Theta:
        """``lopt.init(key)`` (or ``lopt_init``'s θ) in meta-training's units: o_dir's weights
        divided by the step scale, so that every ``step_mult`` starts from the same optimizer."""
        if self.lopt_init is not None:
            return lopt.scale_steps(self.lopt_init, 1.0 / self.step_scale)
        theta = lopt.init(key, self.lopt_hidden_sizes, self.lopt_features, self.lopt_nominal_rate)
        return lopt.scale_steps(theta, 1.0 / self.step_scale)

    def lopt_theta(self, theta: jax.Array) -> lopt.Theta:
        """The flat θ meta-training perturbs as :mod:`pes_rl.lopt` layers at λ = 1e-3."""
        return lopt.scale_steps(self.unravel(theta), self.step_scale)

    def sample_horizon(self, key):
        """log-uniform in [min_length, max_length], rounded to whole steps."""
        low, high = math.log(self.min_length), math.log(self.max_length)
        length = jnp.exp(jax.random.uniform(key, minval=low, maxval=high))
        return jnp.clip(jnp.round(length), self.min_length, self.max_length).astype(jnp.int32)

    def for_evaluation(self):
        env = copy.copy(self)
        env.min_length = env.max_length = self.eval_length
        env.spec = dataclasses.replace(self.spec, horizon=self.eval_length)
        return env

    def init_inner(self, key):
        variant_key, init_key = jax.random.split(key)
        params = self.task.init(init_key)
        lopt_state = lopt.init_state(params, self.lopt_features)
        return params, {"lopt": lopt_state, "variant": self.task.sample(variant_key)}

    def inner_step(self, theta, params, opt_state, t, key):
        batch_key, val_key = jax.random.split(key)
        variant = opt_state["variant"]
        loss, grads = jax.value_and_grad(self.task.batch_loss)(params, variant, batch_key, "train")
        grads = lopt_tasks.finite_gradients(grads)
        params_after, lopt_state = lopt.update(
            self.lopt_theta(theta), grads, params, opt_state["lopt"]
        )
        if self.objective == "val_loss":
            loss = self.task.batch_loss(params, variant, val_key, "val")
        return params_after, {"lopt": lopt_state, "variant": variant}, loss

    def final_metrics(self, theta, params, opt_state):
        del theta
        variant = opt_state["variant"]
        metrics = {"train_loss": self.task.full_loss(params, variant, "train")}
        if self.objective == "val_loss":
            metrics["val_loss"] = self.task.full_loss(params, variant, "val")
        return metrics

    def sample_theta(self, key):
        return ravel_pytree(self.as_meta_theta(key))[0]
