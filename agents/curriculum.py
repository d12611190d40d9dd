"""A truncation-length curriculum (Metz et al. 2019): short windows first, growing to the full one.

The window length at outer iteration i is start + (end − start)·min(i / iterations, 1),
multiplied by a uniform jitter in [1 − jitter, 1 + jitter] and kept in [1, end]. Any
persistent estimator (tes, pes, nres, hybrid) takes it through
``agent.estimate(state, params, key, unroll_length=curriculum.length(i, key))``; the agent
runs lengths in power-of-two buckets, so the curriculum compiles a handful of scans, not one
per iteration. The trainer applies it when ``agent.curriculum`` is set.

References:
  Metz et al., "Understanding and correcting pathologies in the training of learned
  optimizers", ICML 2019, §4 (curriculum over truncation length). https://arxiv.org/abs/1810.10180
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax

from pes_rl.checks import SettingError, is_positive_int


class TruncationCurriculum(NamedTuple):
    """Window lengths growing linearly from ``start`` to ``end`` over ``iterations``."""

    start: int
    end: int
    iterations: int
    jitter: float = 0.2

    def length(self, iteration: int, key: jax.Array) -> int:
        """The window length of outer iteration ``iteration`` (a Python int; host side)."""
        progress = min(iteration / self.iterations, 1.0)
        base = self.start + (self.end - self.start) * progress
        scale = 1.0
        if self.jitter > 0:
            scale = float(jax.random.uniform(key, minval=1 - self.jitter, maxval=1 + self.jitter))
        return int(min(max(round(base * scale), 1), self.end))


def make(
    end: int, start: int = 50, iterations: int = 1000, jitter: float = 0.2
) -> TruncationCurriculum:
    """Checks the settings (``agent.curriculum.*`` in a config) and builds the curriculum."""
    for name, value in (("start", start), ("end", end), ("iterations", iterations)):
        if not is_positive_int(value):
            raise SettingError(f"{{{name}}} must be an int >= 1, got {value!r}")
    if start > end:
        raise SettingError(
            f"{{start}} ({start}) must be <= the window length it grows to ({end})"
        )
    if not isinstance(jitter, int | float) or not math.isfinite(jitter) or not 0 <= jitter < 1:
        raise SettingError(f"{{jitter}} must be in [0, 1), got {jitter!r}")
    return TruncationCurriculum(start, end, iterations, float(jitter))
