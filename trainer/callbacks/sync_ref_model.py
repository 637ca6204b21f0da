"""``sync_ref_model``: TRL's reference-model sync (TR-DPO), for every method that keeps a frozen
reference (DPO, KTO, GRPO and RLOO with a KL term, our PPO): every ``every_steps`` steps the
reference moves towards the policy, ``ref = (1 - alpha) * ref + alpha * policy``.

TRL wires its ``SyncRefModelCallback`` only into the trainers whose config has
``sync_ref_model`` (DPO, GRPO, RLOO; not KTO, not ours), reading the period and the mix from that
config, and its sync zips the two models' parameters in order, which misaligns on a policy that
carries more than its reference (our PPO's value head). So the mix here pairs parameters by name;
the arithmetic is TRL's. ZeRO-3 sharded weights are not gathered for it (untested here: no GPU)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions


class SyncRefModelOptions(CallbackOptions):
    name: Literal["sync_ref_model"] = Field("sync_ref_model", description="Move the reference model towards the policy.")
    every_steps: int = Field(512, ge=1, description="Sync every this many steps (TRL's ref_model_sync_steps default).")
    alpha: float = Field(0.6, gt=0, le=1, description="Mix: ref = (1 - alpha) * ref + alpha * policy (TRL's ref_model_mixup_alpha default).")


class SyncRefModel(NamedCallback):
    name = "sync_ref_model"
    Options = SyncRefModelOptions

    @classmethod
    def check(cls, config: Any, options: SyncRefModelOptions, key: str) -> list[str]:
        from trainer.methods import method_class

        # job-wide, like every callback: it syncs the stages that keep a reference (the DPO stage
        # of SFT -> DPO) and leaves the others alone; refused when no stage keeps one
        methods = config.stage_methods()
        if not any(method_class(m.name).keeps_reference(m, config) for m in methods):
            return [f"{key}: sync_ref_model moves a frozen reference model, and method {methods[-1].name} keeps none under "
                    "this config (a method without one, a KL coefficient beta of 0, or model.lora, where the reference is "
                    "the base with the adapters off)"]
        return []

    @classmethod
    def build(cls, job: CallbackJob, options: SyncRefModelOptions) -> Any:
        from transformers import TrainerCallback

        if not job.method.keeps_reference(job.method.options, job.context.config):
            return None  # a stage without a reference (the SFT stage before DPO)
        reference = job.method.reference_of(job.trainer)
        if reference is None:  # check() refuses every known case; a custom method may still land here
            raise ValueError(f"sync_ref_model: the {job.method.name} trainer keeps no reference model to sync")
        accelerator = getattr(job.trainer, "accelerator", None)

        class SyncEvery(TrainerCallback):
            def __init__(self):
                self.syncs = 0

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % options.every_steps == 0:
                    mix(accelerator.unwrap_model(model) if accelerator else model, reference, options.alpha)
                    self.syncs += 1

        return SyncEvery()


def mix(policy: Any, reference: Any, alpha: float) -> None:
    """``reference = (1 - alpha) * reference + alpha * policy``, parameter by parameter, by name."""
    import torch

    with torch.no_grad():
        params = dict(policy.named_parameters())
        for name, ref_param in reference.named_parameters():
            ref_param.mul_(1.0 - alpha).add_(params[name].to(ref_param.dtype), alpha=alpha)
