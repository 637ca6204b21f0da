"""A reward model trained on preference pairs through TRL's ``RewardTrainer``.

The model is ``AutoModelForSequenceClassification`` with one output (TRL requires
``num_labels=1``): the reward of a whole conversation, read at its last token. The pairs arrive
as TRL's conversational ``prompt / chosen / rejected`` rows (``trainer.data.pairs``), the chosen
answer in the profile's format and the rejected one verbatim. We tokenize them here exactly as
TRL does (prompt + answer through the tokenizer's chat template, which the engine has set), for
one reason: TRL silently drops a pair longer than ``max_length``, while ``data.overlong_policy:
truncate`` promises to keep its start (drop and error were applied when the data was prepared).

Held-out pair accuracy (the share of held-out pairs whose chosen answer gets the higher reward)
and the mean margin are measured on the untrained head when the trainer is built and again
after training. The saved folder scores a conversation in plain transformers:
``AutoModelForSequenceClassification.from_pretrained(folder)(**tokenizer.apply_chat_template(
conversation, return_dict=True, return_tensors="pt")).logits[0, 0]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer
from trainer.methods.classify import load_sequence_classifier, logits_of
from trainer.methods.dpo import last_logged
from trainer.methods.sft import training_arguments

if TYPE_CHECKING:
    from trainer.core.context import JobContext

# What RewardTrainer logs about the training pairs (the window since the last log).
TRAIN_FIGURES = {"accuracy": "train_accuracy", "margin": "train_margin"}


class RewardOptions(MethodOptions):
    name: Literal["reward"] = Field("reward", description="A reward model (one-output sequence classifier) on chosen / rejected pairs.")
    center_rewards_coefficient: float | None = Field(
        None,
        ge=0,
        description="TRL's weight of a penalty on the rewards' mean square, keeping them near 0 "
        "(0.01 recommended); unset: none.",
    )


def pair_ids(tokenizer: Any, row: dict[str, Any], max_length: int) -> dict[str, list[int]]:
    """A conversational pair -> TRL's ``chosen_ids`` / ``rejected_ids``, each cut to its first
    ``max_length`` tokens (only pairs kept under ``overlong_policy: truncate`` are longer)."""
    out = {}
    for side in ("chosen", "rejected"):
        messages = [*row["prompt"], *row[side]]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        out[f"{side}_ids"] = list(ids[:max_length])
    return out


def pair_figures(model: Any, pairs: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, float | None]:
    """Accuracy (share of pairs with reward(chosen) > reward(rejected); a tie is not a win) and
    mean margin (reward(chosen) - reward(rejected)) over tokenized pairs."""
    if not pairs:
        return {"accuracy": None, "margin": None}
    chosen = logits_of(model, [p["chosen_ids"] for p in pairs], pad_token_id)[:, 0]
    rejected = logits_of(model, [p["rejected_ids"] for p in pairs], pad_token_id)[:, 0]
    margins = chosen - rejected
    return {"accuracy": float((margins > 0).float().mean()), "margin": float(margins.mean())}


class Reward(Method):
    name = "reward"
    Options = RewardOptions
    data_shape = "preference"
    generates = False

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.heldout: list[dict[str, list[int]]] = []
        self.before: dict[str, float | None] = {}

    def load_model(self, context: JobContext) -> Any:
        return load_sequence_classifier(context, 1)

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from dataclasses import replace

        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        options: RewardOptions = self.options  # type: ignore[assignment]
        tokenizer, max_length = context.tokens.tokenizer, context.config.data.max_length
        train = Dataset.from_list([pair_ids(tokenizer, row, max_length) for row in context.data.train])
        args = training_arguments(
            context,
            RewardConfig,
            max_length=max_length,  # nothing is longer now, so TRL's silent filter drops nothing
            center_rewards_coefficient=options.center_rewards_coefficient,
        )
        tokenized = replace(context, data=replace(context.data, train=train))  # what make_trainer trains on
        trainer = make_trainer(RewardTrainer, tokenized, model, args, callbacks)
        # The untrained head, for the before / after comparison (a resumed run measures the
        # starting model too: the head is seeded, so it is the same one).
        self.heldout = [pair_ids(tokenizer, row, max_length) for row in context.data.heldout]
        self.before = pair_figures(model, self.heldout, tokenizer.pad_token_id)
        return trainer

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        after = pair_figures(trainer.model, self.heldout, context.tokens.tokenizer.pad_token_id)
        figures = {
            "heldout_pairs": len(self.heldout),
            "heldout_accuracy_before": self.before.get("accuracy"),
            "heldout_accuracy": after["accuracy"],
            "heldout_margin_before": self.before.get("margin"),
            "heldout_margin": after["margin"],
        }
        trained = last_logged(trainer, tuple(TRAIN_FIGURES))
        figures.update({TRAIN_FIGURES[key]: value for key, value in trained.items()})

        def show(value: float | None, form: str) -> str:
            return "n/a" if value is None else format(value, form)

        print(
            f"held-out pairs ranked right: {show(figures['heldout_accuracy_before'], '.1%')} before training -> "
            f"{show(figures['heldout_accuracy'], '.1%')} after; mean margin "
            f"{show(figures['heldout_margin_before'], '.3f')} -> {show(figures['heldout_margin'], '.3f')} "
            f"({len(self.heldout)} pairs)",
            file=context.console,
            flush=True,
        )
        return figures
