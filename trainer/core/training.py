"""The training half of a job: load the model, build the method's trainer with our callbacks,
train, evaluate the probes, save. Which trainer is built is the method's business
(``trainer.methods``); nothing here names one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import distributed
from core.training_status import JsonlLog
from trainer.core.checkpoints import find_resumable_checkpoint
from trainer.core.context import JobContext, JobResult, format_summary, is_main_process, probes_for
from trainer.core.divergence import (
    Divergence,
    DivergenceGuard,
    TrainingDiverged,
    advice,
    nonfinite_parameters,
)
from trainer.callbacks import CallbackJob, build_callbacks
from trainer.judges import build_judge
from trainer.methods import get_method
from trainer.monitoring.callbacks import (
    ConsoleProgressCallback,
    Pace,
    PreviewCallback,
    StatusCallback,
)
from trainer.monitoring.preview_backend import PreviewBackend, PreviewSummary
from trainer.monitoring.win_rate import WinRateCallback, WinRateTracker
from trainer.models.templates import with_default_system
from trainer.trackers import TrackerSession


def set_generation_config(model: Any, tokenizer: Any, eos_ids: set[int], max_new_tokens: int) -> None:
    """Make a plain ``generate`` stop where training taught the model to end its turn."""
    gen = model.generation_config
    gen.eos_token_id = sorted(i for i in eos_ids if i is not None)
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.max_new_tokens = max_new_tokens
    gen.do_sample = False
    for name in ("temperature", "top_p", "top_k"):  # sampling-only settings clash with greedy
        setattr(gen, name, None)
    model.config.eos_token_id = gen.eos_token_id[0] if len(gen.eos_token_id) == 1 else gen.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


def _loss_history(trainer: Any, guard: DivergenceGuard) -> tuple[float | None, float | None]:
    """The loss at the first step (from the log history, which a resume restores) and at the
    last step (the guard sees every step; the log only every ``logging_steps``)."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    start = losses[0] if losses else guard.first_step_loss
    end = guard.last_step_loss if guard.last_step_loss is not None else (losses[-1] if losses else None)
    return start, end


def _raise_if_diverged(s: JobContext, guard: DivergenceGuard, model: Any, step: int) -> None:
    """A non-finite step, or non-finite weights now: record the failure and raise."""
    failure = guard.failure
    if failure is None:
        bad = nonfinite_parameters(model)
        if bad:
            failure = Divergence(step, f"the weights became non-finite ({', '.join(bad)})")
    if failure is None:
        return
    checkpoint = find_resumable_checkpoint(s.run_dir)  # every saved checkpoint was checked finite
    error = TrainingDiverged(failure.step, failure.what, str(checkpoint) if checkpoint else None, advice(s.config))
    if s.writer.enabled:
        result = {
            "status": "failed",
            "error_type": type(error).__name__,
            "error_message": str(error),
            "run_dir": str(s.run_dir),
            "model_path": None,
            "last_good_checkpoint": error.last_checkpoint,
            "diverged_at_step": failure.step,
        }
        s.layout.result.write_text(json.dumps(result, indent=2), "utf-8")
    raise error


def _resume_from(s: JobContext) -> str | None:
    checkpoint = s.plan.checkpoint  # chosen and checked by trainer.core.resume.plan_run
    if checkpoint is not None:
        print(f"resuming from {checkpoint}", file=s.console, flush=True)
    return str(checkpoint) if checkpoint else None


def _probe_figures(s: JobContext, method: Any, probes: list[Any], summary: Any, before: Any) -> dict[str, Any]:
    """The method's figures of the probes' answers at the end, and (suffixed ``_at_start``) at
    the start when the starting model answered them too."""
    if not probes:
        return {}
    figures = method.probe_figures(s, probes, [r.model_output for r in summary.records])
    if before is not None:
        start = method.probe_figures(s, probes, [r.model_output for r in before.records])
        figures.update({f"{key}_at_start": value for key, value in start.items()})
    return figures


def _win_rate_tracker(s: JobContext, probes: list[Any], log: JsonlLog) -> WinRateTracker | None:
    """The win rate against the starting model, when the job measures it (rank 0: it answers the probes)."""
    if not s.config.inference.win_rate_every_steps or not probes:
        return None
    judge = build_judge(s.config.inference.judge, s.profile, s.device)
    return WinRateTracker(judge, probes, s.run_dir, s.writer, log)


