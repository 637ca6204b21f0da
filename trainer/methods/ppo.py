"""Proximal policy optimisation (``ppo``), ours: TRL 1.16 no longer ships a PPO trainer.

A policy with a value head, a frozen reference (the starting model), rewards from the reward
spec (``trainer.rewards``), per-token KL penalty with a fixed or adaptive coefficient,
generalised advantage estimation, whitened advantages, clipped policy and value losses, and
seed 004's controls: early stop of an update once the approximate KL passes ``target_kl``, and
score scaling, standardisation and clipping. This module is the method: its options, checks
and collaborators, light to import (``--validate`` imports it); how an update runs, the
arithmetic and :class:`~trainer.methods.ppo_trainer.PPOTrainer`, is ``trainer.methods.ppo_trainer``.

It runs on the engine's one training path: one Trainer step is one PPO update on one batch of
prompts (generate, score, ``ppo_epochs`` passes of minibatch gradient steps), so ``max_steps``,
logging, the status file, previews, checkpoints, the divergence guard and exact resume are the
Trainer's and work as for every method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from trainer.config.schema import PathText
from trainer.methods.base import STAGE_REFERENCE, make_trainer
from trainer.methods.dpo import last_logged
from trainer.methods.rl import RLMethod, RLOptions, check_rl
from trainer.methods.sft import training_arguments

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext


# What the result keeps the last value of (every figure also goes to metrics.jsonl and the status).
PPO_FIGURES = (
    "reward", "reward_std", "score", "kl", "kl_coef", "entropy", "policy_loss", "value_loss", "clipfrac",
    "value_clipfrac", "approx_kl", "early_stopped", "minibatch_updates", "completions/mean_length",
    "completions/clipped_ratio",
)


class PPOOptions(RLOptions):
    name: Literal["ppo"] = Field("ppo", description="Proximal policy optimisation with a value head, on prompts and rewards.")
    num_generations: int = Field(
        1, ge=1, description="Completions sampled per prompt; PPO's baseline is the value head, so one is enough."
    )
    beta: float = Field(
        0.05,
        ge=0,
        description="KL coefficient: each completion token's reward is -beta * KL(policy || reference) for that token "
        "(the starting value when adaptive_kl); 0 with adaptive_kl off: no reference loaded, no penalty.",
    )
    kl_penalty: Literal["kl", "abs", "mse"] = Field(
        "kl", description="Per-token KL estimate in the penalty: logp - ref_logp ('kl'), its absolute value, or half its square."
    )
    adaptive_kl: bool = Field(False, description="Adapt beta towards kl_target after each update (Ziegler et al. 2019).")
    kl_target: float = Field(6.0, gt=0, description="With adaptive_kl: the KL to the reference to hold, in nats per completion.")
    kl_horizon: int = Field(10000, ge=1, description="With adaptive_kl: completions over which beta may change by about 20%.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount per token in the advantage estimate.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda: 1 is the Monte-Carlo return, 0 the one-step TD error.")
    cliprange: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
    cliprange_value: float = Field(0.2, gt=0, description="How far a value may move from its rollout estimate in one update.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss beside the policy loss.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each batch of completions per update.")
    mini_batch_size: int | None = Field(
        None,
        ge=1,
        description="Completions per gradient step inside an update (and per forward pass while scoring the batch); "
        "unset: the whole batch, one step per pass.",
    )
    whiten_advantages: bool = Field(True, description="Standardise the advantages over each batch before the losses.")
    target_kl: float | None = Field(
        None,
        gt=0,
        description="Stop an update's remaining minibatch steps once the approximate KL between the policy and the "
        "policy that sampled the batch passes this; unset: never stop early.",
    )
    score_scaling: bool = Field(False, description="Divide scores by the running std of all scores so far.")
    score_norm: bool = Field(False, description="Subtract the running mean of all scores, then divide by their running std.")
    score_clip: float | None = Field(None, gt=0, description="Clip scores (after scaling) to [-score_clip, score_clip].")
    teacher: PathText | None = Field(
        None,
        description="A teacher (seed 004): a local causal-LM folder, or 'stage:N' for a stage of this job, whose mean "
        "log-probability of each completion (reward 'teacher') joins the reward with teacher_weight.",
    )
    teacher_weight: float = Field(0.5, gt=0, le=1, description="With a teacher: its share of the reward; the reward spec has the rest.")

    def reward_spec(self, config: TrainerConfig) -> Any:
        """The reward spec, with the teacher's log-probabilities as a weighted component when
        there is a teacher (the spec unset: the profile's default beside it)."""
        if self.teacher is None:
            return self.reward
        from trainer.methods.distill import resolve_folder

        folder = resolve_folder(config, self.teacher)  # a builtin is built on first use
        teacher = {"type": "teacher", "model_path": str(folder), "weight": self.teacher_weight}
        if self.teacher_weight == 1:
            return {key: value for key, value in teacher.items() if key != "weight"}
        rest = self.reward if self.reward is not None else {"type": "profile"}
        return {"type": "weighted_sum", "components": [{**rest, "weight": 1 - self.teacher_weight}, teacher]}

    @model_validator(mode="after")
    def _adaptive_needs_a_start(self) -> PPOOptions:
        if self.adaptive_kl and self.beta == 0:
            raise ValueError("adaptive_kl adapts beta, which is 0; set method.beta above 0 (e.g. 0.05) as its start")
        return self


class PPO(RLMethod):
    """Ours, on the engine's training path; shares the RL methods' data shape, probes' reward and
    out-of-the-box start (``RLMethod``), not their TRL trainer."""

    name = "ppo"
    Options = PPOOptions
    # A PPO update is several times a GRPO step's work (ppo_epochs passes): fewer steps, so the
    # out-of-the-box job stays a few minutes.
    refine_stage = {"max_steps": 15, "learning_rate": 1e-4}
    stage_references = ("teacher",)
    extends_model = True  # the value head (attach_value_head)

    @classmethod
    def keeps_reference(cls, options: Any, config: TrainerConfig) -> bool:
        return options.beta > 0 or options.adaptive_kl  # build_reference loads none otherwise

    def reference_of(self, trainer: Any) -> Any:
        return trainer.ppo.reference  # ours: the PPO setup holds it (build_reference)

    def check(self, config: TrainerConfig) -> list[str]:
        options: PPOOptions = self.options  # type: ignore[assignment]
        # No group rule (num_generations divides the batch; GRPO's and RLOO's): a PPO batch is
        # any number of prompts times any number of completions each.
        problems = check_rl(self.name, options, config, groups=False)
        if options.teacher is not None and not options.teacher.startswith(STAGE_REFERENCE):
            from trainer.models.folders import model_folder_problem

            problem = model_folder_problem(config, options.teacher, "method.teacher")
            problems += [problem] if problem else []
        hp = config.hyperparams
        if hp.gradient_accumulation_steps != 1:
            problems.append(
                f"hyperparams.gradient_accumulation_steps: method ppo makes one update per batch of prompts and "
                f"splits it into gradient steps itself (method.mini_batch_size); set it to 1, not "
                f"{hp.gradient_accumulation_steps}"
            )
        rollout = hp.batch_size * options.num_generations
        if options.mini_batch_size is not None and options.mini_batch_size > rollout:
            problems.append(
                f"method.mini_batch_size: {options.mini_batch_size} is more than the {rollout} completions of a batch "
                f"(hyperparams.batch_size {hp.batch_size} x method.num_generations {options.num_generations})"
            )
        return problems

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        from transformers import TrainingArguments

        from trainer.methods.ppo_trainer import (
            PPOTrainer,
            attach_value_head,
            build_reference,
            build_setup,
            keep_rows,
        )

        options: PPOOptions = self.options  # type: ignore[assignment]
        reference = build_reference(model, options)
        attach_value_head(model)
        setup = build_setup(context, options, reference)
        # remove_unused_columns=False: the rows are prompts and references, not model inputs.
        args = training_arguments(context, TrainingArguments, remove_unused_columns=False)
        return make_trainer(PPOTrainer, context, model, args, callbacks, data_collator=keep_rows, setup=setup)

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        return {**last_logged(trainer, PPO_FIGURES), "early_stopped_updates": trainer.early_stopped_updates}
