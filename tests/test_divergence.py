"""A diverged run is a failed run: exit code, phase, messages, files, and never NaN shown as 0."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from core.training_status import JsonlLog, TrainingStatusWriter
from jobkit import cli, job_values, write_config
from trainer.config.schema import GuardSection
from trainer.core.runner import EXIT_DIVERGED


def strict_json(text: str):
    """Parse as a browser would: bare NaN / Infinity tokens are errors."""

    def refuse(token: str):
        raise ValueError(f"non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_huge_learning_rate_fails_the_run(tmp_path, builtin_cache):
    """The issue's case: --lr 1e6 with no warmup used to 'complete' with loss 0.0000 and exit 0."""
    values = job_values(
        tmp_path, builtin_cache, **{"hyperparams.warmup_steps": 0, "output.save_steps": 1, "hyperparams.logging_steps": 1}
    )
    proc = cli(write_config(tmp_path, values), "--lr", "1e6")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_DIVERGED, err[-3000:]
    assert "Traceback" not in err
    assert err.startswith("error: training diverged at step ")
    assert "hyperparams.learning_rate, now 1e+06" in err and "hyperparams.warmup_steps" in err
    assert "max_grad_norm" in err
    assert "loss 0.0000" not in out and "model saved" not in out

    run = tmp_path / "outputs" / "run"
    status = strict_json((tmp_path / "status.json").read_text())
    assert (status["phase"], status["status"], status["error_type"]) == ("failed", "crashed", "TrainingDiverged")
    assert status["final_model_path"] is None and status["error_traceback"] is None
    assert status["loss"] is None or math.isfinite(status["loss"])
    assert not (run / "model").exists()

    step = int(err.split("diverged at step ")[1].split(":")[0])
    result = strict_json((run / "result.json").read_text())
    assert result["status"] == "failed" and result["model_path"] is None
    assert result["diverged_at_step"] == step
    # Every checkpoint on disk predates the divergence and holds finite weights; the newest is
    # the one the message names.
    saved = sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    assert saved and max(saved) < step
    assert result["last_good_checkpoint"] == str(run / f"checkpoint-{max(saved)}")
    assert f"the last good checkpoint is {run / f'checkpoint-{max(saved)}'}" in err
    from safetensors.torch import load_file

    weights = load_file(str(run / f"checkpoint-{max(saved)}" / "model.safetensors"))
    assert all(bool(t.isfinite().all()) for t in weights.values())

    # metrics.jsonl is strict JSON; a non-finite figure is null and named as such.
    records = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["step"] <= step for r in records)
    marked = [r for r in records if "nonfinite" in r]
    assert all(r[key] is None for r in marked for key in r["nonfinite"])


@pytest.mark.slow
def test_skip_policy_skips_bad_steps_then_fails_past_its_budget(tmp_path, builtin_cache):
    values = job_values(
        tmp_path,
        builtin_cache,
        **{"hyperparams.warmup_steps": 0, "guard.on_nonfinite": "skip", "guard.max_skipped_steps": 3},
    )
    proc = cli(write_config(tmp_path, values), "--lr", "1e6")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_DIVERGED, err[-3000:]
    error = err[err.index("error: "):]
    assert "(after 3 skipped steps, guard.max_skipped_steps)" in error
    assert "guard.on_nonfinite=skip" not in error  # already the policy: no advice to switch to it
    assert err.count("skipped: the gradient norm became nan (guard.on_nonfinite=skip)") == 3


# -- the guard on its own, with a toy model -----------------------------------------------------


class _Control(SimpleNamespace):
    should_training_stop = False
    should_save = False


def _toy(grad_value: float):
    import torch

    model = torch.nn.Linear(2, 1)
    for p in model.parameters():
        p.grad = torch.full_like(p, grad_value)
    return model


def _step(guard, model, loss: float, step: int = 0):
    import torch

    guard.observe_loss(torch.tensor(loss))
    control = _Control()
    guard.on_pre_optimizer_step(None, SimpleNamespace(global_step=step), control, model=model)
    return control


