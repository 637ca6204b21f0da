"""Rewards read from a local sequence-classification model: a reward model, any classifier.

``reward_model`` is a folder saved by this engine's ``reward`` method (one output, trained on
preference pairs): it scores the conversation, prompt and completion, through the folder's own
chat template, exactly as the reward method trained and documents it. ``classifier`` reads one
label's probability from any classifier folder; ``toxicity`` is a classifier whose label is the
toxic one, inverted so that cleaner text scores higher.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Row
from trainer.rewards.models import ModelOptions, ModelReward, label_names, read_config


class SequenceScorer(ModelReward):
    """Loads ``AutoModelForSequenceClassification`` + tokenizer once; :meth:`logits` runs
    texts through it in batches (float32 lists, on the CPU)."""

    truncation_side = "right"

    def load(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        tokenizer = self.load_tokenizer()
        tokenizer.truncation_side = self.truncation_side
        return tokenizer, self.load_model(AutoModelForSequenceClassification, tokenizer)

    def logits(self, texts: list[str], add_special_tokens: bool = True) -> list[list[float]]:
        import torch

        tokenizer, model = self.ensure_loaded()
        out: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.options.max_length,
                    add_special_tokens=add_special_tokens,
                    return_tensors="pt",
                ).to(model.device)
                out += model(**batch).logits.float().cpu().tolist()
        return out


class RewardModelOptions(ModelOptions):
    pass


class RewardModel(SequenceScorer):
    """The logit of a one-output reward model (``method: reward``) for prompt + completion:
    unbounded, higher is better; a reward model's scale is arbitrary, so ``post`` with
    ``ema_normalize`` or ``normalize`` usually belongs with it.

    The conversation is the prompt's messages (``row["prompt_messages"]`` when the data is
    conversational, else one user turn holding the prompt) plus the completion as the assistant
    turn, rendered by the folder's chat template, which holds the profile's system prompt as
    its default. A tokenizer without a chat template scores ``prompt + completion`` as plain
    text, as TRL does. Long conversations lose their start, never the answer (left truncation).
    """

    name = "reward_model"
    Options = RewardModelOptions
    truncation_side = "left"

    @classmethod
    def check(cls, options: Any) -> list[str]:
        config = read_config(options.model_path)
        if config is not None and len(label_names(config)) != 1:
            return [f"model_path: {options.model_path} has {len(label_names(config))} outputs; a reward model has one (train it with method 'reward', or use 'classifier')"]
        return []

    def score_many(self, prompts: list[str], completions: list[str], references: list[str | None], rows: list[Row]) -> list[float]:
        tokenizer, _ = self.ensure_loaded()
        if tokenizer.chat_template is None:
            return [row[0] for row in self.logits([p + c for p, c in zip(prompts, completions)])]
        texts = []
        for prompt, completion, row in zip(prompts, completions, rows):
            messages = list(row.get("prompt_messages") or [{"role": "user", "content": prompt}])
            messages.append({"role": "assistant", "content": completion})
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
        # The template already wrote every special token the conversation has.
        return [row[0] for row in self.logits(texts, add_special_tokens=False)]


class ClassifierOptions(ModelOptions):
    label: str | int | None = Field(
        None,
        description="The label whose score is the reward: a name from the model's id2label or an "
        "index. Default: the only output of a one-output model, index 1 of a two-label one.",
    )
    output: Literal["probability", "logit"] = Field("probability", description="The label's probability (0..1) or raw logit.")
    activation: Literal["auto", "softmax", "sigmoid"] = Field(
        "auto", description="How logits become probabilities; auto: sigmoid for multi-label or one-output models, else softmax."
    )
    invert: bool = Field(False, description="Reward 1 - probability (the label is what to avoid).")
    text: Literal["completion", "prompt_completion"] = Field("completion", description="Classify the completion, or prompt + completion.")


class Classifier(SequenceScorer):
    """One label's probability (range 0..1; ``invert``: 1 - that) or logit (unbounded) under
    any local sequence-classification folder. The label is checked against the folder's
    ``config.json`` before anything loads. An empty text has nothing to classify (a decoder's
    tokenizer gives it no token at all) and scores 0.0, inverted or not, so that saying nothing
    is never the way to a high reward; with ``output: logit`` it gets None (does not apply)."""

    name = "classifier"
    Options = ClassifierOptions
    default_labels: tuple[str, ...] = ()

    @classmethod
    def label_index(cls, options: Any, labels: list[str]) -> int | str:
        """The label's index, or a sentence saying why there is none."""
        known = ", ".join(labels)
        if isinstance(options.label, int):
            if 0 <= options.label < len(labels):
                return options.label
            return f"label: index {options.label} is out of range; {options.model_path} has {len(labels)} labels ({known})"
        if isinstance(options.label, str):
            wanted = [options.label]
        elif cls.default_labels:
            wanted = list(cls.default_labels)
        elif len(labels) <= 2:
            return len(labels) - 1
        else:
            return f"label: {options.model_path} has {len(labels)} labels ({known}); say which one is the reward"
        folded = [name.casefold() for name in labels]
        for name in wanted:
            if name in labels:
                return labels.index(name)
            if name.casefold() in folded:
                return folded.index(name.casefold())
        if options.label is None:
            return f"label: {options.model_path} has no label named {' or '.join(map(repr, wanted))} (its labels: {known}); set label"
        return f"label: {options.label!r} is not a label of {options.model_path} (its labels: {known})"

    @classmethod
    def check(cls, options: Any) -> list[str]:
        config = read_config(options.model_path)
        if config is None:
            return []
        problems = []
        found = cls.label_index(options, label_names(config))
        if isinstance(found, str):
            problems.append(found)
        if options.invert and options.output == "logit":
            problems.append("invert: only a probability can be inverted; set output to probability")
        return problems

    def load(self) -> Any:
        tokenizer, model = super().load()
        index = self.label_index(self.options, label_names(model.config.to_dict()))
        assert isinstance(index, int), index  # check() said so before loading
        self.index = index
        self.sigmoid = self.options.activation == "sigmoid" or (
            self.options.activation == "auto"
            and (model.config.problem_type == "multi_label_classification" or model.config.num_labels == 1)
        )
        return tokenizer, model

    def score_many(self, prompts: list[str], completions: list[str], references: list[str | None], rows: list[Row]) -> list[float]:
        import torch

        texts = completions if self.options.text == "completion" else [p + c for p, c in zip(prompts, completions)]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        out: list[float | None] = [None if self.options.output == "logit" else 0.0] * len(texts)
        if not todo:
            return out
        logits = torch.tensor(self.logits([texts[i] for i in todo]))
        if self.options.output == "logit":
            values = logits[:, self.index]
        else:
            probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
            values = 1 - probs[:, self.index] if self.options.invert else probs[:, self.index]
        for i, value in zip(todo, values.tolist()):
            out[i] = value
        return out


class ToxicityOptions(ClassifierOptions):
    invert: bool = Field(True, description="Reward 1 - p(toxic): cleaner text scores higher.")


class Toxicity(Classifier):
    """A local toxicity classifier (e.g. a saved unitary/toxic-bert or s-nlp/roberta_toxicity_classifier):
    ``1 - p(toxic)`` by default, range 0..1, higher is cleaner. The label defaults to the one
    named "toxic" or "toxicity" (any case); ``label`` names another. Multi-label models
    (toxic-bert) get a sigmoid, as they were trained."""

    name = "toxicity"
    Options = ToxicityOptions
    default_labels = ("toxic", "toxicity")


CLASSIFIER_REWARDS = (RewardModel, Classifier, Toxicity)
