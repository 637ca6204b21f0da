"""What a training method is: typed options, the data shape it trains on, and a build step that
returns a ready transformers / TRL trainer on the shared job context.

A method module imports only pydantic at the top (so ``--validate`` stays light) and its
libraries inside :meth:`Method.build`. The engine core names no method: it asks the registry
(``trainer.methods``) for ``config.method.name`` and calls ``build``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainer import optim
from trainer.config.schema import MethodOptions

if TYPE_CHECKING:
    from trainer.config.schema import TrainerConfig
    from trainer.core.context import JobContext


# SFT's steps out of the box when the job sets epochs instead of steps (a stage counts steps).
FALLBACK_SFT_STEPS = 300


def shown(path: Path) -> str:
    """``path`` relative to the working folder where it is inside it (console lines)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# How an option names the model a stage of this job saves: "stage:1" is stage 1's model/.
STAGE_REFERENCE = "stage:"


class Method:
    """Base of every method. Subclasses set ``name``, ``Options`` and ``data_shape``."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # Which shape the data layer hands this method (DESIGN.md, "Data shapes"): "conversations"
    # (SFT's input_ids / labels), "preference", "unpaired", "labeled" (trainer.data.prepare.BUILDERS).
    data_shape: ClassVar[str] = "conversations"

    # Whether the trained model generates text: then the job sets its generation config and
    # answers the probes (previews, the final evaluation). A reward model or classifier does not.
    generates: ClassVar[bool] = True

    # A method that refines a model which already answers (DPO, KTO, SimPO, the RL methods) sets the settings of
    # its stage here: out of the box, asked to start from the untrained embedded model, the job
    # first trains SFT and then this method with them (trainer.core.out_of_box).
    refine_stage: ClassVar[dict[str, Any] | None] = None

    # Option fields that may name a stage of the job, "stage:N": the model stage N saves
    # (trainer.core.curriculum resolves them; a distillation teacher trained by stage 1).
    stage_references: ClassVar[tuple[str, ...]] = ()

    # Whether the job answers the probes with the starting model too, whatever
    # inference.evaluate_at_start says: an RL method's summary says its reward before and after.
    evaluates_at_start: ClassVar[bool] = False

    # Whether build() adds modules of its own to the model it trains (our PPO's value head): a
    # callback that rebuilds the model from its class and config (bema) cannot hold it.
    extends_model: ClassVar[bool] = False

    # Whether build() gives the trainer an eval dataset when its arguments ask to evaluate (a
    # schedule on the held-out loss, hyperparams.scheduler reduce_on_plateau, needs one).
    evaluates_heldout_loss: ClassVar[bool] = False

    @classmethod
    def out_of_box_stages(cls, config: TrainerConfig, method: dict[str, Any], dataset_path: list[str]) -> tuple[list[dict[str, Any]], str] | None:
        """The stages (raw, as a config writes them) this method runs as when the job asks it to
        start from an untrained builtin model on the bundled data, and the console line that says
        so; None: it runs as asked (``trainer.core.out_of_box``). ``method`` is the job's method
        options, ``dataset_path`` its data. By default a method with a ``refine_stage`` first
        trains SFT on the bundled conversations for the job's steps."""
        from trainer.data.bundled import CONVERSATIONS

        if cls.refine_stage is None:
            return None
        sft_steps = config.hyperparams.max_steps or FALLBACK_SFT_STEPS
        stages = [
            {"method": {"name": "sft"}, "max_steps": sft_steps, "dataset_path": [str(CONVERSATIONS)]},
            {"method": method, "dataset_path": dataset_path, **cls.refine_stage},
        ]
        note = (
            f"{config.model.path} is untrained and {cls.name} refines a model that already answers: this job runs "
            f"2 stages, sft {sft_steps} steps on {shown(CONVERSATIONS)}, then {cls.name} "
            + ", ".join(f"{key} {value}" for key, value in cls.refine_stage.items())
            + ". Set model.path to a trained model folder, or give stages, to choose yourself"
        )
        return stages, note

    def __init__(self, options: MethodOptions):
        self.options = options

    def check(self, config: TrainerConfig) -> list[str]:
        """What this method cannot train with under ``config``, each problem naming its key;
        ``--validate`` and the start of every job ask (``trainer.core.preflight``). Light: no
        model, no heavy import."""
        return []

    def load_model(self, context: JobContext) -> Any:
        """The model to train, from ``context.model_folder`` (a causal LM by default)."""
        from trainer.models.loading import load_model

        return load_model(context.model_folder, context.config, context.device, context.precision)

    def build(self, context: JobContext, model: Any, callbacks: list[Any]) -> Any:
        """A transformers ``Trainer`` (subclass) ready to ``train()``, with ``callbacks``."""
        raise NotImplementedError

    @classmethod
    def keeps_reference(cls, options: Any, config: TrainerConfig) -> bool:
        """Whether a job of this method under ``config`` keeps a separate frozen reference model
        (``reference_of`` finds it once built); light, for ``--validate``. None by default."""
        return False

    def reference_of(self, trainer: Any) -> Any:
        """The frozen reference model the built ``trainer`` compares its policy with, or None
        (none kept: a method without one, a KL coefficient of 0, or LoRA, where the reference is
        the base with the adapters off). The ``sync_ref_model`` callback moves it towards the
        policy. TRL's trainers keep theirs as ``ref_model``."""
        return getattr(trainer, "ref_model", None)

    def probe_figures(self, context: JobContext, probes: list[Any], answers: list[str]) -> dict[str, Any]:
        """Figures of the probes' answers (``answers[i]`` answers ``probes[i]``), beside the
        format and answer counts every generating method reports: e.g. an RL method's mean
        reward. Measured at the end, and at the start when the job evaluates then too."""
        return {}

    def final_metrics(self, context: JobContext, trainer: Any) -> dict[str, Any]:
        """Method-specific figures for the result and status, after training (none by default):
        e.g. held-out accuracy of a reward model, measured on ``context.data``."""
        return {}


def make_trainer(trainer_class: type, context: JobContext, model: Any, args: Any, callbacks: list[Any], **extra: Any) -> Any:
    """``trainer_class`` (a transformers / TRL trainer) on the prepared data, guarded against
    divergence (``trainer.core.divergence``), with our console lines instead of its printer."""
    from transformers import PrinterCallback

    from trainer.core.divergence import guarded
    from trainer.models import lm_head

    lm_head.install()  # small vocabularies: plain log-probs instead of TRL's tiles (a CPU's fast path)

    trainer = guarded(trainer_class)(
        model=model,
        args=args,
        train_dataset=context.data.train,
        processing_class=context.tokens.tokenizer,
        callbacks=callbacks,
        **extra,
    )
    optim.install(trainer, context.config.hyperparams)  # what TrainingArguments cannot say (trainer.optim)
    trainer.remove_callback(PrinterCallback)  # raw log dicts; ConsoleProgressCallback replaces it
    # TRL writes its own card into the run folder at each save, naming the base model None; the
    # model folder gets a true one (trainer.core.model_card)
    trainer.create_model_card = lambda *args, **kwargs: None
    return trainer


def reference_model(context: JobContext, path: str | None) -> Any:
    """The frozen reference policy from a local folder, or None: TRL then copies the starting model."""
    if not path:
        return None
    from trainer.models.loading import load_model

    return load_model(context.config.resolve_path(path), context.config, context.device, context.precision)
