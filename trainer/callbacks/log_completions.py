"""``log_completions``: the model's answers to the held-out prompts, as a table in the experiment
trackers every ``every_steps`` steps (step, prompt, completion, format, right).

TRL's ``LogCompletionsCallback`` needs an eval dataset with a ``prompt`` column, renders prompts
with its own template call and logs only to W&B and Comet; this one answers the job's probes
through the previews' generation (the profile's stops, template and penalties) and logs to every
tracker that takes tables (TensorBoard text, W&B tables, MLflow table artifacts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions

COLUMNS = ["step", "prompt", "completion", "format_ok", "correct"]


class LogCompletionsOptions(CallbackOptions):
    name: Literal["log_completions"] = Field("log_completions", description="Answers to the probes, as a table in the trackers.")
    every_steps: int = Field(50, ge=1, description="Log every this many steps.")
    num_prompts: int = Field(4, ge=1, description="How many of the held-out prompts to answer (at most inference.num_probes).")


class LogCompletions(NamedCallback):
    name = "log_completions"
    Options = LogCompletionsOptions

    @classmethod
    def check(cls, config: Any, options: LogCompletionsOptions, key: str) -> list[str]:
        from trainer.methods import method_class
        from trainer.trackers import TRACKERS

        problems = []
        if not any(TRACKERS[name].log_table for name in config.output.report_to):
            problems.append(f"{key}: log_completions writes tables to the experiment trackers, and output.report_to names "
                            "none that takes them (tensorboard, wandb, mlflow); previews.jsonl already holds the previews")
        if not config.inference.num_probes:
            problems.append(f"{key}: log_completions answers the held-out prompts, and inference.num_probes is 0")
        if not any(method_class(m.name).generates for m in config.stage_methods()):
            problems.append(f"{key}: method {config.stage_methods()[-1].name} does not generate completions")
        return problems

    @classmethod
    def build(cls, job: CallbackJob, options: LogCompletionsOptions) -> Any:
        from transformers import TrainerCallback

        if not job.method.generates or not job.backend.probes:
            return None  # a stage that does not generate (a reward model), or a rank without probes

        class Completions(TrainerCallback):
            def __init__(self):
                self.history: list[list[Any]] = []

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % options.every_steps:
                    return
                summary = job.backend.run(model, state.global_step, limit=options.num_prompts)
                rows = [[r.step, r.prompt, r.model_output, r.format_ok, r.matches] for r in summary.records]
                self.history.extend(rows)
                job.trackers.log_table("completions", COLUMNS, rows, self.history, state.global_step)

        return Completions()