def save_tokenizer(s: JobContext, folder: Path | str) -> None:
    """The tokenizer into ``folder`` with the template we trained with, which puts the profile's
    system prompt in when a conversation has none (serving stacks mostly send none;
    trainer.models.templates): for every folder a job saves a model in."""
    tok = s.tokens
    trained, tok.tokenizer.chat_template = tok.tokenizer.chat_template, with_default_system(tok.template, s.system_prompt)
    try:
        tok.tokenizer.save_pretrained(str(folder))
    finally:
        tok.tokenizer.chat_template = trained


def _write_card(s: JobContext, method: Any, model_path: Path, metrics: dict[str, Any], probes: list[Any]) -> None:
    """The model folder's README.md (trainer.core.model_card), from the job's records."""
    from core.run_layout import STAGE_PREFIX
    from trainer.core.model_card import CARD, render_card

    report = json.loads(s.layout.data_report.read_text("utf-8")) if s.layout.data_report.is_file() else {}
    stage = f"as {s.run_dir.name} of the curriculum in `{s.run_dir.parent.name}`" if s.run_dir.name.startswith(STAGE_PREFIX) else None
    question = next((m["content"] for m in probes[0].messages if m["role"] == "user"), None) if probes else None
    config = s.config.model_dump(mode="json")
    config["model"]["precision"] = s.precision  # what it trained in, not "auto"
    card = render_card(
        run_name=s.run_dir.name, base_model=s.config.model.path, method=method.name, generates=method.generates,
        profile=s.config.profile.name, system_prompt=s.system_prompt, config=config,
        report=report, metrics=metrics, model_folder=model_path, stage=stage, example_question=question,
    )
    (model_path / CARD).write_text(card, "utf-8")


def train_and_save(s: JobContext) -> JobResult:
    output = s.config.output
    with TrackerSession(output.report_to, s.run_dir, s.config.resolve_path(output.output_dir), output.project) as trackers:
        return _train_and_save(s, trackers)


