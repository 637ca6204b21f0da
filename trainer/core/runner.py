"""Run a job from a command line and turn its outcome into an exit code.

User errors (bad config, bad data) print one clear message and no traceback; a signal stop
exits 128 + signal number, as a shell reports it; anything else is a bug and shows its traceback
(the status file records the error either way). The CLI and the daemon's job runner share this.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from trainer.config import ConfigError, ConfigLoader, TrainerConfig
from trainer.core.preflight import check_config

if TYPE_CHECKING:
    from trainer.core.context import JobResult
    from trainer.core.engine import TrainerEngine

# 1 is left to Python itself: an unexpected exception (a bug) exits 1 with its traceback.
# EXIT_DIVERGED: the loss, gradient norm or weights went non-finite; the run failed and no final
# model was saved (the same settings diverge the same way again, so retrying does not help).
EXIT_OK, EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED = 0, 2, 3, 4


def execute(
    config: TrainerConfig, sources: dict[str, str], engine: TrainerEngine | None = None
) -> tuple[int, JobResult | None]:
    """Run the job; returns (exit code, result or None). Raises ConfigError for bad config."""
    problems = check_config(config)
    if problems:
        raise ConfigError(problems)
    from trainer.core.divergence import TrainingDiverged
    from trainer.core.context import JobStopped
    from trainer.core.engine import TrainerEngine
    from trainer.data.prepare import DataError

    try:
        return EXIT_OK, (engine or TrainerEngine()).run_job(config, sources=sources)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA, None
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED, None
    except JobStopped as exc:
        print(f"stopped: {exc}; run again with --resume auto to continue", file=sys.stderr)
        return 128 + exc.signum, None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130, None


def run_from_cli(config: TrainerConfig, loader: ConfigLoader) -> int:
    return execute(config, loader.sources)[0]
