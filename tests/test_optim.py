"""The optimizer and scheduler factories (trainer.optim): every name built by a real transformers
Trainer, one step taken, its state saved and restored; the options' errors; the schedules' rates;
a job killed under a torch schedule resumes to the same weights and rate as an uninterrupted one."""

from __future__ import annotations

import json

import pytest

from jobkit import job_values, load_weights, straight_and_killed
from trainer import optim
from trainer.config import ConfigError, create_default_config
from trainer.config.schema import HyperParams
from trainer.core.preflight import check_config
from trainer.optim import OPTIMIZERS, SCHEDULERS

# The least each needs; a name missing here is built with its defaults.
OPTIONS = {
    "step": {"step_size": 2},
    "multistep": {"milestones": [2, 4]},
    "cosineannealing_warm_restarts": {"t_0": 3},
    "cyclic": {"step_size_up": 2},
    "warmup_stable_decay": {"num_decay_steps": 3},
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
}


class Toy:
    """A model with what the no-decay groups are about: weights, biases and a norm."""

    @staticmethod
    def make():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Linear(64, 128)  # over bitsandbytes' 4096-element 8-bit floor
                self.norm = torch.nn.LayerNorm(128)
                self.out = torch.nn.Linear(128, 1)

            def forward(self, x):
                return self.out(self.norm(self.proj(x)))

        torch.manual_seed(0)
        return Net()


def _trainer(tmp_path, hp: HyperParams, model, warmup: int = 2):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-2, weight_decay=0.1, warmup_steps=warmup,
        use_cpu=True, report_to=[], **optim.training_arguments(hp),
    )
    trainer = Trainer(model=model, args=args)
    optim.install(trainer, hp)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    return trainer


def _step(trainer, batch) -> None:
    trainer.model(batch).pow(2).mean().backward()
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    trainer.optimizer.zero_grad()


def _hp(optimizer="adamw", scheduler="linear") -> HyperParams:
    return create_default_config(overrides={"hyperparams.optimizer": optimizer, "hyperparams.scheduler": scheduler}).hyperparams


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_steps_saves_and_restores(tmp_path, name):
    import torch

    batch = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    hp = _hp(optimizer=name)
    first = _trainer(tmp_path, hp, Toy.make(), warmup=0)
    before = {n: p.detach().clone() for n, p in first.model.named_parameters()}
    _step(first, batch)
    assert any(not torch.equal(before[n], p) for n, p in first.model.named_parameters()), "one step changed nothing"

    # no weight decay on biases and the norm; decay on the weights
    decay = {id(p) for g in first.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in first.model.named_parameters() if id(p) in decay}
    assert names == {"proj.weight", "out.weight"}, names

    # a second trainer given the first's state, through a file as a checkpoint holds it,
    # continues exactly as the first does
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.lr_scheduler.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    second_model = Toy.make()
    second_model.load_state_dict(first.model.state_dict())
    second = _trainer(tmp_path, hp, second_model, warmup=0)
    assert type(second.optimizer) is type(first.optimizer)
    second.optimizer.load_state_dict(state["optimizer"])
    second.lr_scheduler.load_state_dict(state["scheduler"])
    _step(first, batch)
    _step(second, batch)
    for (n, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters()):
        torch.testing.assert_close(a, b, msg=n)


def test_optimizer_options_reach_the_optimizer(tmp_path):
    model = Toy.make()
    sgd = _trainer(tmp_path, _hp(optimizer={"name": "sgd", "momentum": 0.9, "nesterov": True}), model).optimizer
    assert type(sgd).__name__ == "SGD" and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"] is True
    adagrad = _trainer(tmp_path, _hp(optimizer={"name": "adagrad", "initial_accumulator_value": 0.5}), Toy.make()).optimizer
    assert type(adagrad).__name__ == "Adagrad" and adagrad.defaults["initial_accumulator_value"] == 0.5
    adam = _trainer(tmp_path, _hp(optimizer={"name": "adamw", "betas": [0.8, 0.95], "fused": False}), Toy.make()).optimizer
    assert adam.defaults["betas"] == (0.8, 0.95) and not adam.defaults.get("fused")
    assert _trainer(tmp_path, _hp(), Toy.make()).optimizer.defaults["fused"] is True  # the default: fused AdamW
    factor = _trainer(tmp_path, _hp(optimizer={"name": "adafactor", "beta1": 0.9, "clip_threshold": 2.0}), Toy.make()).optimizer
    assert type(factor).__name__ == "Adafactor" and factor.defaults["beta1"] == 0.9 and factor.defaults["clip_threshold"] == 2.0
    lion = _trainer(tmp_path, _hp(optimizer="lion_8bit"), Toy.make()).optimizer
    assert type(lion).__name__ == "Lion" and lion.defaults["betas"] == (0.9, 0.99)