def _train_and_save(s: JobContext, trackers: TrackerSession) -> JobResult:
    from trainer.models import lora
    from trainer.models.cpu import keep_freed_memory
    from trainer.models.loading import load_model, model_width, pick_device, resolve_precision

    config, writer, tok = s.config, s.writer, s.tokens
    method = get_method(config.method)
    writer.set_phase("loading_model")
    s.device = pick_device(config.system.device)
    s.precision = resolve_precision(config.model.precision, s.device, model_width(s.model_folder))
    if s.device == "cpu" and config.system.keep_freed_memory:
        keep_freed_memory()
    model = method.load_model(s)
    if config.model.lora is not None:  # every method trains adapters alike (trainer.models.lora)
        model = lora.apply(model, config.model.lora, "CAUSAL_LM" if method.generates else "SEQ_CLS", config.hyperparams.seed)
    s.stop_if_asked()
    if method.generates:
        set_generation_config(model, tok.tokenizer, tok.eos_ids, config.inference.max_new_tokens)

    # probes are answered by rank 0 alone: the others train on (core.distributed)
    probes = probes_for(config, s.profile, s.data) if method.generates and is_main_process() else []
    stops = s.stop_sequences
    end_tokens = [t for t in {tok.end_token, tok.tokenizer.eos_token, tok.tokenizer.pad_token} if t]
    backend = PreviewBackend(tok.tokenizer, s.profile, probes, config.inference, tok.template, stops, end_tokens)
    previews = JsonlLog(s.layout.previews, enabled=writer.enabled)
    metrics_log = JsonlLog(s.layout.metrics, enabled=writer.enabled)
    pace = Pace()
    preview_cb = PreviewCallback(backend, writer, previews, config.inference.preview_every_steps)
    guard = DivergenceGuard(config.guard, check_gradients=s.precision != "float16")
    console_progress = ConsoleProgressCallback(pace, s.console)
    callbacks = [
        guard,  # first: a diverged step is judged before anything records or saves it
        StatusCallback(writer, metrics_log, pace),
        console_progress,
        preview_cb,
        s.stopper,
    ]
    tracker = _win_rate_tracker(s, probes, metrics_log)
    if tracker is not None:
        callbacks.append(WinRateCallback(tracker, backend, config.inference.win_rate_every_steps))
    trainer = method.build(s, model, callbacks)
    trackers.attach(trainer, config.model_dump(mode="json"))
    job = CallbackJob(s, trainer, method, backend, trackers, console_progress, lambda folder: save_tokenizer(s, folder))
    for callback in build_callbacks(job, config.callbacks):
        trainer.add_callback(callback)  # the config's own (trainer.callbacks), after ours
    resume = _resume_from(s)
    if resume is not None:
        step = json.loads((Path(resume) / "trainer_state.json").read_text("utf-8"))["global_step"]
        for log in (previews, metrics_log):
            log.keep_steps_up_to(step)
    before = None
    if (config.inference.evaluate_at_start or method.evaluates_at_start) and probes and resume is None:
        # The starting model's answers, so "before" and "after" are measured on the same probes.
        writer.set_phase("evaluating")
        before = backend.run(model, 0, limit=len(probes))
        preview_cb.record(before)
    if tracker is not None and not (resume is not None and tracker.load_start()):
        if resume is not None:
            print("win rate: this run saved no starting answers; they are generated now, from the weights the run "
                  "started from (before its checkpoint loads)", file=s.console, flush=True)
        writer.set_phase("evaluating")
        start = before if before is not None else backend.run(model, 0, limit=len(probes))
        tracker.keep_start([r.model_output for r in start.records])
    writer.set_phase("training")
    trainer.train(resume_from_checkpoint=resume)
    if distributed.any_rank(s.stopper.received is not None):  # all ranks stop, or none
        checkpoint = find_resumable_checkpoint(s.run_dir)
        s.stop_if_asked(str(checkpoint) if checkpoint else None)

    step = trainer.state.global_step
    _raise_if_diverged(s, guard, model, step)
    writer.set_phase("evaluating")
    summary = backend.run(model, step, loss=writer.status.loss, limit=len(probes)) if probes else PreviewSummary([])
    preview_cb.record(summary)
    method_figures = method.final_metrics(s, trainer)
    if tracker is not None:
        won = tracker.measure(step, [r.model_output for r in summary.records])
        method_figures.update(win_rate=won.rate, win_rate_wins=won.wins, win_rate_ties=won.ties, win_rate_losses=won.losses,
                              win_rate_judge=config.inference.judge.name)
    method_figures.update(_probe_figures(s, method, probes, summary, before))

    writer.set_phase("saving")
    model_path = s.layout.model
    # every rank calls the trainer's save (FSDP / DeepSpeed gather the weights for it); it writes
    # on rank 0 only, as our own saves here do
    if config.model.lora is not None:
        full_base = lambda folder: load_model(folder, config, s.device, s.precision, quantize=False)  # noqa: E731
        model = lora.save(trainer, model, model_path, s.layout.adapter, config.model.lora, is_main_process(), full_base)
    else:
        trainer.save_model(str(model_path))
    if is_main_process():
        for folder in (model_path, s.layout.adapter) if config.model.lora is not None else (model_path,):
            save_tokenizer(s, folder)
        if method.generates:
            model.generation_config.save_pretrained(str(model_path))
    distributed.barrier()  # no rank reports the job done before the model is on disk

    loss_start, loss_end = _loss_history(trainer, guard)
    metrics = {
        "loss_start": loss_start,
        "loss_end": loss_end,
        "steps": step,
        "probes": len(summary.records),
        "probes_format_ok": summary.format_ok,
        "probes_correct": summary.correct,
        **(
            {"probes_format_ok_at_start": before.format_ok, "probes_correct_at_start": before.correct}
            if before is not None
            else {}
        ),
        "train_runtime_s": round(pace.elapsed(), 1),
        "skipped_steps": guard.skipped_steps,
        "method": method.name,
        **method_figures,
    }
    trackers.final(metrics, step, is_main_process())
    if is_main_process():
        _write_card(s, method, model_path, metrics, probes)
    result = JobResult(s.run_dir, model_path, metrics, probes=probes)
    if writer.enabled:
        s.layout.result.write_text(json.dumps(result.to_json(), indent=2), "utf-8")
    writer.set_phase("completed", final_model_path=str(model_path), final_metrics=metrics, progress=1.0)
    print(format_summary(result), file=s.console, flush=True)
    return result
