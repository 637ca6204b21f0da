"""PPO (``trainer.methods.ppo``): the arithmetic on known tensors, the options and checks, and
real runs on the tiny model: what it writes, that it learns a trivially rewarded behaviour,
that ``target_kl`` stops updates early, and that a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from jobkit import SCHEMA, job_values, load_weights

from trainer.config import create_default_config
from trainer.methods.ppo import PPO, PPOOptions
from trainer.methods.ppo_trainer import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    completion_end,
    gae,
    kl_per_token,
    masked_whiten,
    policy_loss,
    process_scores,
    token_rewards,
    value_loss,
)

SHORT = {"type": "python:ppo_rewards:short_answer", "options": {"limit": 200}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matrices are too small for two threads to help, and on a busy machine
    (the suite's other tests, other jobs) they make a step several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the arithmetic ----------------------------------------------------------------------------


def test_gae_matches_a_hand_computed_example():
    # gamma 0.9, lam 0.8; row 2 has two tokens and junk on its padding, which must not count.
    rewards = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 9.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.2, 0.4, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 1: deltas 1.4, 0.35, 0.5 (the value after the last token is 0); A_t = delta_t + 0.72 A_{t+1}
    # row 2: deltas 0.66, 0.6
    expected = torch.tensor([[1.4 + 0.72 * 0.71, 0.35 + 0.72 * 0.5, 0.5], [0.66 + 0.72 * 0.6, 0.6, 0.0]])
    assert torch.allclose(advantages, expected)
    assert torch.allclose(returns, torch.tensor([[2.4112, 1.71, 2.0], [1.292, 1.0, 0.0]]))


def test_gae_with_gamma_and_lambda_one_is_the_return_to_go_minus_the_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.3, 0.2, 0.1]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert torch.allclose(returns, torch.ones(1, 3))
    assert torch.allclose(advantages, torch.tensor([[0.7, 0.8, 0.9]]))


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards = token_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.1, 0.85], [-0.2, 1.75, 0.0]]))


def test_kl_penalties():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert torch.allclose(kl_per_token(logp, ref, "kl"), torch.tensor([0.5, -1.0]))
    assert torch.allclose(kl_per_token(logp, ref, "abs"), torch.tensor([0.5, 1.0]))
    assert torch.allclose(kl_per_token(logp, ref, "mse"), torch.tensor([0.125, 0.5]))


def test_whitening_over_the_masked_entries():
    values, mask = torch.tensor([2.0, 4.0, 6.0, 100.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    # mean 4, sample variance 4: std 2
    assert torch.allclose(masked_whiten(values, mask)[:3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6)


def test_clipped_policy_loss():
    old = torch.zeros(3)
    logprobs = torch.log(torch.tensor([1.5, 0.5, 1.0])).requires_grad_()  # ratios 1.5, 0.5, 1.0
    advantages = torch.tensor([1.0, 1.0, -1.0])
    loss, clipfrac = policy_loss(logprobs, old, advantages, torch.ones(3), cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5; token 3: 1.0
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.0) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)
    loss.backward()
    # the clipped token gets no gradient; the others -A * ratio / 3
    assert torch.allclose(logprobs.grad, torch.tensor([0.0, -0.5 / 3, 1 / 3]))


def test_clipped_value_loss():
    values = torch.tensor([0.5, 0.1])
    loss, clipfrac = value_loss(values, torch.zeros(2), torch.ones(2), torch.ones(2), cliprange_value=0.2)
    # token 1: the value may only reach 0.2: max(0.25, 0.64); token 2 moved less than 0.2: 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, n_steps=100)  # twice the target: error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * 1.002)
    ctl.update(6.6, n_steps=100)  # error 0.1
    assert ctl.value == pytest.approx(0.1 * 1.002 * 1.001)
    ctl.update(0.0, n_steps=1000)  # far below: error clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 1.002 * 1.001 * 0.98)
    again = AdaptiveKLController(0.5, 6.0, 10000)
    again.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert again.value == ctl.value
    fixed = FixedKLController(0.05)
    fixed.update(100.0, 100)
    assert fixed.value == 0.05


def test_running_moments_merge_batches_exactly():
    moments = RunningMoments()
    moments.update([1.0, 2.0, 3.0])
    moments.update([4.0, 5.0])
    assert moments.mean == pytest.approx(3.0)
    assert moments.std == pytest.approx(math.sqrt(2.5))  # the sample std of 1..5
    assert moments.count == 5


def test_score_scaling_normalisation_and_clipping():
    assert process_scores([1.0, 2.0, 3.0], RunningMoments(), standardize=False, clip=None) == pytest.approx([1.0, 2.0, 3.0])
    assert process_scores([1.0, 2.0, 3.0], RunningMoments(), standardize=True, clip=None) == pytest.approx([-1.0, 0.0, 1.0])
    assert process_scores([1.0, 2.0, 3.0], RunningMoments(), standardize=True, clip=0.5) == pytest.approx([-0.5, 0.0, 0.5])
    assert process_scores([4.0, -7.0], None, standardize=False, clip=2.0) == [2.0, -2.0]
    # equal first scores have no spread to divide by: left as they are (not divided by ~0)
    assert process_scores([2.0, 2.0], RunningMoments(), standardize=False, clip=None) == [2.0, 2.0]
    scaled = RunningMoments()
    process_scores([0.0, 4.0], scaled, standardize=False, clip=None)
    assert process_scores([2.0], scaled, standardize=False, clip=None) == pytest.approx([1.0])  # std of 0, 4, 2 is 2


def test_where_a_completion_ends():
    vocab = {0: "<pad>", 1: "a", 2: "b", 3: "\n", 4: "\n\n", 9: "<end>"}
    decode = lambda ids: "".join(vocab[i] for i in ids)
    stops, eos = ["\n\n\n", "<pad>"], {9}
    assert completion_end([1, 2, 9, 0, 0], eos, stops, decode) == (3, True)
    assert completion_end([1, 4, 3, 0, 0], eos, stops, decode) == (3, True)  # a stop string over two tokens
    assert completion_end([1, 0, 0, 0], eos, stops, decode) == (2, True)  # the pad token sampled as a stop
    assert completion_end([1, 2, 1, 2], eos, stops, decode) == (4, False)  # ran into the length cap
    assert completion_end([1, 4, 3, 9], eos, stops, decode) == (3, True)  # the stop came before the end token


# --- options and checks ------------------------------------------------------------------------


def test_options_defaults_and_cross_field_rule():
    options = PPOOptions()
    assert (options.num_generations, options.beta, options.ppo_epochs, options.target_kl) == (1, 0.05, 4, None)
    with pytest.raises(ValueError, match="adaptive_kl adapts beta, which is 0"):
        PPOOptions(adaptive_kl=True, beta=0)


def test_checks_name_the_keys(tmp_path, builtin_cache):
    def problems(method, **values):
        config = create_default_config(overrides=job_values(tmp_path, builtin_cache, method={"name": "ppo", **method}, **values))
        return PPO(config.method).check(config)

    assert problems({"num_generations": 3}) == []  # no group has to fill the batch
    assert problems({}, **{"hyperparams.gradient_accumulation_steps": 2})[0].startswith(
        "hyperparams.gradient_accumulation_steps: method ppo makes one update per batch"
    )
    assert problems({"mini_batch_size": 9}) == [
        "method.mini_batch_size: 9 is more than the 8 completions of a batch (hyperparams.batch_size 8 x method.num_generations 1)"
    ]
    assert any(p.startswith("method.reward") for p in problems({"reward": {"type": "lenght"}}))


# --- real runs on the tiny model -------------------------------------------------------------------


def _run(tmp_path, builtin_cache, method: dict, **values):
    from trainer.core import TrainerEngine

    config = create_default_config(
        overrides=job_values(tmp_path, builtin_cache, method={"name": "ppo", **method}, **values)
    )
    return TrainerEngine().run_job(config)


def _logged(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def learned(tmp_path_factory, builtin_cache):
    """30 PPO updates rewarding short answers. Measured (seed 42): mean reward 0.49 over the
    first five updates, 0.92 over the last five; completions from 24.0 tokens (the untrained
    model rambles to the cap) to 4.8."""
    tmp_path = tmp_path_factory.mktemp("ppo-learns")
    result = _run(
        tmp_path,
        builtin_cache,
        {"reward": SHORT, "max_completion_length": 24},
        **{"hyperparams.max_steps": 30, "hyperparams.logging_steps": 1, "output.save_steps": 10},
    )
    return tmp_path, result


@pytest.mark.slow
def test_ppo_learns_to_answer_short(learned):
    _, result = learned
    rewards = [entry["reward"] for entry in _logged(result.run_dir) if "reward" in entry]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.25, (first, last, rewards)
    lengths = [entry["completions/mean_length"] for entry in _logged(result.run_dir) if "reward" in entry]
    assert sum(lengths[-5:]) / 5 < sum(lengths[:5]) / 5 / 2


@pytest.mark.slow
def test_ppo_run_writes_a_plain_model_and_checkpoints_with_the_value_head(learned, tiny_model_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    tmp_path, result = learned
    run = result.run_dir
    model = AutoModelForCausalLM.from_pretrained(result.model_path)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    saved = load_weights(result.model_path)
    assert not any("value_head" in key for key in saved)
    assert not (result.model_path / "value_head.safetensors").exists()
    start = load_weights(tiny_model_dir)
    assert any(not torch.equal(saved[k], start[k]) for k in start)  # training happened

    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-30"]  # output.save_total_limit 2
    head = load_file(str(run / "checkpoint-30" / "value_head.safetensors"))
    assert head["weight"].shape == (1, model.config.hidden_size) and head["weight"].abs().sum() > 0  # learned from 0
    state = json.loads((run / "checkpoint-30" / "ppo_state.json").read_text())
    assert state["kl_controller"] == {"value": 0.05} and state["early_stopped_updates"] == 0

    figures = ("reward", "reward_std", "kl", "kl_coef", "entropy", "policy_loss", "value_loss", "clipfrac",
               "approx_kl", "early_stopped", "minibatch_updates", "completions/mean_length",
               "rewards/short_answer/mean")  # fmt: skip
    status = json.loads((tmp_path / "status.json").read_text())
    import jsonschema

    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert status["phase"] == "completed" and status["method"] == "ppo" and status["current_step"] == 30
    assert set(figures) <= set(status["method_metrics"]), status["method_metrics"]
    logged = [entry for entry in _logged(run) if "reward" in entry]
    assert all(set(figures) | {"loss", "grad_norm", "learning_rate"} <= set(entry) for entry in logged)
    assert all(entry["minibatch_updates"] == 4 and entry["early_stopped"] == 0 for entry in logged)
    assert logged[5]["kl"] > 0 and logged[5]["grad_norm"] > 0
    # a few completions of each logged step, with their rewards, in the logs and the status
    assert all(0 < len(entry["samples"]) <= 4 for entry in logged)
    sample = status["rl_samples"][0]
    assert sample["step"] == 30 and isinstance(sample["completion"], str) and 0 <= sample["reward"] <= 1
    assert set(sample["rewards"]) == {"short_answer"}
    final = json.loads((run / "result.json").read_text())["final_metrics"]
    assert final["method"] == "ppo" and final["early_stopped_updates"] == 0 and "reward" in final
    previews = [json.loads(line)["step"] for line in (run / "previews.jsonl").read_text().splitlines()]
    assert {6, 12, 30} <= set(previews)


@pytest.mark.slow
def test_target_kl_stops_updates_early(tmp_path, builtin_cache):
    # Without target_kl every update takes its 4 passes (test above); with a tiny one, each
    # update stops after its first step, the one that moves the policy off the sampler.
    result = _run(
        tmp_path,
        builtin_cache,
        {"reward": SHORT, "max_completion_length": 16, "target_kl": 1e-6},
        **{"hyperparams.max_steps": 3, "hyperparams.warmup_steps": 0, "hyperparams.logging_steps": 1},
    )
    logged = [entry for entry in _logged(result.run_dir) if "reward" in entry]
    assert [entry["early_stopped"] for entry in logged] == [1.0, 1.0, 1.0]
    assert [entry["minibatch_updates"] for entry in logged] == [1.0, 1.0, 1.0]
    assert all(entry["approx_kl"] > 1e-6 for entry in logged)
    assert result.final_metrics["early_stopped_updates"] == 3


def test_sync_ref_model_keeps_the_reference_on_the_policy(tmp_path, builtin_cache):
    # callbacks sync_ref_model with alpha 1 after every update: each rollout starts with the
    # reference equal to the policy, so its KL is 0 although every update moves the policy
    # (approx_kl > 0); without the sync the KL grows after the first update (30-step run above).
    result = _run(
        tmp_path,
        builtin_cache,
        {"reward": SHORT, "max_completion_length": 16, "beta": 0.05},
        **{"hyperparams.max_steps": 3, "hyperparams.warmup_steps": 0, "hyperparams.logging_steps": 1,
           "hyperparams.learning_rate": 1e-3, "callbacks": [{"name": "sync_ref_model", "every_steps": 1, "alpha": 1.0}]},
    )
    logged = [entry for entry in _logged(result.run_dir) if "reward" in entry]
    assert [entry["kl"] for entry in logged] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert all(entry["approx_kl"] > 0 for entry in logged)
    (tmp_path / "unsynced").mkdir()
    unsynced = _run(
        tmp_path / "unsynced",
        builtin_cache,
        {"reward": SHORT, "max_completion_length": 16, "beta": 0.05},
        **{"hyperparams.max_steps": 3, "hyperparams.warmup_steps": 0, "hyperparams.logging_steps": 1,
           "hyperparams.learning_rate": 1e-3},
    )
    kls = [entry["kl"] for entry in _logged(unsynced.run_dir) if "reward" in entry]
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and abs(kls[-1]) > 1e-4, kls


@pytest.mark.slow
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, builtin_cache):
    from safetensors.torch import load_file

    # Everything with state of its own is on: the adaptive KL coefficient, the score moments,
    # the reward's EMA normalisation, the value head; minibatches shuffle with the global RNG.
    method = {
        "reward": {**SHORT, "post": [{"type": "ema_normalize", "decay": 0.9}]},
        "max_completion_length": 12,
        "adaptive_kl": True,
        "kl_target": 0.5,
        "kl_horizon": 50,
        "score_norm": True,
        "score_clip": 3.0,
        "mini_batch_size": 4,
        "ppo_epochs": 2,
    }
    steady = {"hyperparams.scheduler": "constant", "hyperparams.warmup_steps": 0, "output.save_steps": 2}
    straight = _run(tmp_path, builtin_cache, method, **steady, **{"hyperparams.max_steps": 4, "output.run_name": "straight"})
    _run(tmp_path, builtin_cache, method, **steady, **{"hyperparams.max_steps": 2, "output.run_name": "split"})
    split = tmp_path / "outputs" / "split"
    resumed = _run(
        tmp_path, builtin_cache, method, **steady,
        **{"hyperparams.max_steps": 4, "output.run_name": "split", "output.resume": str(split / "checkpoint-2")},
    )  # fmt: skip

    a, b = load_weights(straight.model_path), load_weights(resumed.model_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    heads = [load_file(str(run / "checkpoint-4" / "value_head.safetensors")) for run in (straight.run_dir, split)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    states = [json.loads((run / "checkpoint-4" / "ppo_state.json").read_text()) for run in (straight.run_dir, split)]
    assert states[0] == states[1] and states[0]["kl_controller"]["value"] != 0.05  # it adapted, and resumed exactly
    assert states[0]["score_moments"]["count"] == 4 * 8
