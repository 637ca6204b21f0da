"""Previews: answer fixed probe prompts with the model as it is now, and judge the answers.

Generation uses the profile's stop sequences and penalties, so a preview shows what inference
will really produce; outputs are recorded verbatim (cut only at a stop sequence, which is where
generation would have ended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.training_status import Example as PreviewRecord
from trainer.config.schema import InferenceSection
from trainer.data.prepare import Probe
from trainer.profiles import DataProfile


@dataclass
class PreviewSummary:
    records: list[PreviewRecord]

    @property
    def format_ok(self) -> int:
        return sum(r.format_ok for r in self.records)

    @property
    def correct(self) -> int:
        return sum(bool(r.matches) for r in self.records)


def cut_at_stops(text: str, stops: list[str]) -> str:
    """Text up to the first stop sequence (generate's stop_strings keeps the stop itself)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


class PreviewBackend:
    """Generates answers to probes in batches, checks them against the profile."""

    def __init__(
        self,
        tokenizer: Any,
        profile: DataProfile,
        probes: list[Probe],
        settings: InferenceSection,
        chat_template: str,
        stop_sequences: list[str],
        end_tokens: list[str],
    ):
        self.tokenizer = tokenizer
        self.profile = profile
        self.probes = probes
        self.settings = settings
        self.chat_template = chat_template
        self.stops = stop_sequences
        # Decoded with special tokens kept (a generated <think> must show), then cut where
        # generation ended: the first end-of-turn / padding token or stop sequence.
        self.cuts = list(dict.fromkeys([*stop_sequences, *end_tokens]))
        from core.logit_penalty import build_logits_processors

        self.processors = build_logits_processors(
            tokenizer, [(spec.strings, spec.penalty) for spec in profile.generation_penalties()]
        )

    def prompt_text(self, probe: Probe) -> str:
        return self.tokenizer.apply_chat_template(
            probe.messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def generate(self, model: Any, prompts: list[str]) -> list[str]:
        import torch

        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # decoder-only batches pad on the left
        try:
            batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        finally:
            tok.padding_side = side
        sampling = self.settings.temperature > 0
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=self.settings.max_new_tokens,
                    do_sample=sampling,
                    temperature=self.settings.temperature if sampling else None,
                    top_p=self.settings.top_p if sampling else None,
                    top_k=None,
                    repetition_penalty=self.settings.repetition_penalty,
                    logits_processor=self.processors,
                    stop_strings=[s for s in self.stops if s] or None,
                    tokenizer=tok,
                    pad_token_id=tok.pad_token_id,
                )
        finally:
            model.train(was_training)
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        texts = tok.batch_decode(new_tokens, skip_special_tokens=False)
        return [cut_at_stops(text, self.cuts) for text in texts]

    def run(self, model: Any, step: int, loss: float | None = None, limit: int | None = None) -> PreviewSummary:
        probes = self.probes[: limit if limit is not None else self.settings.num_probes]
        records = []
        batch_size = 16
        for start in range(0, len(probes), batch_size):
            chunk = probes[start : start + batch_size]
            outputs = self.generate(model, [self.prompt_text(p) for p in chunk])
            for probe, output in zip(chunk, outputs):
                verdict = self.profile.check_answer(output, probe.golden)
                records.append(
                    PreviewRecord(
                        step=step,
                        prompt=probe.messages[-1]["content"],
                        golden=probe.golden,
                        model_output=output,
                        matches=verdict.correct,
                        format_ok=verdict.format_ok,
                        loss=loss,
                    )
                )
        return PreviewSummary(records)
