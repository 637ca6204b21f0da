"""The CLI's training action: run a job through the engine and turn outcomes into exit codes.

User errors (bad config, bad data) print one clear message and no traceback; a signal stop
exits 128 + signal number, like a shell reports it; anything else is a bug and shows its
traceback (the status file has the error either way).
"""

from __future__ import annotations

import sys

from trainer.config import ConfigError, ConfigLoader, TrainerConfig
from trainer.config.checks import check_config

EXIT_OK, EXIT_FAILED = 0, 1


def run_from_cli(config: TrainerConfig, loader: ConfigLoader) -> int:
    problems = check_config(config)
    if problems:
        raise ConfigError(problems)
    from trainer.core.engine import JobStopped, TrainerEngine
    from trainer.data.prepare import DataError

    try:
        TrainerEngine().run_job(config, sources=loader.sources)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except JobStopped as exc:
        print(f"stopped: {exc}; run again with --resume auto to continue", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK
