"""``bema``: TRL's BEMA (bias-corrected exponential moving average of the weights), saved as a
second full model in ``<run>/bema`` beside the trained ``model/``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trainer.callbacks.base import CallbackJob, NamedCallback
from trainer.config.schema import CallbackOptions


class BEMAOptions(CallbackOptions):
    name: Literal["bema"] = Field("bema", description="TRL's BEMA: an averaged model saved in <run>/bema.")
    update_freq: int = Field(400, ge=1, description="Update the averaged weights every this many steps (TRL's default).")
    ema_power: float = Field(0.5, ge=0, description="Power of the EMA decay (kappa); 0 turns the EMA off.")
    bias_power: float = Field(0.2, ge=0, description="Power of the bias correction's decay (eta).")
    lag: int = Field(10, ge=0, description="Virtual starting age of the updates (rho).")
    update_after: int = Field(0, ge=0, description="Burn-in steps before the average starts (tau).")
    multiplier: float = Field(1.0, gt=0, description="Initial EMA decay factor (gamma).")
    min_ema_multiplier: float = Field(0.0, ge=0, description="Lower bound of the EMA decay factor.")


class BEMA(NamedCallback):
    name = "bema"
    Options = BEMAOptions

    @classmethod
    def check(cls, config: Any, options: BEMAOptions, key: str) -> list[str]:
        problems = []
        if config.model.lora is not None:
            # TRL rebuilds the model from its class and config to hold the average: an adapter
            # wrapper cannot be rebuilt that way, and averaging adapters alone is not BEMA's model
            problems.append(f"{key}: bema averages the full weights; with model.lora only adapters train. "
                            "Drop bema or model.lora")
        from trainer.methods import method_class

        extended = [m.name for m in config.stage_methods() if method_class(m.name).extends_model]
        if extended:
            problems.append(f"{key}: bema rebuilds the model from its class and config, and method {extended[0]} adds "
                            "modules of its own to it (PPO's value head); drop bema for this job")
        stages = [(f"stages[{i}].max_steps", stage.max_steps) for i, stage in enumerate(config.stages)]
        for where, steps in stages or [("hyperparams.max_steps", config.hyperparams.max_steps)]:
            if steps is not None and options.update_after + options.update_freq > steps:
                problems.append(f"{key}.update_freq: {options.update_freq} steps after update_after {options.update_after} "
                                f"is past {where} {steps}, so that run's bema/ would hold its starting weights; "
                                "lower update_freq")
                break
        return problems

    @classmethod
    def build(cls, job: CallbackJob, options: BEMAOptions) -> Any:
        from trl import BEMACallback

        class SavedBEMA(BEMACallback):
            """TRL's, and the folder it writes stands alone: the tokenizer (with the saved chat
            template, which carries the profile's system prompt) and the generation settings."""

            def on_train_end(self, args, state, control, **kwargs):
                super().on_train_end(args, state, control, **kwargs)
                if state.is_world_process_zero:
                    folder = f"{args.output_dir}/bema"
                    job.save_tokenizer(folder)
                    model = kwargs.get("model")
                    if getattr(model, "generation_config", None) is not None:
                        model.generation_config.save_pretrained(folder)

        settings = options.model_dump(exclude={"name"})
        return SavedBEMA(**settings, device="cpu")  # the average lives in host memory, as TRL advises
