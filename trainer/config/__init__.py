"""Layer 2: the typed job configuration and how it is assembled."""

from trainer.config.errors import ConfigError
from trainer.config.loader import SHORT_FLAGS, ConfigLoader, create_default_config
from trainer.config.schema import SCHEMA_VERSION, TrainerConfig

# Register the training methods', optimizers', schedules', judges' and callbacks' option models with the schema
# (see schema.use_options).
import trainer.methods  # noqa: E402,F401  isort: skip
import trainer.optim  # noqa: E402,F401  isort: skip
import trainer.judges  # noqa: E402,F401  isort: skip
import trainer.callbacks  # noqa: E402,F401  isort: skip

__all__ = [
    "SCHEMA_VERSION",
    "SHORT_FLAGS",
    "ConfigError",
    "ConfigLoader",
    "TrainerConfig",
    "create_default_config",
]