def test_guard_passes_finite_steps_and_remembers_the_last_loss():
    from trainer.core.divergence import DivergenceGuard

    guard = DivergenceGuard(GuardSection())
    for step, loss in enumerate([3.0, 2.5, 2.0]):
        model = _toy(0.1)
        control = _step(guard, model, loss, step)
        assert not control.should_training_stop and all(p.grad is not None for p in model.parameters())
    assert (guard.first_step_loss, guard.last_step_loss, guard.failure) == (3.0, 2.0, None)


@pytest.mark.parametrize(("loss", "grad", "what"), [
    (float("nan"), 0.1, "the loss became nan"),
    (float("inf"), 0.1, "the loss became +inf"),
    (1.0, float("nan"), "the gradient norm became nan"),
    (1.0, float("inf"), "the gradient norm became +inf"),
])
def test_guard_fails_a_nonfinite_step_before_it_is_applied(loss, grad, what):
    from trainer.core.divergence import DivergenceGuard

    guard = DivergenceGuard(GuardSection())
    model = _toy(grad)
    control = _step(guard, model, loss, step=6)
    assert control.should_training_stop
    assert (guard.failure.step, guard.failure.what) == (7, what)
    assert all(p.grad is None for p in model.parameters())  # the optimizer will skip them


def test_guard_leaves_gradients_to_the_fp16_scaler():
    from trainer.core.divergence import DivergenceGuard

    guard = DivergenceGuard(GuardSection(), check_gradients=False)
    control = _step(guard, _toy(float("inf")), 1.0)
    assert not control.should_training_stop and guard.failure is None


def test_loss_spike_guard_skips_a_spike():
    from trainer.core.divergence import DivergenceGuard

    guard = DivergenceGuard(GuardSection(on_nonfinite="skip", loss_spike_factor=3, spike_window=3))
    for loss in (2.0, 2.1, 1.9):
        _step(guard, _toy(0.1), loss)
    spiking = _toy(0.1)
    control = _step(guard, spiking, 50.0)
    assert not control.should_training_stop and guard.skipped_steps == 1
    assert all(p.grad is None for p in spiking.parameters())
    assert guard.last_step_loss == pytest.approx(1.9)  # the skipped step is not "the loss at the last step"
    assert _step(guard, _toy(0.1), 2.2).should_training_stop is False  # and training goes on


def test_nonfinite_weights_block_a_checkpoint():
    import torch

    from trainer.core.divergence import DivergenceGuard

    guard = DivergenceGuard(GuardSection())
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    control = _Control(should_save=True)
    guard.on_step_end(None, SimpleNamespace(global_step=5), control, model=model)
    assert (control.should_save, control.should_training_stop) == (False, True)
    assert guard.failure.what == "the weights became non-finite (weight)"


def test_status_and_metrics_never_hold_nan(tmp_path):
    writer = TrainingStatusWriter(tmp_path / "status.json")
    writer.update(loss=float("nan"), grad_norm=float("inf"), final_metrics={"loss_end": float("nan")})
    status = strict_json((tmp_path / "status.json").read_text())
    assert (status["loss"], status["grad_norm"], status["final_metrics"]) == (None, None, {"loss_end": None})

    log = JsonlLog(tmp_path / "metrics.jsonl")
    log.append({"step": 3, "loss": float("nan"), "lr": 0.1})
    record = strict_json((tmp_path / "metrics.jsonl").read_text())
    assert (record["loss"], record["lr"], record["nonfinite"]) == (None, 0.1, ["loss"])


def test_summary_never_prints_nan_as_zero():
    from trainer.core.context import JobResult, format_summary

    text = format_summary(JobResult(run_dir=None, model_path=None, final_metrics={"loss_start": 6.5, "loss_end": None}))
    assert "6.5000 at start -> n/a at end" in text
    assert "nan at end" in format_summary(JobResult(None, None, {"loss_start": 1.0, "loss_end": float("nan")}))


def test_logged_nan_fails_only_under_the_fail_policy():
    from trainer.core.divergence import DivergenceGuard

    for policy, fails in (("fail", True), ("skip", False)):
        guard = DivergenceGuard(GuardSection(on_nonfinite=policy))
        control = _Control()
        guard.on_log(None, SimpleNamespace(global_step=4), control, logs={"loss": float("nan")})
        assert control.should_training_stop is fails and (guard.failure is not None) is fails
