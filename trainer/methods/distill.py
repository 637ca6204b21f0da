"""Knowledge distillation: a student learns a teacher's token distributions, off- and on-policy.

The student trains on the job's conversations, as SFT does, with a loss that mixes the usual
next-token loss on the data's answers (``nll_weight``) and a divergence from the teacher's
next-token distribution at the same positions: forward KL, reverse KL or the generalised
Jensen-Shannon divergence with its ``beta`` (Agarwal et al., "On-policy distillation of language
models", 2023: TRL's GKD), both distributions softened by ``temperature``.

With ``on_policy`` above 0, that share of the steps trains on the student's own samples instead
(GKD's lambda): the student answers the batch's prompts, the teacher scores each sampled token,
and the student minimises the divergence on them alone (its own samples carry no next-token
loss: that would teach it what it already says).

The divergence and the on-policy sampling are TRL's (``trl.experimental.gkd.GKDTrainer``'s
``generalized_jsd_loss`` and ``generate_on_policy_outputs``, pinned by TRL <1.17 and tested in
``tests/test_distill.py``). TRL's GKD trainer itself is not used: it re-tokenizes raw messages
with its own collator (our rows arrive tokenized and masked by the profile), ignores the
temperature in the loss, and has no next-token term; ``DistillationTrainer`` is GRPO-shaped
(prompts only) and on-policy only.

Teacher and student must share a tokenizer: the divergence compares distributions over the same
token ids. ``--validate`` compares the two tokenizer files where both folders exist, and the
start of the job compares the loaded vocabularies, so a mismatch is refused before any step.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from trainer.config.schema import MethodOptions, PathText
from trainer.methods.base import STAGE_REFERENCE, Method, make_trainer
from trainer.models.builtin import BUILTIN_PREFIX

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext

# The generalised JSD's interpolation for each named divergence (GKD's beta: 0 is KL(teacher ||
# student), the forward KL; 1 is KL(student || teacher), the reverse KL).
DIVERGENCE_BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}
# Where TRL 1.16 keeps GKD, whose divergence and on-policy sampling this method uses (tested).
TRL_GKD = "trl.experimental.gkd"
# The teacher out of the box: about 4x the embedded student, with its tokenizer.
EMBEDDED_TEACHER = "builtin:small-qwen3"
# The figures distillation logs; the result keeps their last value.
DISTILL_FIGURES = ("distill/divergence", "distill/nll", "distill/on_policy")  # means over each logging window


class DistillOptions(MethodOptions):
    name: Literal["distill"] = Field("distill", description="Knowledge distillation from a teacher model.")
    teacher: PathText | None = Field(
        None,
        description="The teacher: a local causal-LM folder with the student's tokenizer (e.g. an earlier run's "
        "model/), a builtin ('builtin:small-qwen3'), or 'stage:N', the model stage N of this job trains. Unset on "
        "the embedded defaults: a first SFT stage trains builtin:small-qwen3 as the teacher.",
    )
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="forward_kl: KL(teacher || student), mean-seeking; reverse_kl: KL(student || teacher), "
        "mode-seeking; jsd: the generalised Jensen-Shannon divergence at beta.",
    )
    beta: float = Field(0.5, gt=0, lt=1, description="jsd only: the weight of the teacher in the mixture (0.5: the symmetric JSD).")
    temperature: float = Field(
        1.0, gt=0, description="Softens both distributions before the divergence, which is then scaled by its square "
        "so its gradients keep their size (Hinton et al., 2015)."
    )
    nll_weight: float = Field(
        0.5, ge=0, le=1, description="Share of the next-token loss on the data's answers in the loss; the divergence has "
        "the rest (0: divergence only)."
    )
    on_policy: float = Field(
        0.0, ge=0, le=1, description="Share of the steps trained on the student's own samples (GKD's lambda): 0 is "
        "off-policy, on the data's answers; 1 is fully on-policy."
    )
    max_new_tokens: int = Field(96, ge=1, description="On-policy steps: the longest sampled answer, in tokens.")
    sampling_temperature: float = Field(1.0, gt=0, description="On-policy steps: the temperature of the student's samples.")


def tokenizer_vocabulary(folder: Path) -> dict[str, int] | None:
    """The token -> id map of the tokenizer saved in ``folder`` (its tokenizer.json, or vocab.json),
    added tokens included; None when there is neither (then the job compares the loaded ones)."""
    file = folder / "tokenizer.json"
    if file.is_file():
        data = json.loads(file.read_text("utf-8"))
        vocab = dict(data.get("model", {}).get("vocab") or {})
        vocab.update({token["content"]: token["id"] for token in data.get("added_tokens", [])})
        return vocab
    file = folder / "vocab.json"
    return json.loads(file.read_text("utf-8")) if file.is_file() else None


def vocabulary_mismatch(student: dict[str, int], teacher: dict[str, int]) -> str | None:
    """Why two vocabularies are not the same token ids, in a few words; None when they are."""
    if student == teacher:
        return None
    differing = sorted(t for t in set(student) | set(teacher) if student.get(t) != teacher.get(t))
    shown = ", ".join(repr(t) for t in differing[:3]) + (" ..." if len(differing) > 3 else "")
    return (f"its tokenizer is not the student's ({len(student)} vs {len(teacher)} tokens; {len(differing)} differ, "
            f"e.g. {shown}): distillation compares distributions over the same token ids, so use a teacher "
            "trained with the student's tokenizer")


def resolve_folder(config: TrainerConfig, spec: str) -> Path | None:
    """The folder a model spec names, building a builtin on first use; None for a stage reference."""
    from trainer.models.loading import model_folder

    return None if spec.startswith(STAGE_REFERENCE) else model_folder(config, spec)


class Distill(Method):
    name = "distill"
    Options = DistillOptions
    data_shape = "conversations"
    stage_references: ClassVar[tuple[str, ...]] = ("teacher",)

    @classmethod
    def out_of_box_stages(cls, config: TrainerConfig, method: dict[str, Any], dataset_path: list[str]) -> tuple[list[dict[str, Any]], str] | None:
        """No teacher on the embedded defaults: stage 1 trains the embedded teacher by SFT on the
        bundled conversations (cached: trained once, ``trainer.core.stage_cache``), stage 2 distils
        it into the job's (untrained) model, both for the job's steps."""
        from trainer.methods.base import FALLBACK_SFT_STEPS

        if method.get("teacher") is not None:
            return None
        steps = config.hyperparams.max_steps or FALLBACK_SFT_STEPS
        stages = [
            {"method": {"name": "sft"}, "max_steps": steps, "model_path": EMBEDDED_TEACHER, "dataset_path": dataset_path,
             "cache": True},
            {"method": {**method, "teacher": f"{STAGE_REFERENCE}1"}, "max_steps": steps, "model_path": config.model.path,
             "dataset_path": dataset_path},
        ]
        note = (
            f"method distill has no teacher (method.teacher): this job runs 2 stages, sft {steps} steps of the embedded "
            f"teacher {EMBEDDED_TEACHER} (cached: a later job with the same settings and data reuses it), then distill "
            f"{steps} steps of {config.model.path} from it. Set method.teacher to a model folder, or give stages, to "
            "choose yourself"
        )
        return stages, note

    def check(self, config: TrainerConfig) -> list[str]:
        from trainer.models.folders import model_folder_problem

        options: DistillOptions = self.options  # type: ignore[assignment]
        if options.teacher is None:
            return ["method.teacher: distillation needs a teacher: a local causal-LM folder with the student's tokenizer "
                    "(e.g. an earlier run's model/), or 'stage:N' for a stage of this job"]
        if options.teacher.startswith(STAGE_REFERENCE):
            return []  # checked against the job's stages (trainer.core.preflight.check_methods)
        problem = model_folder_problem(config, options.teacher, "method.teacher")
        if problem:
            return [problem]
        student = config.model.path
        if student.startswith(BUILTIN_PREFIX) or options.teacher.startswith(BUILTIN_PREFIX):
            # every builtin shares one tokenizer; a builtin is built on first use (not by
            # --validate), and the job compares the loaded vocabularies
            return []
        teacher_vocab = tokenizer_vocabulary(config.resolve_path(options.teacher))
        student_vocab = tokenizer_vocabulary(config.resolve_path(student))
        if teacher_vocab is None or student_vocab is None:
            return []
        mismatch = vocabulary_mismatch(student_vocab, teacher_vocab)
        return [f"method.teacher: {options.teacher}: {mismatch}"] if mismatch else []

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from trl import SFTConfig

        from trainer.config.errors import ConfigError
        from trainer.methods.sft import padding_free_rows, training_arguments
        from trainer.models.attention import use_segmented_attention
        from trainer.models.buckets import bucket_rows
        from trainer.models.loading import load_model, load_tokenizer

        options: DistillOptions = self.options  # type: ignore[assignment]
        config = context.config
        folder = resolve_folder(config, options.teacher or "")
        if folder is None:
            raise ConfigError([f"method.teacher: {options.teacher!r} names a stage, and this job has no stages"])
        mismatch = vocabulary_mismatch(context.tokens.tokenizer.get_vocab(), load_tokenizer(folder, config).get_vocab())
        if mismatch:
            raise ConfigError([f"method.teacher: {folder}: {mismatch}"])
        teacher = load_model(folder, config, context.device, context.precision)
        teacher.requires_grad_(False).eval()
        if teacher.config.get_text_config().vocab_size != model.config.get_text_config().vocab_size:
            # same tokens, other embedding widths (a padded vocabulary): the logits would not line up
            raise ConfigError([f"method.teacher: {folder}: its vocab_size {teacher.config.get_text_config().vocab_size} is not "
                               f"the student's {model.config.get_text_config().vocab_size}"])

        # Padding-free rows as SFT trains them; on-policy steps rebuild the batch from its
        # prompts, which needs rows apart, so those jobs keep padded batches.
        padding_free = options.on_policy == 0 and padding_free_rows(context)
        if padding_free and context.device in ("cpu", "mps"):
            for each in (model, teacher):
                use_segmented_attention(each)
                bucket_rows(each)
        args = training_arguments(
            context, SFTConfig, max_length=None, packing=False, padding_free=padding_free, packing_strategy="bfd",
        )
        trainer = make_trainer(distill_trainer_class(), context, model, args, callbacks)
        trainer.attach_teacher(teacher, options, context)
        return trainer

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        from trainer.methods.dpo import last_logged

        return last_logged(trainer, DISTILL_FIGURES)


def distill_trainer_class() -> type:
    """TRL's SFTTrainer with the distillation loss (built on first use: TRL imports only here)."""
    import torch
    from trl import SFTTrainer

    from trainer.methods.orpo import experimental_trl
    from trainer.methods.rl import generate_as_the_profile

    (GKDTrainer,) = experimental_trl(TRL_GKD, "GKDTrainer")

    class DistillTrainer(SFTTrainer):
        # compute_loss returns each micro-batch's mean; the Trainer divides by the accumulation
        # steps (an on-policy batch is not the one num_items_in_batch counted).
        loss_is_scaled_for_ga = False

        def attach_teacher(self, teacher: Any, options: DistillOptions, context: JobContext) -> None:
            from transformers import GenerationConfig

            self.teacher_model = self.accelerator.prepare_model(teacher, evaluation_mode=True)
            self.options = options
            self.beta = DIVERGENCE_BETA.get(options.divergence, options.beta)
            self._figures: dict[str, list[float]] = {}
            model = self.accelerator.unwrap_model(self.model)
            eos = model.generation_config.eos_token_id
            stops = context.stop_sequences
            self.generation_config = GenerationConfig(
                max_new_tokens=options.max_new_tokens, do_sample=True, temperature=options.sampling_temperature,
                top_k=0, top_p=1.0, eos_token_id=eos, pad_token_id=self.processing_class.pad_token_id,
                stop_strings=stops or None,
            )
            generate_as_the_profile(model, context)  # the profile's stops and penalties, as previews
            self.stops = list(stops)
            self.eos_ids = {i for i in context.tokens.eos_ids if i is not None}

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            # random is seeded by the Trainer and kept in every checkpoint's RNG state: a resumed
            # run draws the same on-policy steps
            self.on_policy_step = self.options.on_policy > 0 and random.random() < self.options.on_policy
            if self.on_policy_step:
                inputs = self.sample_from_student(model, inputs)
            return super().training_step(model, inputs, num_items_in_batch)

        def sample_from_student(self, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
            """The batch's prompts (each row up to its last answer) answered by the student."""
            from trl.models import unwrap_model_for_generation

            from trainer.methods.ppo_trainer import completion_end

            prompts = prompts_of(inputs["input_ids"], inputs["labels"], self.processing_class.pad_token_id)
            with unwrap_model_for_generation(model, self.accelerator) as unwrapped, torch.no_grad():
                ids, mask, labels = GKDTrainer.generate_on_policy_outputs(unwrapped, prompts, self.generation_config)
            # TRL ends a completion at its first EOS id only; one that stopped on a stop string is
            # padded after it, and the pad token may itself be a stop (<|endoftext|> is one for the
            # bundled profiles): end each where generation stopped, as PPO does
            width = prompts["prompts"].shape[1]
            decode = lambda tokens: self.processing_class.decode(tokens, skip_special_tokens=False)  # noqa: E731
            for row, generated in enumerate(ids[:, width:].tolist()):
                length, _ = completion_end(generated, self.eos_ids, self.stops, decode)
                mask[row, width + length:] = 0
                labels[row, width + length:] = -100
            # left-padded prompts: positions count real tokens, as generate counted them
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            on_policy = getattr(self, "on_policy_step", False)
            labels = inputs["labels"]
            # every model input the collator made (padding-free rows carry their sequence bounds), as SFT's loss
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**forward, use_cache=False)
            with torch.no_grad():
                teacher_logits = self.teacher_model(**forward, use_cache=False).logits
            student_logits = outputs.logits[:, :-1]
            shifted = labels[:, 1:]
            t = self.options.temperature
            divergence = GKDTrainer.generalized_jsd_loss(
                student_logits, teacher_logits[:, :-1], labels=shifted, beta=self.beta, temperature=t,
            ) * t * t
            nll = torch.nn.functional.cross_entropy(
                student_logits.reshape(-1, student_logits.size(-1)).float(), shifted.reshape(-1), ignore_index=-100,
            ) if (shifted != -100).any() else student_logits.sum() * 0.0
            weight = 0.0 if on_policy else self.options.nll_weight
            loss = weight * nll + (1 - weight) * divergence
            self._note("distill/divergence", divergence)
            self._note("distill/nll", nll)
            self._note("distill/on_policy", float(on_policy))
            return (loss, outputs) if return_outputs else loss

        def _note(self, key: str, value: Any) -> None:
            self._figures.setdefault(key, []).append(float(value.detach() if hasattr(value, "detach") else value))

        def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
            if "loss" in logs and self._figures:  # the means since the last logged step
                logs = {**logs, **{key: sum(v) / len(v) for key, v in self._figures.items()}}
                self._figures = {}
            super().log(logs, start_time)

    return DistillTrainer


def prompts_of(input_ids: Any, labels: Any, pad_id: int) -> dict[str, Any]:
    """Each row's tokens before its last answer (the last run of trained labels), left-padded:
    ``{"prompts", "prompt_attention_mask"}`` as TRL's ``generate_on_policy_outputs`` takes them."""
    import torch

    rows = []
    for ids, row_labels in zip(input_ids, labels):
        trained = (row_labels != -100).nonzero().flatten().tolist()
        if trained:
            first = len(trained) - 1  # back to the start of the last run of trained positions
            while first > 0 and trained[first - 1] == trained[first] - 1:
                first -= 1
            end = trained[first]
        else:
            end = int((ids != pad_id).sum()) or len(ids)
        rows.append(ids[:end])
    width = max(len(r) for r in rows)
    prompts = torch.full((len(rows), width), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    mask = torch.zeros_like(prompts)
    for i, row in enumerate(rows):
        prompts[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return {"prompts": prompts, "prompt_attention_mask": mask}