# reduce_on_plateau steps on evaluations, not per step: tested end to end below
@pytest.mark.parametrize("name", sorted(set(SCHEDULERS) - {"reduce_on_plateau"}))
def test_every_schedule_warms_up_and_resumes_the_same(tmp_path, name):
    import torch
    batch = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    hp = _hp(scheduler={"name": name, **OPTIONS.get(name, {})})
    straight = _trainer(tmp_path, hp, Toy.make())
    rates = [straight.lr_scheduler.get_last_lr()[0]]
    for _ in range(8):
        _step(straight, batch)
        rates.append(straight.lr_scheduler.get_last_lr()[0])
    assert all(r >= 0 and r == r for r in rates), rates
    if name != "cyclic":  # cyclic starts at its base rate: no warmup of its own to prove
        assert rates[0] < rates[2] or name == "onecycle" and rates[0] < max(rates), rates  # the warmup rises

    # resumed after 3 steps from the state a checkpoint holds, the rates go on the same
    first = _trainer(tmp_path, hp, Toy.make())
    for _ in range(3):
        _step(first, batch)
    again = _trainer(tmp_path, hp, Toy.make())
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.lr_scheduler.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    again.optimizer.load_state_dict(state["optimizer"])
    again.lr_scheduler.load_state_dict(state["scheduler"])
    resumed = [again.lr_scheduler.get_last_lr()[0]]
    for _ in range(5):
        _step(again, batch)
        resumed.append(again.lr_scheduler.get_last_lr()[0])
    assert resumed == pytest.approx(rates[3:], rel=1e-9), (rates, resumed)


def test_torch_step_schedule_rates(tmp_path):
    """warmup 2 (lr/3, 2lr/3), then StepLR(step_size 2, gamma 0.5) from the peak."""
    import torch

    trainer = _trainer(tmp_path, _hp(scheduler={"name": "step", "step_size": 2, "gamma": 0.5}), Toy.make())
    rates = [trainer.lr_scheduler.get_last_lr()[0]]
    for _ in range(6):
        _step(trainer, torch.ones(2, 64))
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
    assert rates == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3])


def test_transformers_schedule_options_arrive():
    args = optim.training_arguments(_hp(scheduler={"name": "polynomial", "power": 2.0}))
    assert args["lr_scheduler_type"] == "polynomial" and args["lr_scheduler_kwargs"] == {"lr_end": 1e-7, "power": 2.0}
    assert optim.training_arguments(_hp(scheduler="constant"))["lr_scheduler_type"] == "constant_with_warmup"


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"hyperparams.optimizer": "adamww"}, "hyperparams.optimizer.name: expected one of"),
        ({"hyperparams.optimizer": "adamww"}, "did you mean 'adamw'?"),
        ({"hyperparams.optimizer": {"name": "sgd", "momentm": 0.9}}, "hyperparams.optimizer.momentm: unknown key; did you mean hyperparams.optimizer.momentum?"),
        ({"hyperparams.optimizer": {"name": "sgd", "nesterov": True}}, "nesterov needs momentum > 0"),
        ({"hyperparams.optimizer": {"name": "adamw", "betas": [0.9, 1.5]}}, "betas must each lie in [0, 1)"),
        ({"hyperparams.scheduler": "cosin"}, "did you mean 'cosine'?"),
        ({"hyperparams.scheduler": "step"}, "hyperparams.scheduler.step_size: required key is missing"),
        ({"hyperparams.scheduler": {"name": "multistep", "milestones": [4, 2]}}, "milestones must be positive and increasing"),
        ({"hyperparams.scheduler": {"name": "cosine_with_min_lr"}}, "exactly one of min_lr and min_lr_rate"),
        ({"hyperparams.scheduler": {"name": "onecycle", "pct_start": 1.5}}, "hyperparams.scheduler.pct_start"),
    ],
)
def test_bad_optimizer_and_schedule_options_are_named(values, expected):
    with pytest.raises(ConfigError) as caught:
        create_default_config(overrides=values)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"hyperparams.optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True}},
        {"hyperparams.optimizer": "paged_adamw_8bit"},
        {"hyperparams.scheduler": {"name": "multistep", "milestones": [2, 4]}},
        {"hyperparams.scheduler": {"name": "cosine_with_min_lr", "min_lr": 1e-5}},
    ],
)
def test_good_optimizer_and_schedule_options_pass(values):
    config = create_default_config(overrides=values)
    assert config.model_dump(mode="json")["hyperparams"]["optimizer"]["name"]  # saved as a full object
    again = create_default_config(overrides={"hyperparams": config.model_dump(mode="json")["hyperparams"]})
    assert again.hyperparams == config.hyperparams  # a saved config reads back the same


