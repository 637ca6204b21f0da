"""Optimizer and scheduler factories (``hyperparams.optimizer``, ``hyperparams.scheduler``).

Each is a table from name to typed options and a route into the trainer (see the two modules).
A new optimizer or schedule is one options class, one route function and one table entry. Every
method reaches them the same way: :func:`training_arguments` for its ``TrainingArguments`` and
:func:`install` on the built trainer (``trainer.methods.base.make_trainer``).
"""

from __future__ import annotations

import importlib
from typing import Any

from trainer.config.schema import HyperParams, registry_options, use_options
from trainer.optim.optimizers import OPTIMIZERS, optimizer_route
from trainer.optim.schedulers import SCHEDULERS, scheduler_route


use_options("optimizer", registry_options(OPTIMIZERS, "UnknownOptimizer", lambda entry: entry.options))
use_options("scheduler", registry_options(SCHEDULERS, "UnknownScheduler", lambda entry: entry.options))


def training_arguments(hp: HyperParams) -> dict[str, Any]:
    """The ``TrainingArguments`` fields of the configured optimizer and schedule."""
    optimizer, schedule = optimizer_route(hp.optimizer), scheduler_route(hp.scheduler)
    # an optimizer that comes through the hook still needs a valid `optim` for TrainingArguments
    return {"optim": "adamw_torch", **optimizer.arguments, **schedule.arguments}


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def install(trainer: Any, hp: HyperParams) -> None:
    """Give a built (not yet trained) trainer the optimizer and schedule that its
    ``TrainingArguments`` cannot express: the optimizer class for ``create_optimizer`` (which
    still makes the no-decay groups), and a torch schedule for ``create_scheduler``."""
    hook = optimizer_route(hp.optimizer).hook
    if hook is not None:
        path, kwargs = hook
        trainer.optimizer_cls_and_kwargs = (_import(path), {"lr": trainer.args.learning_rate, **kwargs})
    build = scheduler_route(hp.scheduler).build
    if build is None:
        return

    def create_scheduler(num_training_steps: int, optimizer: Any = None) -> Any:
        # Trainer.create_scheduler's contract: build once, keep it in lr_scheduler (a resume then
        # loads scheduler.pt into it)
        if trainer.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else trainer.optimizer
            warmup = trainer.args.get_warmup_steps(num_training_steps)
            trainer.lr_scheduler = build(optimizer, warmup, num_training_steps)
            trainer._created_lr_scheduler = True
        return trainer.lr_scheduler

    trainer.create_scheduler = create_scheduler  # this trainer's own; its class is shared


__all__ = ["OPTIMIZERS", "SCHEDULERS", "install", "training_arguments"]
