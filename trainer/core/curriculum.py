"""Curricula: ``stages: [...]`` runs several methods in order on the same model, in one job.

Each stage is a whole run of its own inside the job's folder (``<run>/stage-<N>-<method>/``, with
its own checkpoints, metrics, data report and model), trained from the model the previous stage
saved. So everything a single run does (status, divergence, resume) holds per stage, and
``--resume auto`` continues inside the stage where the job stopped: stages already done resume
at their last checkpoint, which trains no step, and hand on the same model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from core.run_layout import RunLayout, stage_folder
from trainer.config.schema import TrainerConfig
from trainer.core import stage_cache
from trainer.core.context import JobResult, is_main_process
from trainer.methods import method_class
from trainer.methods.base import STAGE_REFERENCE

if TYPE_CHECKING:
    from trainer.core.engine import TrainerEngine


stage_name = stage_folder  # the folder name is the run layout's (core.run_layout)


def stage_configs(config: TrainerConfig, run_dir: Path) -> list[TrainerConfig]:
    """One complete job config per stage: the job's settings with the stage's method, steps,
    data and length, writing into ``run_dir/stage-N-<method>``, starting from the previous
    stage's model."""
    base = config.model_dump(mode="json")
    out, previous = [], None
    for index, stage in enumerate(config.stages, start=1):
        data = copy.deepcopy(base)
        name = stage_name(index, stage.method.name)
        data["stages"], data["hybrid"] = [], None  # a stage is one run; the job's hybrid is these stages
        data["method"] = stage.method.model_dump(mode="json")
        data["hyperparams"].update(max_steps=stage.max_steps, num_epochs=None)
        if stage.learning_rate is not None:
            data["hyperparams"]["learning_rate"] = stage.learning_rate
        if stage.warmup_steps is not None:
            data["hyperparams"].update(warmup_steps=stage.warmup_steps, warmup_ratio=None)
        if stage.dataset_path is not None:
            data["data"]["dataset_path"] = stage.dataset_path
        if stage.max_length is not None:
            data["data"]["max_length"] = stage.max_length
        data["output"].update(output_dir=str(run_dir), run_name=name)
        # A stage resumes only inside a job that resumes; a fresh job refuses stage folders
        # with checkpoints already (trainer.core.resume.plan_run).
        data["output"]["resume"] = "auto" if config.output.resume is not None else None
        if stage.model_path is not None:
            data["model"]["path"] = stage.model_path
        elif previous is not None and not config.debug.dry_run:  # a dry run trains no model to hand on
            data["model"]["path"] = str(previous)
        for key in method_class(stage.method.name).stage_references:  # "stage:N": the model stage N saves
            reference = data["method"].get(key)
            if isinstance(reference, str) and reference.startswith(STAGE_REFERENCE) and not config.debug.dry_run:
                number = int(reference[len(STAGE_REFERENCE):])
                data["method"][key] = str(run_dir / stage_name(number, config.stages[number - 1].method.name) / "model")
        out.append(TrainerConfig.model_validate(data))
        previous = run_dir / name / "model"
    return out


def run_curriculum(engine: TrainerEngine, config: TrainerConfig, run_dir: Path, sources: dict[str, str]) -> JobResult:
    """Run every stage in order; the job's result is the last stage's, with every stage's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = stage_configs(config, run_dir)
    results = []
    for index, (stage, stage_config) in enumerate(zip(config.stages, configs), start=1):
        print(f"=== stage {index}/{len(configs)}: {stage_config.method.name} ({stage_config.output.run_name})", file=engine.console, flush=True)
        cached = stage_cache.restore(stage_config) if stage.cache and not config.debug.dry_run else None
        if cached is not None:
            print(f"stage {index}: its model is cached from an earlier job with the same settings and data "
                  f"({cached.final_metrics['from_cache']}); not trained again", file=engine.console, flush=True)
            results.append(cached)
            continue
        result = engine.run_single(stage_config, sources, stage=(index, len(configs)))
        if stage.cache and not result.dry_run:
            stage_cache.publish(stage_config, result)
        results.append(result)
    last = results[-1]
    stages = [
        {"stage": i, "method": c.method.name, "run_dir": str(r.run_dir), "model_path": str(r.model_path) if r.model_path else None, "final_metrics": r.final_metrics}
        for i, (c, r) in enumerate(zip(configs, results), start=1)
    ]
    result = JobResult(run_dir, last.model_path, {**last.final_metrics, "stages": stages}, dry_run=last.dry_run, probes=last.probes)
    if is_main_process():
        RunLayout(run_dir).result.write_text(json.dumps(result.to_json(), indent=2), "utf-8")
    return result
