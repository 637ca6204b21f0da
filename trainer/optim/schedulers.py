"""The scheduler factory: transformers' schedules and torch's, each with typed options, all with warmup.

``hyperparams.scheduler`` is a name (``"cosine"``) or ``{"name": "step", "step_size": 20}``.

- transformers' schedules (linear, cosine, ...) go through ``TrainingArguments.lr_scheduler_type``
  and ``lr_scheduler_kwargs``: they have warmup built in;
- torch's (step, multistep, exponential, cosineannealing, cosineannealing_warm_restarts, cyclic)
  are built by :func:`build_torch_schedule` when the trainer creates its scheduler, behind a
  linear warmup (torch's ``LinearLR`` then the schedule, in ``SequentialLR``): their step counts
  (``step_size``, ``milestones``, ``t_max``...) start after the warmup. ``onecycle`` has its own
  warm-up phase: the job's warmup sets its ``pct_start``. Every one is a torch ``LRScheduler``, so
  its state is in the checkpoint's ``scheduler.pt`` and an exact resume continues it;
- ``reduce_on_plateau`` lowers the rate when the held-out loss stops falling: the job then
  evaluates on its held-out rows every ``eval_steps`` (transformers steps it with ``eval_loss``).
  It has no warmup (transformers' schedule ignores one; ``--validate`` refuses a warmup with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from trainer.config.schema import SchedulerOptions


@dataclass(frozen=True)
class ScheduleRoute:
    """``arguments`` for TrainingArguments; ``build``: a torch schedule built when the trainer
    creates its scheduler, as ``build(optimizer, options, warmup_steps, training_steps)``."""

    arguments: dict[str, Any]
    build: Callable[..., Any] | None = None


class PlainOptions(SchedulerOptions):
    name: Literal["linear", "constant", "constant_with_warmup"] = Field(
        "linear", description="Linear decay to 0 / constant, after the warmup."
    )


class CosineOptions(SchedulerOptions):
    name: Literal["cosine"] = Field("cosine", description="Cosine decay after the warmup.")
    num_cycles: float = Field(0.5, gt=0, description="Cosine periods over the training (0.5: down to 0 once).")


class RestartsOptions(SchedulerOptions):
    name: Literal["cosine_with_restarts"] = Field("cosine_with_restarts", description="Cosine with hard restarts.")
    num_cycles: int = Field(1, ge=1, description="Hard restarts over the training.")


class PolynomialOptions(SchedulerOptions):
    name: Literal["polynomial"] = Field("polynomial", description="Polynomial decay to lr_end.")
    lr_end: float = Field(1e-7, ge=0, description="Final learning rate.")
    power: float = Field(1.0, gt=0, description="Power of the decay.")


class InverseSqrtOptions(SchedulerOptions):
    name: Literal["inverse_sqrt"] = Field("inverse_sqrt", description="1 / sqrt(step) decay.")
    timescale: int | None = Field(None, ge=1, description="Steps of the decay's time scale; unset: the warmup length.")


class MinLrOptions(SchedulerOptions):
    name: Literal["cosine_with_min_lr"] = Field("cosine_with_min_lr", description="Cosine decay to a floor.")
    num_cycles: float = Field(0.5, gt=0, description="Cosine periods over the training.")
    min_lr: float | None = Field(None, ge=0, description="The floor; or give min_lr_rate.")
    min_lr_rate: float | None = Field(None, ge=0, le=1, description="The floor as a fraction of the peak rate.")

    @model_validator(mode="after")
    def _one_floor(self) -> MinLrOptions:
        if (self.min_lr is None) == (self.min_lr_rate is None):
            raise ValueError("cosine_with_min_lr needs exactly one of min_lr and min_lr_rate")
        return self


class WSDOptions(SchedulerOptions):
    name: Literal["warmup_stable_decay"] = Field("warmup_stable_decay", description="Warmup, a flat stretch, then decay.")
    num_decay_steps: int = Field(..., ge=1, description="Steps of the final decay.")
    num_stable_steps: int | None = Field(None, ge=0, description="Steps at the peak; unset: all the steps left.")
    decay_type: Literal["linear", "cosine", "1-sqrt"] = Field("cosine", description="Shape of the decay.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final rate as a fraction of the peak.")


class StepOptions(SchedulerOptions):
    name: Literal["step"] = Field("step", description="torch's StepLR: times gamma every step_size steps.")
    step_size: int = Field(..., ge=1, description="Steps between decays (counted after the warmup).")
    gamma: float = Field(0.1, gt=0, description="Factor of each decay.")


class MultiStepOptions(SchedulerOptions):
    name: Literal["multistep"] = Field("multistep", description="torch's MultiStepLR: times gamma at each milestone.")
    milestones: list[int] = Field(..., min_length=1, description="Steps (after the warmup) where the rate decays; increasing.")
    gamma: float = Field(0.1, gt=0, description="Factor of each decay.")

    @model_validator(mode="after")
    def _increasing(self) -> MultiStepOptions:
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])) or self.milestones[0] < 1:
            raise ValueError(f"milestones must be positive and increasing; got {self.milestones}")
        return self


class ExponentialOptions(SchedulerOptions):
    name: Literal["exponential"] = Field("exponential", description="torch's ExponentialLR: times gamma every step.")
    gamma: float = Field(0.95, gt=0, description="Factor of each step's decay.")


class CosineAnnealingOptions(SchedulerOptions):
    name: Literal["cosineannealing"] = Field("cosineannealing", description="torch's CosineAnnealingLR.")
    t_max: int | None = Field(None, ge=1, description="Steps of the half period (T_max); unset: the steps after the warmup.")
    eta_min: float = Field(0.0, ge=0, description="The lowest rate.")


class WarmRestartsOptions(SchedulerOptions):
    name: Literal["cosineannealing_warm_restarts"] = Field(
        "cosineannealing_warm_restarts", description="torch's CosineAnnealingWarmRestarts."
    )
    t_0: int = Field(..., ge=1, description="Steps until the first restart (T_0).")
    t_mult: int = Field(1, ge=1, description="Factor growing each period after a restart (T_mult).")
    eta_min: float = Field(0.0, ge=0, description="The lowest rate.")


class OneCycleOptions(SchedulerOptions):
    name: Literal["onecycle"] = Field(
        "onecycle", description="torch's OneCycleLR; its warm-up phase is the job's warmup (or pct_start)."
    )
    max_lr: float | None = Field(None, gt=0, description="Peak rate; unset: hyperparams.learning_rate.")
    pct_start: float | None = Field(
        None, gt=0, lt=1, description="Share of the steps spent rising; unset: the job's warmup share, else 0.3."
    )
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="Shape of both phases.")
    div_factor: float = Field(25.0, gt=0, description="Starting rate is max_lr / div_factor.")
    final_div_factor: float = Field(1e4, gt=0, description="Final rate is the starting rate / final_div_factor.")
    three_phase: bool = Field(False, description="A third phase down to the final rate.")


class CyclicOptions(SchedulerOptions):
    name: Literal["cyclic"] = Field("cyclic", description="torch's CyclicLR between base_lr and max_lr.")
    base_lr: float | None = Field(None, gt=0, description="Lower rate; unset: a tenth of max_lr.")
    max_lr: float | None = Field(None, gt=0, description="Upper rate; unset: hyperparams.learning_rate.")
    step_size_up: int = Field(..., ge=1, description="Steps of each rising half cycle.")
    step_size_down: int | None = Field(None, ge=1, description="Steps of each falling half; unset: step_size_up.")
    mode: Literal["triangular", "triangular2", "exp_range"] = Field("triangular", description="Cycle shape.")
    gamma: float = Field(1.0, gt=0, description="exp_range's decay per step.")


class PlateauOptions(SchedulerOptions):
    name: Literal["reduce_on_plateau"] = Field(
        "reduce_on_plateau",
        description="torch's ReduceLROnPlateau on the held-out loss, evaluated every eval_steps (no warmup).",
    )
    eval_steps: int = Field(10, ge=1, description="Evaluate the held-out loss every this many steps.")
    factor: float = Field(0.1, gt=0, lt=1, description="Factor of each reduction.")
    patience: int = Field(2, ge=0, description="Evaluations without improvement before reducing.")
    threshold: float = Field(1e-4, ge=0, description="Smallest change counted as improvement.")
    cooldown: int = Field(0, ge=0, description="Evaluations to wait after a reduction.")
    min_lr: float = Field(0.0, ge=0, description="The lowest rate.")


def _transformers(schedule: str, **kwargs: Any) -> ScheduleRoute:
    return ScheduleRoute({"lr_scheduler_type": schedule, "lr_scheduler_kwargs": kwargs})


def _fields(options: SchedulerOptions, *names: str) -> dict[str, Any]:
    return {name: getattr(options, name) for name in names if getattr(options, name) is not None}


def _with_warmup(optimizer: Any, schedule: Any, warmup_steps: int) -> Any:
    """``schedule`` after a linear warmup: step k of the warmup trains at lr * (k + 1) / (warmup + 1)
    (transformers' warmup spends step 0 at lr 0; torch's LinearLR cannot start at 0)."""
    from torch.optim.lr_scheduler import LinearLR, SequentialLR

    if warmup_steps <= 0:
        return schedule
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, schedule], milestones=[warmup_steps])


def _torch(make: Callable[[Any, Any, int, int], Any]) -> Callable[[SchedulerOptions], ScheduleRoute]:
    """A route for a torch schedule ``make(optimizer, options, warmup_steps, training_steps)``,
    behind the job's warmup; transformers is told "constant" (its scheduler is replaced)."""

    def route(options: SchedulerOptions) -> ScheduleRoute:
        def build(optimizer: Any, warmup_steps: int, training_steps: int) -> Any:
            return _with_warmup(optimizer, make(optimizer, options, warmup_steps, training_steps), warmup_steps)

        return ScheduleRoute({"lr_scheduler_type": "constant"}, build)

    return route


