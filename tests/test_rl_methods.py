"""GRPO and RLOO behind the registry: prompts from SFT-shaped data, rewards, checks, and both end
to end on the tiny model; a daemon job file that names grpo."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pytest

from jobkit import CLI, REPO, SCHEMA, job_values, load_weights, tensorboard_scalars, write_config
from trainer.config import create_default_config
from trainer.methods import get_method

LENGTH_REWARD = {"type": "length", "target": 60, "unit": "chars"}  # varies across any completions


def _validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args, "--validate"], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_grpo_losses_are_trls():
    from trl import GRPOConfig

    from trainer.methods.grpo import GRPOLoss

    help_text = GRPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    for loss in typing.get_args(GRPOLoss):
        assert f"'{loss}'" in help_text, loss


def test_groups_must_divide_the_batch():
    bad = create_default_config(overrides={"method": {"name": "grpo", "num_generations": 3}, "hyperparams.batch_size": 8})
    assert get_method(bad.method).check(bad) == [
        "method.num_generations: 3 completions per prompt must divide the batch of 8 (hyperparams.batch_size 8 x "
        "gradient_accumulation_steps 1) for method grpo; e.g. set it to 8"
    ]
    good = create_default_config(overrides={"method": {"name": "rloo", "num_generations": 4}, "hyperparams.batch_size": 8})
    assert get_method(good.method).check(good) == []


def test_validate_reports_every_reward_problem_at_once_and_passes_a_good_spec():
    bad = '{"type": "weighted_sum", "components": [{"type": "blue"}, {"type": "format", "weight": "x"}]}'
    proc = _validate("--method", "grpo", "--set", f"method.reward={bad}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "method.reward.components[0].type: unknown reward 'blue'; did you mean 'bleu'?" in proc.stderr
    assert "method.reward.components[1].weight: expected a number; got 'x' (str)" in proc.stderr
    good = '{"type": "weighted_sum", "components": [{"type": "format"}, {"type": "bleu", "weight": 0.5}]}'
    proc = _validate("--method", "rloo", "--set", f"method.reward={good}")
    assert proc.returncode == 0, proc.stderr


def test_prompts_come_from_sft_shaped_rows_with_their_reference(tmp_path, tiny_tokenizer):
    from trainer.data.prepare import prepare_data
    from trainer.models.templates import CHATML_TEMPLATE
    from trainer.profiles import get_profile

    rows = [json.loads(line) for line in (REPO / "data" / "arithmetic_train.jsonl").read_text().splitlines()[:30]]
    long_row = {**rows[0], "question": " ".join([rows[0]["question"]] * 30)}
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, long_row]))
    config = create_default_config(overrides={
        "data.dataset_path": [str(tmp_path / "rows.jsonl")], "data.holdout_size": 4, "data.max_length": 256,
        "data.max_reject_fraction": 0.5, "data.cache_dir": str(tmp_path / "cache"),
    })
    eos = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")}
    data = prepare_data(config, tiny_tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "run", shape="prompts")
    assert data.report.rows_used == 26 and data.report.rows_held_out == 4 and data.report.rows_rejected == 1
    assert list(data.report.rejected_by_reason) == ["length: prompt longer than data.max_length"]
    first = data.train[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]  # the answer is not in the prompt
    assert first["reference"].strip().splitlines()[-1].startswith("Answer:")  # regime3's rendering
    assert first["expected"] is not None and first["expected"] in first["reference"]
    assert len(data.probes) == 4 and all(p.golden for p in data.probes)


def _rl_job(tmp_path, builtin_cache, tiny_model_dir, method: str):
    import jsonschema
    import torch

    values = job_values(tmp_path, builtin_cache, **{
        "model.path": str(tiny_model_dir), "hyperparams.batch_size": 4, "hyperparams.max_steps": 4,
        "hyperparams.logging_steps": 1, "hyperparams.learning_rate": 1e-3, "inference.preview_every_steps": 0,
        "output.save_steps": 2, "output.report_to": ["tensorboard"],
        "method": {"name": method, "num_generations": 2, "max_completion_length": 16, "reward": LENGTH_REWARD},
    })
    proc = subprocess.run([sys.executable, str(CLI), "--config", str(write_config(tmp_path, values))],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out reward: " in proc.stdout and " at start -> " in proc.stdout
    run = tmp_path / "outputs" / "run"
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert (status["phase"], status["method"]) == ("completed", method)
    figures = status["method_metrics"]
    for key in ("reward", "reward_std", "rewards/length/mean", "completions/mean_length"):
        assert isinstance(figures[key], float), key
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all(0 <= r["reward"] <= 1 for r in records)
    # a few of each step's completions, with their rewards, in metrics.jsonl and the status
    assert all(0 < len(r["samples"]) <= 4 for r in records)
    sample = status["rl_samples"][0]
    assert sample["step"] == 4 and sample["prompt"] and isinstance(sample["completion"], str)
    assert sample["reward"] == pytest.approx(sample["rewards"]["length"]) and 0 <= sample["reward"] <= 1
    result = json.loads((run / "result.json").read_text())["final_metrics"]
    assert 0 <= result["heldout_reward"] <= 1 and 0 <= result["heldout_reward_at_start"] <= 1
    assert (run / "checkpoint-4").is_dir() and (run / "model" / "config.json").is_file()
    before, after = load_weights(tiny_model_dir), load_weights(run / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the method's own figures reach the tracker, step for step, and the held-out ones at the end
    curves = tensorboard_scalars(run / "tensorboard")
    assert [v for _, v in curves["train/reward"]] == pytest.approx([r["reward"] for r in records], rel=1e-5)
    assert len(curves["train/rewards/length/mean"]) == 4
    assert curves["final/heldout_reward"][-1][1] == pytest.approx(result["heldout_reward"], rel=1e-5)
    return records


@pytest.mark.slow
def test_grpo_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    records = _rl_job(tmp_path, builtin_cache, tiny_model_dir, "grpo")
    assert all("clip_ratio/region_mean" in r and "entropy" in r for r in records)


@pytest.mark.slow
def test_rloo_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    records = _rl_job(tmp_path, builtin_cache, tiny_model_dir, "rloo")
    assert all("kl" in r for r in records)  # RLOO's KL to the reference (beta 0.05) is in its reward


@pytest.mark.slow
def test_a_daemon_job_file_that_names_grpo(tmp_path, builtin_cache):
    from test_daemon import Daemon

    daemon = Daemon(tmp_path, builtin_cache, **{"hyperparams.batch_size": 4, "hyperparams.max_steps": 2})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("\n".join((REPO / "data" / "arithmetic_train.jsonl").read_text().splitlines()[:40]) + "\n")
    method = {"name": "grpo", "num_generations": 2, "max_completion_length": 8, "reward": LENGTH_REWARD}
    daemon.drop("rl.job.json", [json.dumps({"dataset": str(tmp_path / "data" / "rows.jsonl"), "overrides": {"method": method}})])
    daemon.start()
    try:
        daemon.wait(lambda: daemon.jobs("done") or daemon.jobs("failed"), timeout=300)
    finally:
        daemon.stop()
    assert not daemon.jobs("failed"), (daemon.jobs("failed")[0] / "error.txt").read_text()
    status = json.loads((daemon.jobs("done")[0] / "training_status.json").read_text())
    assert status["method"] == "grpo" and "rewards/length/mean" in status["method_metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_a_completion_cut_by_a_stop_string_ends_there(tmp_path, builtin_cache, tiny_model_dir, method):
    """Generation pads a row that a stop string ended to the batch's length with the pad token,
    which is not an end token to TRL. Without ``trainer.methods.rl.StopStringEnds`` those pads
    were completion tokens: measured on this job, every row of a batch was as long as its longest
    (7 and 11 tokens at steps 1 and 2, min = max), and that longest row counted as clipped (0.125)."""
    from trainer.core import TrainerEngine

    values = job_values(tmp_path, builtin_cache, **{
        "model.path": str(tiny_model_dir), "hyperparams.batch_size": 8, "hyperparams.max_steps": 2,
        "hyperparams.logging_steps": 1, "inference.preview_every_steps": 0, "inference.num_probes": 2,
        "profile.stop_sequences": ["e"],  # random tokens spell an "e" within a few tokens
        "method": {"name": method, "num_generations": 2, "max_completion_length": 16, "reward": LENGTH_REWARD},
    })
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:  # measured with the fix: mean 3.6 / 3.5, min 2, max 8 / 12 (one pad each)
        assert r["completions/mean_length"] < 6, r
        assert r["completions/min_length"] < r["completions/max_length"], r
        assert r["completions/clipped_ratio"] == 0, r  # no row ran to the 16-token cap


def test_stop_string_ends_rules():
    from trainer.methods.rl import StopStringEnds

    class Tokenizer:
        pad_token_id = 0

        def decode(self, ids):
            return "".join({5: "a", 6: "b", 7: "\n\n\n", 8: "\n\n\nx"}.get(i, "?") for i in ids)

    rows = [
        [5, 2],  # ended by its end token: TRL's cut stands
        [5, 7, 0, 0],  # stopped, then filled with pads: one pad stays as its end
        [5, 0, 7, 0],  # a pad sampled mid-row stays; the filler after the stop goes to one pad
        [5, 6, 7],  # the last row to stop, short of the cap: it gets its pad
        [5, 6, 5, 6],  # ran to the cap without a stop: clipped, as before
        [5, 6, 5, 7],  # stopped right at the cap
        [5, 6, 5, 8],  # stopped at the cap by a last token that runs past the stop string
    ]

    class Generated:  # what TRL's _generate_single_turn returned for a batch
        def _generate_single_turn(self):
            return [list(r) for r in rows], None

    class Trainer(StopStringEnds, Generated):
        eos_token_ids, max_completion_length, _tokenizer = [2], 4, Tokenizer()
        generation_kwargs = {"stop_strings": ["\n\n\n"]}  # as TRL keeps its generate arguments

    ids, logprobs = Trainer()._generate_single_turn()
    assert ids == [[5, 2], [5, 7, 0], [5, 0, 7, 0], [5, 6, 7, 0], [5, 6, 5, 6], [5, 6, 5, 7, 0], [5, 6, 5, 8, 0]]
    assert logprobs is None

    class RLOO(Trainer):  # RLOO returns the ids alone; a pad that is the end token works alike
        eos_token_ids = [0]

        def _generate_single_turn(self):
            return StopStringEnds._generate_single_turn(self)

    Generated._generate_single_turn = lambda self: [[5, 7, 0], [5, 6, 7]]
    assert RLOO()._generate_single_turn() == [[5, 7, 0], [5, 6, 7, 0]]  # the last row to stop is not clipped
    Trainer.generation_kwargs = {}  # no stop strings: nothing to do
    assert Trainer()._generate_single_turn() == [[5, 7, 0], [5, 6, 7]]
