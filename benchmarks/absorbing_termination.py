"""A Gymnasium wrapper for one experiment in docs/results-rl.md: does PES/NRES lose to ARS on
Hopper because windows that restart fallen episodes optimize the reward *rate*?

With resets inside windows, a particle that falls starts a new episode at once, so a policy that
lunges forward and falls earns as much per step as one that keeps hopping. This wrapper makes a
terminated episode absorbing instead: the particle stays where it fell with reward 0 until the
engine's clock ends the episode at the horizon, so every window credits the episodic return.
ARS's survival-bonus shift (−1 per step) is applied here, on real steps only (run with
``agent.reward_shift=0``); eval returns are then shifted returns.

    python train.py experiment=hopper_nres agent.num_particles=64 agent.top_directions=16 \\
        optimizer.lr=0.5 agent.reward_shift=0 train.seed=100 train.max_env_steps=500000 \\
        'env.wrappers=[benchmarks.absorbing_termination.AbsorbingShifted]'
"""

from __future__ import annotations

import gymnasium


class AbsorbingShifted(gymnasium.Wrapper):
    """On termination: stay put with reward 0 (never terminated); reward − 1 on real steps."""

    def reset(self, **kwargs):
        self.absorbed = None
        return self.env.reset(**kwargs)

    def step(self, action):
        if self.absorbed is not None:
            return self.absorbed, 0.0, False, False, {}
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated:
            self.absorbed = obs
        return obs, reward - 1.0, False, truncated, info
