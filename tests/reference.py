"""A plain-Python account of one particle's window: what both engines must reproduce."""

from __future__ import annotations


class WindowReference:
    """Feed it each step's (reward, done) in order; it splits the window like the engines."""

    def __init__(self):
        self.r_first = self.r_rest = 0.0
        self.ended, self.since_end, self.steps = False, 0, 0
        self.waiting = False  # a second episode ended: later steps are not the particle's
        self.completed: list[float] = []
        self._episode_return = 0.0

    def add(self, reward: float, done: bool) -> None:
        if self.waiting:
            return
        self.steps += 1
        self._episode_return += reward
        if self.ended:
            self.r_rest += reward
        else:
            self.r_first += reward
        self.since_end += 1
        if done:
            self.completed.append(self._episode_return)
            self.waiting = self.ended
            self.ended, self.since_end, self._episode_return = True, 0, 0.0


def assert_window_matches(window, references: list[WindowReference], check_since_end=True):
    """Checks an engine's ``Window`` against one reference per particle."""
    import numpy as np

    for i, ref in enumerate(references):
        np.testing.assert_allclose(window.reward_first[i], ref.r_first, rtol=1e-5)
        np.testing.assert_allclose(window.reward_rest[i], ref.r_rest, rtol=1e-5)
        assert bool(window.ended[i]) == ref.ended
        if ref.waiting:
            assert bool(window.waiting[i])
        if check_since_end and ref.ended:
            assert int(window.steps_since_end[i]) == ref.since_end
    completed = [r for ref in references for r in ref.completed]
    assert int(window.completed_count) == len(completed)
    np.testing.assert_allclose(window.completed_return_sum, sum(completed), rtol=1e-5)
    assert int(window.env_steps) == sum(ref.steps for ref in references)
