"""Out of the box: a method named on the embedded defaults gets the data and the start it needs.

On a fresh clone the config points at the bundled conversations and the untrained embedded
model, and ``python trainer/cli_main.py --method dpo --profile regime3`` must still train
something worth having. Two things are filled in, each said in one console line and recorded in
``resolved_config.json`` (so a resume compares like with like):

- **data**: a method whose data shape is not conversations, given the bundled conversations,
  trains on the bundled file of its own shape (``trainer.data.bundled``);
- **start**: a method asked to start from an untrained builtin model on the bundled data may run
  as stages instead (``Method.out_of_box_stages``): a method that refines a model which already
  answers (``Method.refine_stage``: DPO, KTO, SimPO, GRPO, RLOO, PPO) runs SFT on the bundled
  conversations with the job's steps, then the method with its refine settings; distillation
  with no teacher first trains the embedded teacher by SFT, then distils it into the job's model.

What the user chose themselves (their own data files, a model folder, stages) is left alone.
The pre-flight checks (``--validate``, and a resume's comparison with the run it continues) see
the config filled in, as the job does; filling in twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from trainer.config.schema import TrainerConfig
from trainer.data.bundled import BUNDLED, CONVERSATIONS
from trainer.methods import method_class
from trainer.methods.base import shown
from trainer.models.builtin import BUILTIN_PREFIX


def fill_in(config: TrainerConfig) -> tuple[TrainerConfig, list[str]]:
    """``config`` with the out-of-the-box data and start filled in, and a line for each."""
    notes: list[str] = []
    data = config.model_dump(mode="json")
    bundled_job_data = _is_bundled_conversations(config, config.data.dataset_path)
    if config.stages:
        for number, stage in enumerate(config.stages):
            own = _bundled_for(stage.method.name)
            if stage.dataset_path is None and bundled_job_data and own is not None:
                data["stages"][number]["dataset_path"] = [str(own)]
                notes.append(f"stages[{number}] ({stage.method.name}) trains on the bundled {_shape(stage.method.name)} data {shown(own)}")
        return TrainerConfig.model_validate(data), notes

    name = config.method.name
    own = _bundled_for(name)
    if bundled_job_data and own is not None:
        data["data"]["dataset_path"] = [str(own)]
        notes.append(f"method {name} trains on the bundled {_shape(name)} data {shown(own)} (data.dataset_path names the conversations)")
    on_bundled = all(config.resolve_path(p).resolve() in BUNDLED.values() for p in data["data"]["dataset_path"])
    if config.model.path.startswith(BUILTIN_PREFIX) and on_bundled:
        start = method_class(name).out_of_box_stages(config, data["method"], data["data"]["dataset_path"])
        if start is not None:
            data["stages"], note = start
            notes.append(note)
    return TrainerConfig.model_validate(data), notes


def _is_bundled_conversations(config: TrainerConfig, paths: list[str]) -> bool:
    return [config.resolve_path(p).resolve() for p in paths] == [CONVERSATIONS]


def _bundled_for(method: str) -> Path | None:
    """The bundled file of the method's shape, where that is not the conversations."""
    shape = method_class(method).data_shape
    path = BUNDLED.get(shape)
    return None if path is None or path == CONVERSATIONS else path


def _shape(method: str) -> str:
    return method_class(method).data_shape.replace("_", " ")

