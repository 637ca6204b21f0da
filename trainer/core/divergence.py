"""Divergence: a run whose loss, gradients or weights went non-finite has failed.

transformers' own answer to a NaN loss is ``logging_nan_inf_filter``: it leaves the bad step out
of the logged average and keeps training, so a run whose every weight is NaN reports loss 0.0 and
"completes". We turn that filter off (the logs show the truth) and watch every optimizer step:

- :class:`GuardedTrainer` (a mixin over any transformers / TRL trainer) hands each micro-batch's
  loss to the guard, since callbacks never see per-step losses;
- :class:`DivergenceGuard` (a ``TrainerCallback``) checks the step's loss and gradients before the
  optimizer applies them. A bad step never reaches the weights: its gradients are dropped (a
  parameter whose ``grad`` is None is skipped by every torch optimizer, moments included). With
  ``guard.on_nonfinite = "fail"`` training stops there; with ``"skip"`` the step is skipped and
  training goes on, until more than ``guard.max_skipped_steps`` steps were skipped. An optional
  loss-spike rule skips steps whose loss jumps far above its recent average;
- before a checkpoint is written, the weights are checked, so every checkpoint on disk is finite
  and "the last good checkpoint" is simply the newest complete one.

The engine raises :class:`TrainingDiverged` after ``train()`` returns; the runner turns it into
``EXIT_DIVERGED`` with a message that says which step, what went non-finite and what to try.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from core import distributed
from trainer.config.schema import GuardSection

log = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """The loss, gradients or weights went non-finite: the run failed and no model was saved."""

    def __init__(self, step: int, what: str, last_checkpoint: str | None, advice: str = ""):
        self.step = step
        self.what = what
        self.last_checkpoint = last_checkpoint
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was saved before it diverged"
        )
        super().__init__(
            f"training diverged at step {step}: {what}. No final model was saved; {where}."
            + (f" Try {advice}." if advice else "")
        )


@dataclass
class Divergence:
    """The first non-finite (or, past the skip budget, spiking) step."""

    step: int
    what: str


def is_finite(value: Any) -> bool:
    """True for a finite number or one-element tensor; None counts as finite (not measured)."""
    if value is None:
        return True
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def nonfinite_parameters(model: Any, limit: int = 3) -> list[str]:
    """Names of (up to ``limit``) parameters holding NaN or Inf."""
    import torch

    bad = []
    for name, param in model.named_parameters():
        if not torch.isfinite(param.detach()).all():
            bad.append(name)
            if len(bad) >= limit:
                break
    return bad


def _describe(value: float) -> str:
    return "nan" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


class DivergenceGuard(TrainerCallback):
    """Watches each optimizer step; see the module docstring."""

    def __init__(self, settings: GuardSection, check_gradients: bool = True):
        self.settings = settings
        # fp16 mixed precision: its gradient scaler meets Inf gradients on purpose (while it
        # finds its scale) and skips those steps itself, so only the loss is ours to judge there.
        self.check_gradients = check_gradients
        self.failure: Divergence | None = None
        self.skipped_steps = 0
        self.first_step_loss: float | None = None
        self.last_step_loss: float | None = None
        self._step_loss: Any = None  # sum of this step's micro-batch losses (a tensor)
        self._recent: list[float] = []

    # -- fed by GuardedTrainer.training_step -------------------------------------------------
    def observe_loss(self, loss: Any) -> None:
        loss = loss.detach()
        self._step_loss = loss if self._step_loss is None else self._step_loss + loss

    # -- callback events ----------------------------------------------------------------------
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        step = state.global_step + 1  # the step this update would complete
        loss = None if self._step_loss is None else float(self._step_loss)
        self._step_loss = None
        problem = self._problem(loss, model)
        # every rank decides alike (one rank's NaN loss is that rank's alone; gradients are
        # averaged already), or one would skip or stop while the others wait on it
        if distributed.any_rank(problem is not None) and problem is None:
            problem = "another process's loss became non-finite or spiked (its log says which)"
        if problem is None:
            if loss is not None:
                self._remember(loss)
            return
        _drop_gradients(model)  # the bad step never reaches the weights
        if self.settings.on_nonfinite == "skip" and self.skipped_steps < self.settings.max_skipped_steps:
            self.skipped_steps += 1
            log.warning("step %d skipped: %s (guard.on_nonfinite=skip)", step, problem)
            return
        if self.settings.on_nonfinite == "skip":
            problem += f" (after {self.skipped_steps} skipped steps, guard.max_skipped_steps)"
        self.failure = Divergence(step, problem)
        control.should_training_stop = True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.failure is not None:
            control.should_save = False  # nothing after the divergence is "good"
            return
        if control.should_save and model is not None:
            bad = nonfinite_parameters(model)
            if bad:
                self.failure = Divergence(state.global_step, f"the weights became non-finite ({', '.join(bad)})")
                control.should_save = False
                control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Belt and braces for trainers whose loss does not pass through training_step. Under
        # "skip", a skipped step's NaN is inside the logged window average by design.
        if self.settings.on_nonfinite == "fail" and self.failure is None and logs and not is_finite(logs.get("loss")):
            self.failure = Divergence(state.global_step, f"the logged loss became {_describe(float(logs['loss']))}")
            control.should_training_stop = True
            control.should_save = False

    # -- judgement ----------------------------------------------------------------------------
    def _problem(self, loss: float | None, model: Any) -> str | None:
        if loss is not None and not math.isfinite(loss):
            return f"the loss became {_describe(loss)}"
        if self.check_gradients and model is not None:
            norm = _gradient_norm(model)
            if norm is not None and not math.isfinite(norm):
                return f"the gradient norm became {_describe(norm)}"
        factor = self.settings.loss_spike_factor
        if factor is not None and loss is not None and len(self._recent) >= self.settings.spike_window:
            mean = sum(self._recent) / len(self._recent)
            if loss > factor * mean:
                return f"the loss spiked to {loss:.4g}, over {factor:g} x its recent mean {mean:.4g}"
        return None

    def _remember(self, loss: float) -> None:
        if self.first_step_loss is None:
            self.first_step_loss = loss
        self.last_step_loss = loss
        self._recent = [*self._recent, loss][-self.settings.spike_window :]


def _gradient_norm(model: Any) -> float | None:
    """The global L2 norm of the gradients (after clipping; clipping keeps NaN and Inf)."""
    import torch

    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


def _drop_gradients(model: Any) -> None:
    for param in model.parameters():
        param.grad = None


class GuardedTrainer:
    """Mixin for a transformers ``Trainer`` subclass: reports each micro-batch's loss to the
    :class:`DivergenceGuard` among its callbacks. Use :func:`guarded` to apply it."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        guard = getattr(self, "_divergence_guard", None)
        if guard is None:
            guard = next((c for c in self.callback_handler.callbacks if isinstance(c, DivergenceGuard)), False)
            self._divergence_guard = guard
        if guard:
            guard.observe_loss(loss)
        return loss


_GUARDED: dict[type, type] = {}


def guarded(trainer_class: type) -> type:
    """``trainer_class`` with :class:`GuardedTrainer` mixed in (one subclass per class)."""
    if trainer_class not in _GUARDED:
        _GUARDED[trainer_class] = type(f"Guarded{trainer_class.__name__}", (GuardedTrainer, trainer_class), {})
    return _GUARDED[trainer_class]


def advice(config: Any) -> str:
    """What to try, with the values in force."""
    hp = config.hyperparams
    warmup = f"now {hp.warmup_steps} steps" if hp.warmup_steps else (
        f"now ratio {hp.warmup_ratio}" if hp.warmup_ratio else "now none"
    )
    text = (
        f"a lower learning rate (hyperparams.learning_rate, now {hp.learning_rate:g}), "
        f"warmup (hyperparams.warmup_steps, {warmup}) or tighter gradient clipping "
        f"(hyperparams.max_grad_norm, now {hp.max_grad_norm:g})"
    )
    if config.guard.on_nonfinite == "fail":
        text += "; --set guard.on_nonfinite=skip skips bad steps instead of failing"
    return text
