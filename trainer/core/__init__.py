"""Layer 1: the engine."""

from trainer.core.engine import JobResult, JobStopped, TrainerEngine

__all__ = ["JobResult", "JobStopped", "TrainerEngine"]
