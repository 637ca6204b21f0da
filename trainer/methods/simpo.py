"""Simple preference optimisation (SimPO) through TRL's experimental ``CPOTrainer`` with
``loss_type="simpo"``, on preference pairs.

SimPO needs no reference model: its reward is the length-normalised log-probability of an answer
scaled by ``beta``, and it asks the chosen answer's reward to beat the rejected one's by a margin
``simpo_gamma``. TRL implements it inside CPO; ``cpo_alpha`` weighs CPO's extra
language-model loss on the chosen answer, which plain SimPO leaves out (0, the default here;
TRL's own default, 1.0, is CPO's). The pairs arrive as for dpo (``trainer.data.pairs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer
from trainer.methods.dpo import last_logged
from trainer.methods.orpo import experimental_trl
from trainer.methods.sft import training_arguments, unpad_preference_batches

if TYPE_CHECKING:
    from trainer.core.context import JobContext

TRL_CPO = "trl.experimental.cpo"  # TRL 1.16; a test imports it from here
SIMPO_FIGURES = (
    "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
    "logps/rejected", "nll_loss",
)  # fmt: skip


class SimPOOptions(MethodOptions):
    name: Literal["simpo"] = Field("simpo", description="SimPO on chosen / rejected pairs; no reference model.")
    # The SimPO paper trains with beta 2.0 to 2.5; TRL's default, 0.1, is CPO's scale.
    beta: float = Field(2.0, gt=0, description="Scale of the length-normalised log-probability reward.")
    simpo_gamma: float = Field(
        0.5, ge=0, description="Target margin by which the chosen reward should beat the rejected one."
    )
    cpo_alpha: float = Field(
        0.0, ge=0, description="Weight of a language-model loss on the chosen answer (CPO's); 0 is plain SimPO."
    )


class SimPO(Method):
    name = "simpo"
    Options = SimPOOptions
    data_shape = "preference"
    refine_stage = {"max_steps": 100, "learning_rate": 5e-4}

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        config_class, trainer_class = experimental_trl(TRL_CPO, "CPOConfig", "CPOTrainer")
        options: SimPOOptions = self.options  # type: ignore[assignment]
        args = training_arguments(
            context,
            config_class,
            loss_type="simpo",
            beta=options.beta,
            simpo_gamma=options.simpo_gamma,
            cpo_alpha=options.cpo_alpha,
            max_length=context.config.data.max_length,
            remove_unused_columns=False,  # as for orpo: TRL's pair collator needs every column
        )
        # its collator stacks the chosen rows over the same prompts' rejected rows, as DPO's does
        unpad_preference_batches(context, model, pairs=True)
        return make_trainer(trainer_class, context, model, args, callbacks)

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        return last_logged(trainer, SIMPO_FIGURES)
