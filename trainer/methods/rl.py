"""What the RL methods share (GRPO, RLOO; PPO builds on it): options, rewards, generation.

Each RL method samples completions to the prompts of SFT-shaped data (``trainer.data.prompt_data``)
and scores them with a reward spec (``trainer.rewards``; unset: the profile's default, format
plus answer). Generation follows the profile as inference does: its stop sequences end a
completion, its penalties push down tokens it must not produce (``<think>`` for most), and the
rewards see the completion cut where it stopped, as the previews do.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from trainer.config.schema import MethodOptions
from trainer.methods.base import Method, make_trainer

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext

# The figures TRL's GRPO / RLOO log that say how RL is going; the result keeps their last value.
RL_FIGURES = (
    "reward", "reward_std", "kl", "entropy", "completions/mean_length", "completions/clipped_ratio",
    "clip_ratio/region_mean", "frac_reward_zero_std",
)


class RLOptions(MethodOptions):
    """Options every RL method takes."""

    reward: dict[str, Any] | None = Field(
        None,
        description="Reward spec (README, 'Rewards'): {'type': 'weighted_sum', 'components': [...]} or one "
        "reward; unset: the profile's default (format + answer).",
    )
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(96, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the completions.")
    beta: float = Field(0.0, ge=0, description="KL coefficient against the reference (the starting model); 0: none loaded.")

    def reward_spec(self, config: TrainerConfig) -> Any:
        """The reward spec the job scores with (``reward``; None: the profile's default)."""
        return self.reward


def check_rl(name: str, options: RLOptions, config: TrainerConfig, groups: bool = True) -> list[str]:
    """Problems every RL method shares: the reward spec, and (``groups``: GRPO, RLOO) groups of
    completions that fill the batch."""
    from trainer.profiles import get_profile
    from trainer.rewards import RewardContext, reward_problems

    try:  # the profile rewards are checked against the job's profile; a bad profile is its own problem
        context = RewardContext(profile=get_profile(config.profile.name, config.profile.options))
    except ValueError:
        context = None
    problems = reward_problems(options.reward, "method.reward", context) if options.reward is not None else []
    hp = config.hyperparams
    effective = hp.batch_size * hp.gradient_accumulation_steps
    if groups and effective % options.num_generations:
        problems.append(
            f"method.num_generations: {options.num_generations} completions per prompt must divide the batch of "
            f"{effective} (hyperparams.batch_size {hp.batch_size} x gradient_accumulation_steps "
            f"{hp.gradient_accumulation_steps}) for method {name}; e.g. set it to {_divisor(effective)}"
        )
    return problems


def _divisor(n: int) -> int:
    return next((d for d in (8, 4, 2) if n % d == 0 and d <= n), 2)


def reward_funcs(context: JobContext, options: RLOptions) -> tuple[list[Any], list[float]]:
    """TRL reward callables (one per component, each named for its logs) and their weights."""
    from trainer.rewards import RewardContext, trl_reward_funcs

    rewards_context = RewardContext(profile=context.profile, device=context.device)
    return trl_reward_funcs(options.reward_spec(context.config), rewards_context, key="method.reward", stops=context.stop_sequences)


def generate_as_the_profile(model: Any, context: JobContext) -> None:
    """Bind what generate needs for the profile's stops and penalties to ``model.generate``.

    TRL builds its own GenerationConfig (which names the stop strings, ``rl_arguments``), but
    generate can only match stop strings given the tokenizer, and a GenerationConfig cannot carry
    the tokenizer nor logits processors; so both are bound to the model's ``generate`` here (a
    call that passes its own, like the previews, still wins).
    """
    from core.logit_penalty import build_logits_processors

    tokenizer = context.tokens.tokenizer
    processors = build_logits_processors(
        tokenizer, [(spec.strings, spec.penalty) for spec in context.profile.generation_penalties()]
    )
    model.generate = functools.partial(model.generate, tokenizer=tokenizer, logits_processor=processors)


NORMALISING_POST = ("normalize", "ema_normalize")


def without_normalising(spec: Any) -> Any:
    """``spec`` with its normalising post-processors (``NORMALISING_POST``) left out, everywhere."""
    if isinstance(spec, list):
        return [without_normalising(item) for item in spec]
    if not isinstance(spec, dict):
        return spec
    out = {}
    for key, value in spec.items():
        if key in ("post", "postprocess") and isinstance(value, list):
            value = [p for p in value if not (isinstance(p, dict) and p.get("type") in NORMALISING_POST)]
        out[key] = without_normalising(value)
    return out


def probe_reward(context: JobContext, options: RLOptions, probes: list[Any], answers: list[str]) -> dict[str, Any]:
    """``heldout_reward``: the mean reward (the job's spec, before any normalising post-processing)
    of the probes' answers."""
    from trainer.judges import judged_inputs
    from trainer.rewards import RewardContext, build_reward

    # Raw rewards: a fresh normalising post-processor would standardise the probes against each
    # other and report about 0 at the start and at the end, whatever training did.
    spec = without_normalising(options.reward_spec(context.config))
    node = build_reward(spec, RewardContext(profile=context.profile, device=context.device), key="method.reward")
    prompts, references, rows = judged_inputs(probes)
    scores = [v for v in node.score(prompts, answers, references, rows) if v is not None]
    return {"heldout_reward": sum(scores) / len(scores) if scores else None}


def rl_arguments(context: JobContext, options: RLOptions) -> dict[str, Any]:
    """The TRL config fields every RL method's options set."""
    stops = context.stop_sequences
    return {
        "num_generations": options.num_generations,
        "max_completion_length": options.max_completion_length,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "beta": options.beta,
        "generation_kwargs": {"stop_strings": stops} if stops else None,
        "log_completions": False,  # TRL prints a rich table; our status and metrics carry samples
    }


# Completions of the latest step that each logged step carries (metrics.jsonl, status rl_samples).
SAMPLES_LOGGED = 4


class SampleLogging:
    """Trainer mixin: every logged step carries ``samples``, a few completions of the latest
    generation batch with their rewards; the trainer says which (``latest_samples``)."""

    def latest_samples(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
        if "loss" in logs:
            samples = self.latest_samples()[:SAMPLES_LOGGED]
            if samples:
                logs = {**logs, "samples": samples}
        super().log(logs, start_time)  # type: ignore[misc]


class TRLSamples(SampleLogging):
    """The latest samples of TRL's GRPO / RLOO trainers. TRL keeps its latest generation batch in
    ``_logs`` for its own completions table and offers no public way to it; the rewards there are
    per reward function, so the total is their weighted sum, as TRL's own."""

    sample_cuts: list[str] = []

    def latest_samples(self) -> list[dict[str, Any]]:
        import math

        from trainer.monitoring.preview_backend import cut_at_stops
        from trainer.rewards.trl_adapter import message_text

        logs = getattr(self, "_logs", None)
        if not logs or not logs["prompt"]:
            return []
        names = list(logs["rewards"])
        weights = [float(w) for w in self.reward_weights]  # type: ignore[attr-defined]
        out = []
        for i, (prompt, completion) in enumerate(zip(logs["prompt"], logs["completion"])):
            parts = {name: float(logs["rewards"][name][i]) for name in names}
            present = [(w, v) for w, v in zip(weights, parts.values()) if not math.isnan(v)]
            out.append({
                "prompt": message_text(prompt),
                "completion": cut_at_stops(message_text(completion), self.sample_cuts),
                "reward": sum(w * v for w, v in present) if present else None,
                "rewards": {name: (None if math.isnan(v) else v) for name, v in parts.items()},
            })
        return out


class StopStringEnds:
    """Trainer mixin: a completion that a stop string ended ends there, with the pad token as its
    end token.

    ``generate`` fills a row that a stop string finished with the pad token up to the batch's
    length, and TRL's GRPO / RLOO cut completions at their end tokens only. Unless the pad token is
    one, those pads stayed in the completion: trained on as sampled tokens and counted in
    ``completions/*_length``. And the batch's last row to stop has no pad and no end token after
    it, so TRL counted it as clipped (also when the pad token is the end token). Here such a row
    keeps one pad where an end token would be, trained like one (the policy learns where it
    stopped), and the last row to stop gets one. Only a trailing run of pads is filler: a pad the
    model sampled mid-row, which a stop string did not end, stays a sampled token."""

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        out = super()._generate_single_turn(*args, **kwargs)  # type: ignore[misc]
        # GRPO returns (ids, logprobs), RLOO the ids. vLLM cuts at stop strings itself, pads
        # nothing, and its logprobs would have to stay aligned: its rows are left as they are.
        ids, logprobs = out if isinstance(out, tuple) else (out, None)
        pad = self._tokenizer.pad_token_id  # type: ignore[attr-defined]
        stops = self._stop_strings()
        if not stops or pad is None or getattr(self, "use_vllm", False) or logprobs is not None:
            return out
        ids = [self._end_at_stop(row, pad, stops) for row in ids]
        return (ids, logprobs) if isinstance(out, tuple) else ids

    def _stop_strings(self) -> list[str]:
        """The stop strings generation ran with: TRL keeps its ``generate`` arguments (ours in
        ``rl_arguments``) as ``generation_kwargs`` on its transformers path."""
        return list((getattr(self, "generation_kwargs", None) or {}).get("stop_strings") or [])

    def _end_at_stop(self, row: list[int], pad: int, stops: list[str]) -> list[int]:
        if row and row[-1] in self.eos_token_ids:  # type: ignore[attr-defined]
            return row  # TRL cut it at its end token
        end = len(row)
        while end and row[end - 1] == pad:
            end -= 1
        if end < len(row):  # stopped at row[end - 1], then filled
            return [*row[:end], pad]
        # no filler: the batch's last row to stop (by a stop string: an end token would be in the
        # row), or a row that ran to the length cap, unless a stop string came with its last token
        # (none came before it, or generation would have stopped there)
        if len(row) < self.max_completion_length:  # type: ignore[attr-defined]
            return [*row, pad]
        text = self._tokenizer.decode(row)  # type: ignore[attr-defined]
        return [*row, pad] if any(stop in text for stop in stops) else row


class RLMethod(Method):
    """Base of the TRL-backed RL methods: prompts in, a reward spec, the profile's generation.

    Subclasses name their TRL trainer and config (``trl_names``) and add their own config fields
    (``extra_arguments``); checks, rewards, generation, the probes' reward and the figures kept
    are the same for all.
    """

    data_shape = "prompts"
    # Out of the box, after an SFT stage. A gentle rate: from an SFT model on the easy problems
    # (bench/rl_vs_sft.py's data), 60 GRPO steps at 5e-4 took held-out accuracy from 26 to 5 of
    # 100, at 5e-5 it stayed at 26, at 2e-4 (batch 32, 8 generations) it went to 28.
    refine_stage = {"max_steps": 40, "learning_rate": 1e-4}
    evaluates_at_start = True

    @classmethod
    def keeps_reference(cls, options: Any, config: TrainerConfig) -> bool:
        # TRL loads a reference only for a KL term, and under LoRA uses the base with adapters off
        return options.beta > 0 and config.model.lora is None
    trl_names: ClassVar[tuple[str, str]]  # (trainer class, config class) in ``trl``

    def check(self, config: TrainerConfig) -> list[str]:
        return check_rl(self.name, self.options, config)  # type: ignore[arg-type]

    def extra_arguments(self) -> dict[str, Any]:
        """The method's own TRL config fields from its options."""
        return {}

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        import trl

        from trainer.methods.sft import training_arguments

        trainer_class, config_class = (getattr(trl, name) for name in self.trl_names)
        options: RLOptions = self.options  # type: ignore[assignment]
        funcs, weights = reward_funcs(context, options)
        args = training_arguments(
            context, config_class, reward_weights=weights, **rl_arguments(context, options), **self.extra_arguments()
        )
        generate_as_the_profile(model, context)
        sampled = type(trainer_class.__name__, (TRLSamples, StopStringEnds, trainer_class), {})
        trainer = make_trainer(sampled, context, model, args, callbacks, reward_funcs=funcs)
        trainer.sample_cuts = [*context.stop_sequences, context.tokens.end_token]
        return trainer

    def probe_figures(self, context: JobContext, probes: list[Any], answers: list[str]) -> dict[str, Any]:
        return probe_reward(context, self.options, probes, answers)  # type: ignore[arg-type]

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        from trainer.methods.dpo import last_logged

        return last_logged(trainer, RL_FIGURES)
