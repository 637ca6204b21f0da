"""The status writer lives in ``core.training_status`` (engine-agnostic); this name re-exports it."""

from core.training_status import (
    STATUS_SCHEMA_VERSION,
    Checkpoint,
    DataSummary,
    Example,
    JsonlLog,
    TrainingStatus,
    TrainingStatusWriter,
    read_status,
    write_json_atomic,
)

__all__ = [
    "STATUS_SCHEMA_VERSION",
    "Checkpoint",
    "DataSummary",
    "Example",
    "JsonlLog",
    "TrainingStatus",
    "TrainingStatusWriter",
    "read_status",
    "write_json_atomic",
]
