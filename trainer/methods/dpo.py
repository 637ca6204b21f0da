"""Direct preference optimisation through TRL's ``DPOTrainer``, on preference pairs.

The pairs arrive as TRL's conversational ``prompt / chosen / rejected`` rows (``trainer.data.pairs``);
TRL tokenizes them with the tokenizer's chat template, which the engine has set to the one the
job trains with. The reference model is the starting model (TRL loads a frozen copy from the
same folder) unless ``reference_model`` names another local folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions, PathText
from trainer.methods.base import Method, make_trainer, reference_model
from trainer.methods.sft import training_arguments, unpad_preference_batches

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext

# TRL 1.16's DPO losses (DPOConfig.loss_type); a test checks this list against TRL's own.
DPOLoss = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]
# The figures DPO logs that say how the preference is learned; the result keeps their last value.
DPO_FIGURES = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")


class DPOOptions(MethodOptions):
    name: Literal["dpo"] = Field("dpo", description="Direct preference optimisation on chosen / rejected pairs.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: how far the policy may move from the reference.")
    loss_type: DPOLoss = Field("sigmoid", description="TRL's DPO loss: sigmoid (DPO), ipo, hinge, robust, ...")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Robust DPO / EXO: assumed share of flipped labels.")
    reference_model: PathText | None = Field(
        None, description="Local model folder of the reference policy; unset: the starting model."
    )


def last_logged(trainer: Any, keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each of ``keys`` (train logs only)."""
    found: dict[str, float] = {}
    for entry in trainer.state.log_history:
        for key in keys:
            if key in entry:
                found[key] = entry[key]
    return found


class DPO(Method):
    name = "dpo"
    Options = DPOOptions
    data_shape = "preference"

    @classmethod
    def keeps_reference(cls, options: Any, config: TrainerConfig) -> bool:
        return config.model.lora is None  # with LoRA, TRL's reference is the base with the adapters off
    # measured: scripts/measure_dpo.py (README, "Methods")
    refine_stage = {"max_steps": 100, "learning_rate": 5e-4}

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from trl import DPOConfig, DPOTrainer

        options: DPOOptions = self.options  # type: ignore[assignment]
        args = training_arguments(
            context,
            DPOConfig,
            beta=options.beta,
            loss_type=[options.loss_type],
            label_smoothing=options.label_smoothing,
            max_length=context.config.data.max_length,
        )
        reference = reference_model(context, options.reference_model)
        trainer = make_trainer(DPOTrainer, context, model, args, callbacks, ref_model=reference)
        # TRL loads its own copy of the starting model as the reference when none is given; its
        # collator stacks the chosen rows over the same prompts' rejected rows (the pairs)
        unpad_preference_batches(context, model, trainer.ref_model, pairs=True)
        return trainer

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        return last_logged(trainer, DPO_FIGURES)
