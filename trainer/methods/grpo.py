"""Group relative policy optimisation through TRL's ``GRPOTrainer``, on prompts and rewards.

For each prompt the policy samples ``num_generations`` completions; each is scored by the reward
spec (``trainer.methods.rl``), and its advantage is its reward against its group's mean (scaled
by the group's std unless ``scale_rewards`` says otherwise). No value model; a reference model
is loaded only when ``beta`` > 0. TRL logs reward, reward_std, each component's mean and std,
KL, entropy, completion lengths and clip ratios; they reach metrics.jsonl and the status file's
``method_metrics`` like every method's figures.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.methods.rl import RLMethod, RLOptions

# TRL 1.16's GRPO losses (GRPOConfig.loss_type); a test checks this list against TRL's own.
GRPOLoss = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


class GRPOOptions(RLOptions):
    name: Literal["grpo"] = Field("grpo", description="Group relative policy optimisation on prompts and rewards.")
    loss_type: GRPOLoss = Field("dapo", description="TRL's GRPO loss: dapo (default), grpo, dr_grpo, bnpo, ...")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group's reward std, the batch's, or not at all (Dr. GRPO)."
    )
    epsilon: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
    num_iterations: int = Field(1, ge=1, description="Updates per batch of generations (GRPO's mu).")


class GRPO(RLMethod):
    name = "grpo"
    Options = GRPOOptions
    trl_names = ("GRPOTrainer", "GRPOConfig")

    def extra_arguments(self) -> dict[str, Any]:
        options: GRPOOptions = self.options  # type: ignore[assignment]
        return {
            "loss_type": options.loss_type,
            "scale_rewards": options.scale_rewards,
            "epsilon": options.epsilon,
            "num_iterations": options.num_iterations,
        }
