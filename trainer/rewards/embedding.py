"""Semantic similarity to the reference under a local embedding / encoder model.

``cosine_sts`` embeds whole texts with sentence-transformers (a saved sentence-transformers
folder keeps its own pooling; a plain Hugging Face folder gets the pooling sentence-transformers
picks for its architecture: mean for encoders, last token for decoders). ``bertscore`` matches
token embeddings greedily with the bert-score package. Both load a local folder only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.rewards.base import Requirement, Row
from trainer.rewards.models import TORCH, ModelOptions, ModelReward, read_config


def _empty(text: str) -> bool:
    return not text.strip()


class CosineOptions(ModelOptions):
    rescale: bool = Field(True, description="Map the cosine from -1..1 to 0..1 ((c + 1) / 2), as the seed system did.")


class CosineSts(ModelReward):
    """Cosine similarity of the completion's and the reference's embeddings: ``(c + 1) / 2``,
    range 0..1 (``rescale: false``: the cosine, -1..1). An empty completion or reference has
    nothing to compare and scores the lowest value (0.0, or -1.0 unscaled)."""

    name = "cosine_sts"
    Options = CosineOptions
    needs_reference = True
    requires = (*TORCH, Requirement("sentence_transformers", "sentence-transformers"))

    def load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.folder), device=self.context.device, local_files_only=True)

    def score_many(self, prompts: list[str], completions: list[str], references: list[str | None], rows: list[Row]) -> list[float]:
        lowest = 0.0 if self.options.rescale else -1.0
        todo = [i for i, (c, r) in enumerate(zip(completions, references)) if not (_empty(c) or _empty(r))]
        out = [lowest] * len(completions)
        if todo:
            model = self.ensure_loaded()
            model.max_seq_length = min(model.max_seq_length or self.options.max_length, self.options.max_length)
            encode = {"batch_size": self.batch_size, "convert_to_tensor": True, "normalize_embeddings": True, "show_progress_bar": False}
            a = model.encode([completions[i] for i in todo], **encode)
            b = model.encode([references[i] for i in todo], **encode)
            cosines = (a * b).sum(dim=-1).clamp(-1.0, 1.0).float().cpu().tolist()
            for i, c in zip(todo, cosines):
                out[i] = (c + 1) / 2 if self.options.rescale else c
        return out


class BertScoreOptions(ModelOptions):
    num_layers: int | None = Field(
        None, gt=0, description="Which hidden layer's embeddings to match (default: the last). BERTScore's "
        "published layer choices (e.g. 17 for roberta-large) correlate best with people."
    )
    measure: Literal["f1", "precision", "recall"] = Field("f1", description="Which BERTScore figure.")


class BertScore(ModelReward):
    """BERTScore (the bert-score package) of the completion against the reference, F1 by
    default: a mean of cosines of contextual token embeddings, so -1..1 in principle and in
    practice about 0.7..1 for a trained encoder (1.0 for identical texts). No baseline
    rescaling: bert-score ships baselines only for hub model names. An empty completion or
    reference scores 0.0, as bert-score itself does.

    bert-score assumes a tokenizer that wraps every text in [CLS] ... [SEP] (BERT, RoBERTa,
    DeBERTa: the models it was made for) and takes a text of exactly two tokens for an empty
    one; under a tokenizer that adds no special tokens (decoder LMs such as Qwen3) a
    two-token text therefore scores 0. Use an encoder folder.
    """

    name = "bertscore"
    Options = BertScoreOptions
    needs_reference = True
    requires = (*TORCH, Requirement("bert_score", "bert-score"))

    @classmethod
    def check(cls, options: Any) -> list[str]:
        config = read_config(options.model_path)
        layers = (config or {}).get("num_hidden_layers")
        if options.num_layers is not None and isinstance(layers, int) and options.num_layers > layers:
            return [f"num_layers: {options.model_path} has {layers} layers; got {options.num_layers}"]
        return []

    def load(self) -> Any:
        from bert_score import BERTScorer

        layers = self.options.num_layers or (read_config(self.options.model_path) or {}).get("num_hidden_layers")
        return BERTScorer(
            model_type=str(self.folder),
            num_layers=layers,
            batch_size=self.batch_size,
            device=self.context.device,
            use_fast_tokenizer=True,
        )

    def score_many(self, prompts: list[str], completions: list[str], references: list[str | None], rows: list[Row]) -> list[float]:
        todo = [i for i, (c, r) in enumerate(zip(completions, references)) if not (_empty(c) or _empty(r))]
        out = [0.0] * len(completions)
        if todo:
            scorer = self.ensure_loaded()
            # bert-score truncates at its tokenizer's model_max_length and has no option for it.
            tokenizer = scorer._tokenizer
            tokenizer.model_max_length = min(tokenizer.model_max_length, self.options.max_length)
            precision, recall, f1 = scorer.score([completions[i] for i in todo], [references[i] for i in todo])
            chosen = {"precision": precision, "recall": recall, "f1": f1}[self.options.measure]
            for i, value in zip(todo, chosen.tolist()):
                out[i] = value
        return out


EMBEDDING_REWARDS = (CosineSts, BertScore)
