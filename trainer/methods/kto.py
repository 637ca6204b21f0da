"""Kahneman-Tversky optimisation through TRL's ``KTOTrainer``, on unpaired examples.

Each example is one completion marked desirable or not (``trainer.data.unpaired_data``, which
also splits preference pairs into such examples), as TRL's conversational ``prompt / completion /
label`` rows; TRL renders them with the tokenizer's chat template, which the engine has set to
the one the job trains with. The reference model is the starting model (TRL loads a frozen copy
from the same folder) unless ``reference_model`` names another local folder. KTO moved from
``trl.experimental.kto`` to ``trl`` itself in TRL 1.x; the old path only warns and forwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions, PathText
from trainer.methods.base import Method, make_trainer, reference_model
from trainer.methods.dpo import last_logged
from trainer.methods.sft import training_arguments, unpad_preference_batches

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext

# TRL 1.16's KTO losses (KTOConfig.loss_type); a test checks this list against TRL's own.
KTOLoss = Literal["kto", "apo_zero_unpaired"]
# The losses that estimate KTO's KL term from mismatched prompt / completion pairs in a batch.
KL_LOSSES = ("kto",)
KTO_FIGURES = ("kl", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")


class KTOOptions(MethodOptions):
    name: Literal["kto"] = Field("kto", description="Kahneman-Tversky optimisation on completions marked desirable or not.")
    beta: float = Field(0.1, gt=0, description="KTO temperature: how far the policy may move from the reference.")
    desirable_weight: float = Field(
        1.0, gt=0, description="Weight of the desirable examples' loss; raise it when they are the fewer."
    )
    undesirable_weight: float = Field(
        1.0, gt=0, description="Weight of the undesirable examples' loss; raise it when they are the fewer."
    )
    loss_type: KTOLoss = Field("kto", description="TRL's KTO loss: kto, or apo_zero_unpaired (no KL term).")
    reference_model: PathText | None = Field(
        None, description="Local model folder of the reference policy; unset: the starting model."
    )


class KTO(Method):
    name = "kto"
    Options = KTOOptions
    data_shape = "unpaired"

    @classmethod
    def keeps_reference(cls, options: Any, config: TrainerConfig) -> bool:
        return config.model.lora is None  # with LoRA, TRL's reference is the base with the adapters off
    refine_stage = {"max_steps": 100, "learning_rate": 5e-4}

    def check(self, config: TrainerConfig) -> list[str]:
        options: KTOOptions = self.options  # type: ignore[assignment]
        batch_size = config.hyperparams.batch_size
        if options.loss_type in KL_LOSSES and batch_size < 2:
            # TRL refuses it too, but only once the model is loaded, and with a traceback: the KL
            # term pairs each prompt with another example's completion in the same (per-device)
            # batch, so one example has none.
            return [
                f"hyperparams.batch_size: expected at least 2 for method kto with loss_type {options.loss_type!r} "
                f"(its KL estimate pairs each prompt with another example's completion in the same batch); "
                f"got {batch_size}. Raise it, or set method.loss_type to apo_zero_unpaired, which has no KL term"
            ]
        return []

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from trl import KTOConfig, KTOTrainer

        options: KTOOptions = self.options  # type: ignore[assignment]
        args = training_arguments(
            context,
            KTOConfig,
            beta=options.beta,
            desirable_weight=options.desirable_weight,
            undesirable_weight=options.undesirable_weight,
            loss_type=options.loss_type,
            max_length=context.config.data.max_length,
        )
        trainer = make_trainer(KTOTrainer, context, model, args, callbacks, ref_model=reference_model(context, options.reference_model))
        unpad_preference_batches(context, model, trainer.ref_model)  # as DPO's (trainer.methods.dpo)
        return trainer

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        return last_logged(trainer, KTO_FIGURES)
