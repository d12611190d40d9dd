"""Inner tasks a learned optimizer trains: small MLP and CNN classifiers on the 8×8 digits, and
random quadratics. No downloads: the digits ship with scikit-learn.

Each task is a family: ``sample(key)`` draws a task variant (for the classifiers a label
permutation of the digits and the layer widths, for a quadratic its target), ``init(key)``
fresh parameters, and ``batch_loss`` the loss of a minibatch. Every family has a
**training** distribution (what the learned optimizer is meta-trained on) and a disjoint
**held-out** one used only for evaluation: another width and depth, and variants and
initializations drawn from another seed stream (``HELDOUT_STREAM``).

* ``mlp_digits``: 64-32-10 ReLU MLP, minibatches of 128 (held out: 64-64-32-10).
* ``cnn_digits``: three 3×3 convs of up to 8, 16 and 16 channels (the second and third with
  stride 2), global average pool, dense 10. Training variants draw each conv's width
  uniformly from half its channels to all of them (the rest are masked to 0, so a population
  of varied widths is still one batched computation); held out: 12, 24, 24 and 24 channels, a
  fourth conv; ``heldout_mlp``: the 64-32-10 MLP. The convolutions are patch extraction plus one
  matmul (:func:`conv3x3`), so a population of CNNs (vmapped over particles) is one batched
  matmul per layer: ``benchmarks/lopt_cnn_speed.py`` measures it against ``lax.conv``.
* ``quadratic``: loss Σ(p − c)², c ~ N(0, I₁₀), p₀ ~ N(0, I) (held out: 20 dimensions).

References: TASKS.md, "Learned optimizer" (Metz et al. 2019; learned_optimization).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pes_rl.envs import unrolled
from pes_rl.meta import data

Params = Any
TASKS = ("mlp_digits", "cnn_digits", "quadratic")
# What ``pes-rl lopt-eval`` compares on, per task family.
EVAL_DISTRIBUTIONS = {
    "mlp_digits": ("train", "heldout"),
    "cnn_digits": ("train", "heldout", "heldout_mlp"),
    "quadratic": ("train", "heldout"),
}
HELDOUT_STREAM = 1  # held-out keys are fold_in(key, 1): a seed stream training never draws from
ARCHITECTURES = {
    ("mlp_digits", "train"): (32,),
    ("mlp_digits", "heldout"): (64, 32),
    ("cnn_digits", "train"): (8, 16, 16),
    ("cnn_digits", "heldout"): (12, 24, 24, 24),
    ("cnn_digits", "heldout_mlp"): (32,),
    ("quadratic", "train"): (10,),
    ("quadratic", "heldout"): (20,),
}
# Distributions whose variants draw each conv's width in [⌈channels/2⌉, channels].
VARIED_WIDTHS = (("cnn_digits", "train"),)


class InnerTask(NamedTuple):
    """A task family's pure functions."""

    sample: Callable[[jax.Array], jax.Array]  # key -> task variant
    init: Callable[[jax.Array], Params]  # key -> fresh parameters
    batch_loss: Callable[[Params, jax.Array, jax.Array, str], jax.Array]  # (p, variant, key, split)
    full_loss: Callable[
        [Params, jax.Array, str], jax.Array
    ]  # (params, variant, split): whole split
    name: str
    # (params, variant, split) -> [loss, accuracy] of the whole split from one forward pass;
    # None for the quadratic (no labels)
    full_metrics: Callable[[Params, jax.Array, str], jax.Array] | None = None


def finite_gradients(grads: Any) -> Any:
    """Non-finite gradient entries as 0: the rule every optimizer of an inner task trains by,
    learned (``LearnedOptimizer.inner_step``) or tuned (``pes-rl lopt-eval``'s baselines)."""
    return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)


def make(
    task: str, distribution: str = "train", batch_size: int = 128, dataset: str = "digits"
) -> InnerTask:
    """The task family ``task`` (one of ``TASKS``) under ``distribution`` (train, heldout, and
    for ``cnn_digits`` heldout_mlp: the keys of ``ARCHITECTURES``)."""
    if task not in TASKS:
        raise ValueError(f"env.kwargs.task must be one of {list(TASKS)}, got {task!r}")
    if (task, distribution) not in ARCHITECTURES:
        choices = [d for t, d in ARCHITECTURES if t == task]
        raise ValueError(
            f"env.kwargs.distribution must be one of {choices} for {task}, got {distribution!r}"
        )
    sizes = ARCHITECTURES[task, distribution]
    stream = 0 if distribution == "train" else HELDOUT_STREAM
    if task == "quadratic":
        family = (*_quadratic(sizes[0]), None)
    else:
        if task == "cnn_digits" and distribution != "heldout_mlp":
            network = _cnn(sizes, varied_widths=(task, distribution) in VARIED_WIDTHS)
        else:
            network = _mlp(sizes)
        family = _classifier(data.load(dataset), *network, batch_size)
    sample, init, batch_loss, full_loss, full_metrics = family
    return InnerTask(  # jitted: eager, a CNN's initialization takes seconds of op dispatch
        sample=jax.jit(lambda key: sample(jax.random.fold_in(key, stream))),
        init=jax.jit(lambda key: init(jax.random.fold_in(key, stream))),
        batch_loss=batch_loss,
        full_loss=full_loss,
        name=f"{task}/{distribution}",
        full_metrics=full_metrics,
    )


