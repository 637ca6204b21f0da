"""Layer 1: the engine.

``TrainerEngine`` and friends load lazily (PEP 562): the engine pulls in transformers, and
processes that only need ``trainer.core.runner``'s exit codes (the daemon) should not pay for it.
"""

from typing import Any

__all__ = ["JobResult", "JobStopped", "TrainerEngine"]


def __getattr__(name: str) -> Any:
    if name == "TrainerEngine":
        from trainer.core import engine

        return engine.TrainerEngine
    if name in __all__:
        from trainer.core import context

        return getattr(context, name)
    raise AttributeError(f"module 'trainer.core' has no attribute {name!r}")