def test_plateau_schedule_needs_held_out_rows_and_a_method_that_evaluates(tmp_path, builtin_cache):
    plateau = {"hyperparams.scheduler": "reduce_on_plateau", "hyperparams.warmup_steps": 0}
    fine = create_default_config(overrides=job_values(tmp_path, builtin_cache, **plateau))
    assert not [p for p in check_config(fine) if "scheduler" in p]
    warm = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{**plateau, "hyperparams.warmup_steps": 3}))
    assert "hyperparams.scheduler: reduce_on_plateau has no warmup (transformers' schedule ignores it); set " \
        "hyperparams.warmup_steps to 0, or choose another schedule" in check_config(warm)
    none_held = create_default_config(overrides=job_values(tmp_path, builtin_cache, **plateau, **{"data.holdout_size": 0}))
    assert any("data.holdout_size is 0" in p for p in check_config(none_held))
    dpo = create_default_config(overrides=job_values(tmp_path, builtin_cache, **plateau, **{"method.name": "dpo"}))
    assert any("reduce_on_plateau steps on the held-out loss, which method dpo does not evaluate" in p for p in check_config(dpo))


@pytest.mark.slow
def test_plateau_schedule_evaluates_and_lowers_the_rate(tmp_path, builtin_cache):
    from trainer.core import TrainerEngine

    # patience 0 and a threshold no real step clears: every evaluation counts as a plateau
    values = job_values(tmp_path, builtin_cache, **{
        "hyperparams.scheduler": {"name": "reduce_on_plateau", "eval_steps": 3, "patience": 0, "factor": 0.5, "threshold": 10.0},
        "hyperparams.max_steps": 9, "hyperparams.warmup_steps": 0, "inference.preview_every_steps": 0, "output.save_steps": 9,
    })
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    history = json.loads((result.run_dir / "checkpoint-9" / "trainer_state.json").read_text())["log_history"]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(evals) == 3 and all(e == e for e in evals)
    rates = [h["learning_rate"] for h in history if "learning_rate" in h]
    assert rates[-1] < rates[0] / 3, rates  # halved after each of the evaluations


@pytest.mark.slow
def test_sigkill_under_a_torch_schedule_then_resume_equals_uninterrupted(tmp_path, builtin_cache):
    import torch

    common = {
        "hyperparams.max_steps": 12, "output.save_steps": 4, "output.save_total_limit": 3,
        "hyperparams.optimizer": {"name": "sgd", "momentum": 0.9},
        "hyperparams.scheduler": {"name": "multistep", "milestones": [3, 6], "gamma": 0.5},
        "inference.preview_every_steps": 0, "inference.num_probes": 2, "hyperparams.logging_steps": 1,
    }
    straight_run, run, _ = straight_and_killed(tmp_path, builtin_cache, common, kill_at=4)

    def rates(folder):
        return {r["step"]: r["learning_rate"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                if r.get("learning_rate") is not None}

    straight_rates, resumed_rates = rates(straight_run), rates(run)
    assert resumed_rates[12] == pytest.approx(straight_rates[12]) and straight_rates[12] < straight_rates[4]
    assert resumed_rates == pytest.approx(straight_rates)
    straight, again = load_weights(straight_run / "model"), load_weights(run / "model")
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_gradient_accumulation_equals_the_larger_batch(tmp_path, builtin_cache):
    import torch

    from trainer.core import TrainerEngine

    common = {"hyperparams.max_steps": 4, "inference.preview_every_steps": 0, "inference.num_probes": 1, "output.save_steps": 100}
    big = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "big", "hyperparams.batch_size": 8}))
    small = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{
        "output.run_name": "accumulated", "hyperparams.batch_size": 4, "hyperparams.gradient_accumulation_steps": 2,
    }))
    a, b = (load_weights(TrainerEngine().run_job(c).run_dir / "model") for c in (big, small))
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=2e-5, rtol=1e-4, msg=name)


def test_an_option_set_on_a_schedule_given_by_name(tmp_path):
    from trainer.config import ConfigLoader

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hyperparams": {"scheduler": "cosine"}}))
    config = ConfigLoader(path).apply({"hyperparams.scheduler.num_cycles": 1}, "--set")
    assert config.hyperparams.scheduler.name == "cosine" and config.hyperparams.scheduler.num_cycles == 1


