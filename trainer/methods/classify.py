"""A sequence-classification head trained on ``text / label`` rows (transformers' ``Trainer``).

TRL has no classification trainer, and needs none: ``AutoModelForSequenceClassification`` puts a
linear head (``score``) on the model's last non-padding token and computes the cross-entropy
itself, so transformers' ``Trainer`` with a padding collator trains it. The data arrives
tokenized as plain text with class ids (``trainer.data.labeled_data``); the class names become
the saved model's ``id2label`` / ``label2id``, so the folder classifies in plain transformers.

Held-out accuracy is measured on the untrained head when the trainer is built and again after
training; both go to the result and the status (``final_metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer
from trainer.methods.sft import training_arguments

if TYPE_CHECKING:
    from trainer.core.context import JobContext

SCORING_BATCH = 32  # sequences per forward pass when scoring held-out rows


class ClassifyOptions(MethodOptions):
    name: Literal["classify"] = Field(
        "classify", description="A sequence-classification head on text / label rows (classes: the sorted labels)."
    )


def load_sequence_classifier(context: JobContext, num_labels: int, **config_overrides: Any) -> Any:
    """``AutoModelForSequenceClassification`` from ``context.model_folder`` on the job's device
    and precision, with ``num_labels`` outputs and the tokenizer's pad token (the head reads the
    last token that is not padding). A causal LM folder gets a new head, seeded by
    ``hyperparams.seed`` so a run and its resume start from the same one."""
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from trainer.models.loading import torch_dtype

    config = context.config
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(context.precision),
        "num_labels": num_labels,
        "pad_token_id": context.tokens.tokenizer.pad_token_id,
        **config_overrides,
    }
    if config.model.attn_implementation:
        kwargs["attn_implementation"] = config.model.attn_implementation
    set_seed(config.hyperparams.seed)
    # A causal LM checkpoint has no score head and an lm_head the classifier does not use; TRL's
    # context manager silences exactly those two expected load warnings.
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(
            context.model_folder, trust_remote_code=config.model.trust_remote_code, **kwargs
        )
    return model.to(context.device)


def logits_of(model: Any, sequences: list[list[int]], pad_token_id: int) -> Any:
    """The model's logits (float32, on the CPU) for token sequences, right-padded in batches;
    the model's train / eval mode is left as it was."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(sequences), SCORING_BATCH):
                chunk = sequences[start : start + SCORING_BATCH]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, seq in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def heldout_accuracy(model: Any, rows: list[dict[str, Any]], pad_token_id: int) -> float | None:
    """Share of held-out rows whose highest logit is their label (None without held-out rows)."""
    if not rows:
        return None
    predicted = logits_of(model, [r["input_ids"] for r in rows], pad_token_id).argmax(-1).tolist()
    return sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


class Classify(Method):
    name = "classify"
    Options = ClassifyOptions
    data_shape = "labeled"
    generates = False

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.accuracy_before: float | None = None

    def load_model(self, context: JobContext) -> Any:
        classes = context.data.classes
        return load_sequence_classifier(
            context,
            len(classes),
            id2label=dict(enumerate(classes)),
            label2id={name: index for index, name in enumerate(classes)},
        )

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        tokenizer = context.tokens.tokenizer
        args = training_arguments(context, TrainingArguments)
        trainer = make_trainer(Trainer, context, model, args, callbacks, data_collator=DataCollatorWithPadding(tokenizer))
        # The untrained head, for the before / after comparison (a resumed run measures the
        # starting model too: the head is seeded, so it is the same one).
        self.accuracy_before = heldout_accuracy(model, context.data.heldout, tokenizer.pad_token_id)
        return trainer

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        rows = context.data.heldout
        after = heldout_accuracy(trainer.model, rows, context.tokens.tokenizer.pad_token_id)
        print(
            f"held-out accuracy: {_percent(self.accuracy_before)} before training -> {_percent(after)} after "
            f"({len(rows)} rows, {len(context.data.classes)} classes)",
            file=context.console,
            flush=True,
        )
        return {
            "heldout_rows": len(rows),
            "heldout_accuracy_before": self.accuracy_before,
            "heldout_accuracy": after,
            "classes": list(context.data.classes),
        }
