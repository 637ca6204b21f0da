"""Layer 3: status file, Hugging Face callbacks and previews."""

from trainer.monitoring.status_writer import TrainingStatus, TrainingStatusWriter

__all__ = ["TrainingStatus", "TrainingStatusWriter"]