def test_bf16_is_refused_on_a_gpu_without_it(tmp_path, builtin_cache, monkeypatch):
    import torch

    from trainer.core.preflight import check_precision

    bf16 = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.precision": "bfloat16"}))
    assert check_precision(bf16) == [] or torch.cuda.is_available()  # a CPU autocasts in bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert check_precision(bf16) == ["model.precision: bfloat16 needs a GPU that computes in bf16, and Tesla T4 does not; "
                                     "use float16 (mixed precision) or float32"]
    mixed = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.precision": "bfloat16-mixed"}))
    assert check_precision(mixed) == ["model.precision: bfloat16-mixed needs a GPU that computes in bf16, and Tesla T4 does not; "
                                      "use float16 (mixed precision) or float32"]
    cpu = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.precision": "bfloat16", "system.device": "cpu"}))
    assert check_precision(cpu) == []


@pytest.mark.slow
# SFT only: a CPU without AVX512-BF16 or AMX has no bf16 matmul path (1.2 GFLOP/s against 115 in fp32 on one), and a DPO job in
# bf16 (its SFT stage first) took 447 s of CI
@pytest.mark.parametrize("method, precision", [("sft", "bfloat16"), ("sft", "bfloat16-mixed"), ("sft", "float16")])
def test_mixed_precision_trains_on_a_cpu(tmp_path, builtin_cache, method, precision, monkeypatch):
    """Autocast on CPU: the loss stays finite and falls, the weights keep the precision's dtype
    (bf16 weights; bfloat16-mixed and fp16 autocast over fp32 weights), and the bf16 ones train
    on bucketed rows (trainer.models.buckets)."""
    import torch

    from jobkit import REPO
    from trainer.core import TrainerEngine
    from trainer.models import buckets

    bucketed = []
    original = buckets.padded_row
    monkeypatch.setattr(buckets, "padded_row", lambda *a, **k: bucketed.append(original(*a, **k)) or bucketed[-1])

    values = {"model.precision": precision, "hyperparams.max_steps": 6, "inference.preview_every_steps": 0, "inference.num_probes": 1}
    if method == "dpo":  # on its own pairs, after the out-of-the-box SFT stage
        values.update({"method.name": "dpo", "data.dataset_path": [str(REPO / "data" / "preferences_train.jsonl")], "data.max_rows": 40})
    result = TrainerEngine().run_job(create_default_config(overrides=job_values(tmp_path, builtin_cache, **values)))
    metrics = result.final_metrics
    assert metrics["loss_end"] == metrics["loss_end"] and metrics["loss_end"] < metrics["loss_start"]
    weights = load_weights(result.model_path)
    assert {w.dtype for w in weights.values()} == {torch.bfloat16 if precision == "bfloat16" else torch.float32}
    # every training row under bf16 was one call (most of them filled); fp16 is never bucketed
    assert (sum(row is not None for row in bucketed) >= 3) == precision.startswith("bfloat16"), bucketed


def test_a_resume_keeps_the_optimizer_and_a_torch_schedule_its_length(tmp_path):
    from trainer.core.resume import training_differences

    def saved(**values):
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        config = create_default_config(overrides=values)
        (run / "resolved_config.json").write_text(json.dumps({"config": config.model_dump(mode="json")}))
        return run

    # written before optimizers took options: the same fused AdamW as today's default
    old = saved(**{"hyperparams.optimizer": "adamw_torch_fused"})
    assert training_differences(create_default_config(), old) == []
    assert any(d.startswith("hyperparams.optimizer: was") for d in training_differences(create_default_config(overrides={"hyperparams.optimizer": "sgd"}), old))
    step = {"hyperparams.scheduler": {"name": "step", "step_size": 5}, "hyperparams.max_steps": 20}
    torch_run = saved(**step)
    longer = create_default_config(overrides={**step, "hyperparams.max_steps": 40})
    assert training_differences(longer, torch_run) == [
        "hyperparams.max_steps: was 20, now 40 (a torch schedule's length is in its saved state)"]
    linear_run = saved(**{"hyperparams.max_steps": 20})
    assert training_differences(create_default_config(overrides={"hyperparams.max_steps": 40}), linear_run) == []
    lora_run = saved(**{"model.lora": {"r": 4}})
    assert training_differences(create_default_config(overrides={"model.lora": {"r": 4, "merge": False}}), lora_run) == []
    assert training_differences(create_default_config(), lora_run)[0].startswith("model.lora: was")