def _quadratic(dim: int):
    def sample(key):
        return jax.random.normal(key, (dim,))

    def init(key):
        return {"p": jax.random.normal(key, (dim,))}

    def loss(params, target, key=None, split="train"):
        del key, split  # deterministic: one loss per task
        return jnp.sum(jnp.square(params["p"] - target))

    return sample, init, loss, lambda params, target, split: loss(params, target)


def _classifier(dataset: data.Dataset, apply, init, sample_widths, batch_size: int):
    """Cross-entropy (and accuracy) of ``apply(params, x, widths)`` on the digits; a task variant
    is a label permutation and the layer widths ``sample_widths`` draws."""
    unrolled.check_count("batch_size", batch_size)
    num_classes = dataset.num_classes

    def sample(key):
        return {
            "permutation": jax.random.permutation(key, num_classes),
            "widths": sample_widths(jax.random.fold_in(key, 1)),
        }

    def split_arrays(split):
        return getattr(dataset, f"{split}_x"), getattr(dataset, f"{split}_y")

    def loss(params, variant, x, y):
        logits = apply(params, x, variant["widths"])
        return unrolled.cross_entropy(logits, variant["permutation"][y])

    def batch_loss(params, variant, key, split="train"):
        return loss(params, variant, *unrolled.minibatch(key, *split_arrays(split), batch_size))

    def full_loss(params, variant, split="train"):
        return loss(params, variant, *split_arrays(split))

    def full_metrics(params, variant, split="train"):
        x, y = split_arrays(split)
        logits, labels = apply(params, x, variant["widths"]), variant["permutation"][y]
        loss = unrolled.cross_entropy(logits, labels)
        return jnp.stack([loss, unrolled.accuracy(logits, labels)])

    return sample, init, batch_loss, full_loss, full_metrics


def _mlp(hidden_sizes):
    """A ReLU MLP of fixed ``hidden_sizes`` (its widths in the variant are those sizes)."""
    sizes = (64, *hidden_sizes, 10)

    def apply(params, x, widths):
        del widths  # fixed
        return unrolled.mlp_logits(params, x)

    def sample_widths(key):
        del key
        return jnp.asarray(hidden_sizes, jnp.int32)

    return apply, lambda key: unrolled.init_mlp(key, sizes), sample_widths


def conv3x3(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """``lax.conv`` with SAME padding, NHWC × HWIO, as 9 shifted slices and one matmul.

    Vmapped over particles (each with its own ``w``) this is one batched matmul, where a
    vmapped ``lax.conv`` becomes a grouped convolution, ~15× slower on CPU at N = 32.
    """
    _, height, width, _ = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + 3 - height, 0)
    pad_w = max((out_w - 1) * stride + 3 - width, 0)
    x = jnp.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    patches = jnp.concatenate(
        [
            x[
                :,
                dy : dy + stride * (out_h - 1) + 1 : stride,
                dx : dx + stride * (out_w - 1) + 1 : stride,
            ]
            for dy in range(3)
            for dx in range(3)
        ],
        axis=-1,
    )  # [B, out_h, out_w, 9·C], ordered as w's (dy, dx, c)
    return patches @ w.reshape(-1, w.shape[-1])


def cnn_features(
    params: Params, x: jax.Array, widths: jax.Array, conv=conv3x3, varied_widths: bool = True
) -> jax.Array:
    """[examples, channels]: a ``cnn_digits`` CNN's last conv layer, ReLU'd, masked to the
    variant's ``widths`` (``varied_widths``) and averaged over space: what its dense layer
    reads."""
    x = x.reshape(-1, 8, 8, 1)
    for index, layer in enumerate(params[:-1]):
        x = jax.nn.relu(conv(x, layer["w"], 1 if index == 0 else 2) + layer["b"])
        if varied_widths:  # fixed widths are all the channels: nothing to mask
            x = x * (jnp.arange(x.shape[-1]) < widths[index])
    return jnp.mean(x, axis=(1, 2))


def _cnn(channels, conv=conv3x3, varied_widths: bool = False):
    """3×3 convs (the second and later with stride 2), global average pool, dense 10.

    Its widths are all the channels, or (``varied_widths``) drawn uniformly in
    [⌈channels/2⌉, channels] per conv, the channels past a variant's width masked to 0.
    ``conv(x, w, stride)``: :func:`conv3x3`, or another convolution with its contract
    (``benchmarks/lopt_cnn_speed.py`` passes ``lax.conv``)."""
    full = jnp.asarray(channels, jnp.int32)

    def sample_widths(key):
        if not varied_widths:
            return full
        return jax.random.randint(key, full.shape, (full + 1) // 2, full + 1)

    def init(key):
        keys = jax.random.split(key, len(channels) + 1)
        layers, fan_in = [], 1
        for layer_key, width in zip(keys[:-1], channels, strict=False):
            w = jax.random.normal(layer_key, (3, 3, fan_in, width)) * np.sqrt(2.0 / (9 * fan_in))
            layers.append({"w": w, "b": jnp.zeros(width)})
            fan_in = width
        dense = jax.random.normal(keys[-1], (fan_in, 10)) * np.sqrt(1.0 / fan_in)
        return layers + [{"w": dense, "b": jnp.zeros(10)}]

    def apply(params, x, widths):
        features = cnn_features(params, x, widths, conv, varied_widths)
        return features @ params[-1]["w"] + params[-1]["b"]

    return apply, init, sample_widths
