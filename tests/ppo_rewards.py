"""Trivial rewards for the PPO tests (tests/test_ppo.py), named as ``python:ppo_rewards:<function>``
(tests/ is on sys.path): behaviours a policy can learn in a few dozen steps on the tiny model."""

from __future__ import annotations


def short_answer(prompt, completion, reference, row, limit: int = 40):
    """1.0 for an empty answer, falling linearly to 0.0 at ``limit`` characters and beyond."""
    return max(0.0, 1.0 - len(completion) / limit)
