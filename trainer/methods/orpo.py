"""Odds-ratio preference optimisation through TRL's experimental ``ORPOTrainer``, on preference pairs.

ORPO needs no reference model: its loss is the chosen answer's language-model loss plus ``beta``
(the paper's lambda) times a log-sigmoid of the log odds ratio between the chosen and rejected
answers, so one run both teaches the answer and moves it away from the rejected one. The pairs
arrive as TRL's conversational ``prompt / chosen / rejected`` rows (``trainer.data.pairs``); TRL
renders them with the tokenizer's chat template, which the engine has set to the one the job
trains with.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer
from trainer.methods.dpo import last_logged
from trainer.methods.sft import training_arguments, unpad_preference_batches

if TYPE_CHECKING:
    from trainer.core.context import JobContext

# Where TRL 1.16 keeps the trainer. trl.experimental may move or drop it in any release; a test
# imports it from here, so an upgrade that moves it fails there, not in a user's job.
TRL_ORPO = "trl.experimental.orpo"
TESTED_TRL = "1.16"
# The figures ORPO logs that say how the preference is learned; the result keeps their last value.
ORPO_FIGURES = (
    "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
    "logps/rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen",
)  # fmt: skip


class ORPOOptions(MethodOptions):
    name: Literal["orpo"] = Field("orpo", description="Odds-ratio preference optimisation on chosen / rejected pairs; no reference model.")
    beta: float = Field(
        0.1, gt=0, description="Weight of the odds-ratio term beside the chosen answer's loss (the paper's lambda)."
    )


def experimental_trl(module: str, *names: str) -> tuple[Any, ...]:
    """``names`` from a ``trl.experimental`` module, without its "APIs are unstable" notice (the
    import path is pinned and tested here instead).

    Raises:
        ImportError: the installed TRL has no such module or name; the message says which TRL
            version this engine was tested with.
    """
    import trl
    from trl.import_utils import TRLExperimentalWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TRLExperimentalWarning)
            found = importlib.import_module(module)
        return tuple(getattr(found, name) for name in names)
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"{', '.join(names)} not found in {module} of TRL {trl.__version__} ({exc}); "
            f"this method was written for TRL {TESTED_TRL}: pip install 'trl=={TESTED_TRL}.*'"
        ) from None


class ORPO(Method):
    name = "orpo"
    Options = ORPOOptions
    data_shape = "preference"

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        config_class, trainer_class = experimental_trl(TRL_ORPO, "ORPOConfig", "ORPOTrainer")
        options: ORPOOptions = self.options  # type: ignore[assignment]
        args = training_arguments(
            context,
            config_class,
            beta=options.beta,
            max_length=context.config.data.max_length,
            remove_unused_columns=False,  # TRL's pair collator needs every column; it warns and sets it otherwise
        )
        # its collator stacks the chosen rows over the same prompts' rejected rows, as DPO's does
        unpad_preference_batches(context, model, pairs=True)
        return make_trainer(trainer_class, context, model, args, callbacks)

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        return last_logged(trainer, ORPO_FIGURES)