def _step(opt, o, warmup, total):
    from torch.optim.lr_scheduler import StepLR

    return StepLR(opt, step_size=o.step_size, gamma=o.gamma)


def _multistep(opt, o, warmup, total):
    from torch.optim.lr_scheduler import MultiStepLR

    return MultiStepLR(opt, milestones=o.milestones, gamma=o.gamma)


def _exponential(opt, o, warmup, total):
    from torch.optim.lr_scheduler import ExponentialLR

    return ExponentialLR(opt, gamma=o.gamma)


def _cosine_annealing(opt, o, warmup, total):
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return CosineAnnealingLR(opt, T_max=o.t_max or max(1, total - warmup), eta_min=o.eta_min)


def _warm_restarts(opt, o, warmup, total):
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

    return CosineAnnealingWarmRestarts(opt, T_0=o.t_0, T_mult=o.t_mult, eta_min=o.eta_min)


def _cyclic(opt, o, warmup, total):
    from torch.optim.lr_scheduler import CyclicLR

    peak = o.max_lr or opt.param_groups[0]["lr"]
    return CyclicLR(
        opt, base_lr=o.base_lr or peak / 10, max_lr=peak, step_size_up=o.step_size_up,
        step_size_down=o.step_size_down, mode=o.mode, gamma=o.gamma,
        cycle_momentum=False,  # AdamW has no momentum to cycle; the rate is what cycles
    )


