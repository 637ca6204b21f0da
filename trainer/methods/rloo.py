"""REINFORCE leave-one-out through TRL's ``RLOOTrainer``, on prompts and rewards.

Like GRPO (``trainer.methods.grpo``) it samples a group of completions per prompt, but each
completion's baseline is the mean reward of the *other* completions of its prompt, and the KL
to the reference (``beta``, 0.05 by default as in TRL) enters the reward rather than the loss.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.methods.rl import RLMethod, RLOptions


class RLOOOptions(RLOptions):
    name: Literal["rloo"] = Field("rloo", description="REINFORCE leave-one-out on prompts and rewards.")
    beta: float = Field(0.05, ge=0, description="KL coefficient against the reference (the starting model), in the reward; 0: none loaded.")
    normalize_advantages: bool = Field(False, description="Whiten advantages over each generation batch.")
    epsilon: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
    num_iterations: int = Field(1, ge=1, description="Updates per batch of generations.")


class RLOO(RLMethod):
    name = "rloo"
    Options = RLOOOptions
    trl_names = ("RLOOTrainer", "RLOOConfig")

    def extra_arguments(self) -> dict[str, Any]:
        options: RLOOOptions = self.options  # type: ignore[assignment]
        return {
            "normalize_advantages": options.normalize_advantages,
            "epsilon": options.epsilon,
            "num_iterations": options.num_iterations,
        }
