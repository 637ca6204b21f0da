"""What one job works with, typed: the job context a method builds its trainer on, and the
outcomes a job ends in (a result, a stop). The engine fills a :class:`JobContext` step by step
(run plan, then tokenizer and data, then the model); ``trainer.core.training`` and every method
read it; neither imports the engine, so the engine imports them without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from core.training_status import TrainingStatusWriter
from trainer.config.schema import TrainerConfig
from core.distributed import is_main_process  # noqa: F401  (re-exported: where the engine asks)
from core.run_layout import RunLayout
from trainer.core.resume import RunPlan
from trainer.data.prepare import PreparedData, Probe
from trainer.monitoring.formatting import format_number
from trainer.profiles import DataProfile


class JobStopped(Exception):
    """Training stopped on SIGTERM / Ctrl-C after saving a checkpoint; resume continues it."""

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint or 'none'}")


@dataclass
class JobResult:
    """What a finished job produced."""

    run_dir: Path
    model_path: Path | None
    final_metrics: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    probes: list[Probe] = field(default_factory=list, repr=False)  # held-out prompts, for evaluation

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "model_path": str(self.model_path) if self.model_path else None,
            "final_metrics": self.final_metrics,
            "dry_run": self.dry_run,
        }


@dataclass
class Tokenization:
    """How text becomes tokens for this job: the tokenizer, the chat template trained with, and
    the tokens that end an assistant turn (where generation must stop)."""

    tokenizer: Any
    template: str
    end_token: str
    eos_ids: set[int]


@dataclass
class JobContext:
    """One job's shared state. Fields after ``stopper`` are filled as the job gets to them."""

    config: TrainerConfig
    plan: RunPlan
    writer: TrainingStatusWriter
    profile: DataProfile
    console: TextIO
    stopper: Any  # trainer.monitoring.callbacks.StopOnSignalCallback (a transformers callback)
    tokens: Tokenization | None = None
    data: PreparedData | None = None
    model_folder: Path | None = None
    device: str = "cpu"
    precision: str = "float32"  # resolved: never "auto" (trainer.models.loading.resolve_precision)

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.plan.run_dir)

    @property
    def stop_sequences(self) -> list[str]:
        return stop_sequences(self.config, self.profile)

    @property
    def system_prompt(self) -> str:
        return system_prompt(self.config, self.profile)

    def stop_if_asked(self, checkpoint: str | None = None) -> None:
        """At a phase boundary: if a stop signal came, record phase stopped and raise JobStopped."""
        if self.stopper.received is not None:
            self.writer.set_phase("stopped", error_message=f"stopped by signal {self.stopper.received}")
            raise JobStopped(self.stopper.received, checkpoint)


def stop_sequences(config: TrainerConfig, profile: DataProfile) -> list[str]:
    """Where generation ends, for previews, RL and exports alike: the config's own stop
    sequences, else the profile's."""
    return [s for s in (config.profile.stop_sequences or profile.get_stop_sequences()) if s]


def system_prompt(config: TrainerConfig, profile: DataProfile) -> str:
    """The system message a training row without its own begins with, which the saved template
    puts in where a conversation has none."""
    return profile.format_system_prompt(config.profile.system_prompt)


def probes_for(config: TrainerConfig, profile: DataProfile, data: PreparedData) -> list[Probe]:
    """Fixed prompts from the config if given, else the held-out rows."""
    if not config.inference.probe_prompts:
        return data.probes[: config.inference.num_probes]
    system = system_prompt(config, profile)
    return [
        Probe([{"role": "system", "content": system}, {"role": "user", "content": prompt}], None, "", "config")
        for prompt in config.inference.probe_prompts
    ]


def format_summary(result: JobResult) -> str:
    m = result.final_metrics
    lines = [
        f"loss: {format_number(m.get('loss_start'))} at start -> {format_number(m.get('loss_end'))} at end "
        "(last step)",
        f"held-out probes: {m.get('probes_format_ok', 0)}/{m.get('probes', 0)} follow the format, "
        f"{m.get('probes_correct', 0)}/{m.get('probes', 0)} answers right",
        f"model saved to {result.model_path}",
    ]
    if "probes_format_ok_at_start" in m:  # the starting model answered the same probes
        n = m.get("probes", 0)
        lines[1] = (
            f"held-out probes: {m['probes_format_ok_at_start']}/{n} -> {m.get('probes_format_ok', 0)}/{n} follow the "
            f"format, {m.get('probes_correct_at_start', 0)}/{n} -> {m.get('probes_correct', 0)}/{n} answers right (start -> end)"
        )
    if "heldout_reward" in m:
        start = f"{format_number(m['heldout_reward_at_start'])} at start -> " if "heldout_reward_at_start" in m else ""
        lines.insert(2, f"held-out reward: {start}{format_number(m['heldout_reward'])} at end (mean over the probes)")
    if m.get("win_rate_judge"):
        lines.insert(-1, (
            f"win rate over the starting model: {format_number(m.get('win_rate'))} (judge {m['win_rate_judge']}: "
            f"{m.get('win_rate_wins', 0)} wins, {m.get('win_rate_ties', 0)} ties, {m.get('win_rate_losses', 0)} losses)"
        ))
    if not m.get("probes"):  # a model that does not generate (reward, classify) answers no probes
        del lines[1]
    return "\n".join(lines)
