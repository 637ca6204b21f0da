"""Offline rewards for RL methods (GRPO, RLOO, PPO): a registry, composition, post-processing.

A reward spec is JSON, as the seed system wrote it::

    {"type": "weighted_sum", "components": [
        {"type": "format", "weight": 1.0},
        {"type": "bleu", "weight": 0.5, "post": [{"type": "clip", "min": 0, "max": 1}]}]}

- :func:`reward_problems` says everything wrong with a spec (dotted keys, did-you-mean,
  missing packages, missing model folders) without loading a model or importing torch;
- :func:`build_reward` builds the tree: ``node.score(prompts, completions, references, rows)``
  scores a batch, ``node.score_detailed(...)`` adds each component's values;
- :func:`trl_reward_funcs` / :func:`trl_reward_func` hand it to TRL's trainers.

Every reward runs offline, on installed packages or on model folders on disk. Importing this
package imports no heavy library: each reward imports its own on first use.
"""

from trainer.rewards.base import Requirement, Reward, RewardContext, RewardError, RewardOptions
from trainer.rewards.compose import Component, LeafNode, RewardNode, RewardScores, WeightedSum
from trainer.rewards.post import POSTPROCESSORS, PostProcessor
from trainer.rewards.profile_rewards import DEFAULT_SPEC, profile_default_spec
from trainer.rewards.registry import REWARDS, UnknownRewardError, register_reward, reward_class
from trainer.rewards.spec import RewardSpecError, build_reward, reward_problems
from trainer.rewards.trl_adapter import TRLRewardFunction, trl_reward_func, trl_reward_funcs

__all__ = [
    "DEFAULT_SPEC",
    "POSTPROCESSORS",
    "REWARDS",
    "Component",
    "LeafNode",
    "PostProcessor",
    "Requirement",
    "Reward",
    "RewardContext",
    "RewardError",
    "RewardNode",
    "RewardOptions",
    "RewardScores",
    "RewardSpecError",
    "TRLRewardFunction",
    "UnknownRewardError",
    "WeightedSum",
    "build_reward",
    "profile_default_spec",
    "register_reward",
    "reward_class",
    "reward_problems",
    "trl_reward_func",
    "trl_reward_funcs",
]