def _onecycle(options: OneCycleOptions) -> ScheduleRoute:
    def build(optimizer: Any, warmup_steps: int, training_steps: int) -> Any:
        from torch.optim.lr_scheduler import OneCycleLR

        share = options.pct_start or (warmup_steps / training_steps if 0 < warmup_steps < training_steps else 0.3)
        return OneCycleLR(
            optimizer, max_lr=options.max_lr or optimizer.param_groups[0]["lr"], total_steps=max(2, training_steps),
            pct_start=share, anneal_strategy=options.anneal_strategy, div_factor=options.div_factor,
            final_div_factor=options.final_div_factor, three_phase=options.three_phase,
            cycle_momentum=False,
        )

    return ScheduleRoute({"lr_scheduler_type": "constant"}, build)


def _plateau(o: PlateauOptions) -> ScheduleRoute:
    # transformers builds torch's ReduceLROnPlateau and steps it with each evaluation's eval_loss
    kwargs = {"mode": "min", **_fields(o, "factor", "patience", "threshold", "cooldown", "min_lr")}
    return ScheduleRoute({
        "lr_scheduler_type": "reduce_lr_on_plateau", "lr_scheduler_kwargs": kwargs,
        "eval_strategy": "steps", "eval_steps": o.eval_steps, "metric_for_best_model": "eval_loss",
    })


@dataclass(frozen=True)
class SchedulerEntry:
    options: type[SchedulerOptions]
    route: Callable[[Any], ScheduleRoute]


SCHEDULERS: dict[str, SchedulerEntry] = {
    "linear": SchedulerEntry(PlainOptions, lambda o: _transformers("linear")),
    # transformers' "constant" ignores the warmup; with it, "constant" is its constant_with_warmup
    "constant": SchedulerEntry(PlainOptions, lambda o: _transformers("constant_with_warmup")),
    "constant_with_warmup": SchedulerEntry(PlainOptions, lambda o: _transformers("constant_with_warmup")),
    "cosine": SchedulerEntry(CosineOptions, lambda o: _transformers("cosine", num_cycles=o.num_cycles)),
    "cosine_with_restarts": SchedulerEntry(RestartsOptions, lambda o: _transformers("cosine_with_restarts", num_cycles=o.num_cycles)),
    "polynomial": SchedulerEntry(PolynomialOptions, lambda o: _transformers("polynomial", lr_end=o.lr_end, power=o.power)),
    "inverse_sqrt": SchedulerEntry(InverseSqrtOptions, lambda o: _transformers("inverse_sqrt", **_fields(o, "timescale"))),
    "cosine_with_min_lr": SchedulerEntry(
        MinLrOptions, lambda o: _transformers("cosine_with_min_lr", **_fields(o, "num_cycles", "min_lr", "min_lr_rate"))
    ),
    "warmup_stable_decay": SchedulerEntry(
        WSDOptions,
        lambda o: _transformers("warmup_stable_decay", **_fields(o, "num_decay_steps", "num_stable_steps", "decay_type", "min_lr_ratio")),
    ),
    "step": SchedulerEntry(StepOptions, _torch(_step)),
    "multistep": SchedulerEntry(MultiStepOptions, _torch(_multistep)),
    "exponential": SchedulerEntry(ExponentialOptions, _torch(_exponential)),
    "cosineannealing": SchedulerEntry(CosineAnnealingOptions, _torch(_cosine_annealing)),
    "cosineannealing_warm_restarts": SchedulerEntry(WarmRestartsOptions, _torch(_warm_restarts)),
    "cyclic": SchedulerEntry(CyclicOptions, _torch(_cyclic)),
    "onecycle": SchedulerEntry(OneCycleOptions, _onecycle),
    "reduce_on_plateau": SchedulerEntry(PlateauOptions, _plateau),
}


def scheduler_route(options: SchedulerOptions) -> ScheduleRoute:
    """The route of a validated ``hyperparams.scheduler``."""
    return SCHEDULERS[options.name].route(options)
