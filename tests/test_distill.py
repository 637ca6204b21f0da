"""Distillation (method distill): TRL's divergence pinned on known tensors, prompts cut from
tokenized rows, the teacher's tokenizer and stage references refused or passed, out of the box on
the embedded pair, and each mode end to end on the tiny student from a small trained teacher
(parameters change, the divergence falls, the figures reach the status file)."""

from __future__ import annotations

import json
import shutil

import pytest

from jobkit import SCHEMA, job_values, load_weights
from trainer.config import create_default_config
from trainer.core.preflight import check_config


def test_the_divergences_are_the_kls_they_name():
    """TRL's generalised JSD (pinned: trl.experimental.gkd) at beta 0 and 1 is the forward and
    reverse KL, masked positions left out; identical distributions diverge by nothing."""
    import torch

    from trainer.methods.distill import TRL_GKD
    from trainer.methods.orpo import experimental_trl

    (GKDTrainer,) = experimental_trl(TRL_GKD, "GKDTrainer")
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, -100], [3, -100, -100]])
    kept = labels != -100
    s, t = student.log_softmax(-1)[kept], teacher.log_softmax(-1)[kept]
    forward = (t.exp() * (t - s)).sum(-1).mean()
    reverse = (s.exp() * (s - t)).sum(-1).mean()
    jsd = GKDTrainer.generalized_jsd_loss
    assert jsd(student, teacher, labels=labels, beta=0.0) == pytest.approx(float(forward), rel=1e-5)
    assert jsd(student, teacher, labels=labels, beta=1.0) == pytest.approx(float(reverse), rel=1e-5)
    assert float(jsd(student, student.clone(), labels=labels, beta=0.5)) == pytest.approx(0.0, abs=1e-6)
    # the temperature softens both before comparing
    hot = jsd(student, teacher, labels=labels, beta=0.0, temperature=2.0)
    s2, t2 = (student / 2).log_softmax(-1)[kept], (teacher / 2).log_softmax(-1)[kept]
    assert hot == pytest.approx(float((t2.exp() * (t2 - s2)).sum(-1).mean()), rel=1e-5)


def test_prompts_are_each_row_before_its_last_answer():
    import torch

    from trainer.methods.distill import prompts_of

    pad = 0
    ids = torch.tensor([[5, 6, 7, 8, 9, 0], [5, 6, 7, 8, 9, 4]])
    labels = torch.tensor([[-100, -100, 7, -100, 9, -100], [-100, -100, -100, -100, 9, 4]])
    out = prompts_of(ids, labels, pad)
    # row 0: two answers, the last one (9) starts at 4; row 1: the answer starts at 4 too
    assert out["prompts"].tolist() == [[5, 6, 7, 8], [5, 6, 7, 8]]
    short = prompts_of(torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]]), torch.tensor([[-100, 6, 7, -100], [-100, -100, -100, 8]]), pad)
    assert short["prompts"].tolist() == [[0, 0, 5], [5, 6, 7]]  # left-padded
    assert short["prompt_attention_mask"].tolist() == [[0, 0, 1], [1, 1, 1]]


def _distill(tmp_path, builtin_cache, teacher, **options):
    return create_default_config(overrides=job_values(tmp_path, builtin_cache, method={"name": "distill", "teacher": str(teacher), **options}))


def _other_tokenizer(tmp_path, tiny_model_dir):
    """The tiny model's folder with two tokens' ids swapped in its tokenizer."""
    folder = tmp_path / "other-tokenizer"
    shutil.copytree(tiny_model_dir, folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["Step"], vocab["Answer"] = vocab["Answer"], vocab["Step"]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    return folder


def test_a_teacher_with_another_tokenizer_is_refused_and_a_shared_one_passes(tmp_path, builtin_cache, tiny_model_dir):
    other = _other_tokenizer(tmp_path, tiny_model_dir)
    config = create_default_config(overrides=job_values(
        tmp_path, builtin_cache, **{"model.path": str(tiny_model_dir)}, method={"name": "distill", "teacher": str(other)}))
    [problem] = [p for p in check_config(config) if p.startswith("method.teacher")]
    assert problem.startswith(f"method.teacher: {other}: its tokenizer is not the student's (")
    assert "2 differ" in problem and "'Answer'" in problem and "use a teacher trained with the student's tokenizer" in problem
    same = create_default_config(overrides=job_values(
        tmp_path, builtin_cache, **{"model.path": str(tiny_model_dir)}, method={"name": "distill", "teacher": str(tiny_model_dir)}))
    assert not [p for p in check_config(same) if p.startswith("method.teacher")]
    builtin = _distill(tmp_path, builtin_cache, "builtin:small-qwen3")
    assert not [p for p in check_config(builtin) if p.startswith("method.teacher")]


def test_teacher_problems_name_the_key(tmp_path, builtin_cache):
    missing = _distill(tmp_path, builtin_cache, tmp_path / "nowhere")
    assert f"method.teacher: {tmp_path / 'nowhere'} does not exist" in check_config(missing)
    unknown = _distill(tmp_path, builtin_cache, "builtin:huge-qwen3")
    assert any(p.startswith("method.teacher: unknown builtin model 'builtin:huge-qwen3'; known: builtin:small-qwen3, builtin:tiny-qwen3")
               for p in check_config(unknown))
    # the job's own data (not the bundled file): nothing fills the teacher in
    none = create_default_config(overrides=job_values(tmp_path, builtin_cache, method={"name": "distill"}))
    assert any(p.startswith("method.teacher: distillation needs a teacher") for p in check_config(none))
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="method.divergence: expected one of 'forward_kl', 'reverse_kl', 'jsd'|method.divergence"):
        create_default_config(overrides={"method": {"name": "distill", "divergence": "kl"}})


def test_a_stage_reference_must_name_an_earlier_stage(tmp_path, builtin_cache):
    def stages(reference):
        return create_default_config(overrides=job_values(tmp_path, builtin_cache, stages=[
            {"method": {"name": "sft"}, "max_steps": 2, "model_path": "builtin:small-qwen3"},
            {"method": {"name": "distill", "teacher": reference}, "max_steps": 2, "model_path": "builtin:tiny-qwen3"},
        ]))

    assert not [p for p in check_config(stages("stage:1")) if "stage:" in p]
    assert "stages[1].method.teacher: 'stage:2' must name an earlier stage of the job: stage:1 to stage:1" in check_config(stages("stage:2"))
    assert "stages[1].method.teacher: 'stage:²' must name an earlier stage of the job: stage:1 to stage:1" in check_config(stages("stage:²"))
    alone = _distill(tmp_path, builtin_cache, "stage:1")
    assert "method.teacher: 'stage:1' names a stage, and this job has no stages" in check_config(alone)
    gone = tmp_path / "gone"
    missing = create_default_config(overrides=job_values(tmp_path, builtin_cache, stages=[
        {"method": {"name": "sft"}, "max_steps": 2, "model_path": str(gone)}]))
    assert f"stages[0].model_path: {gone} does not exist" in check_config(missing)


def test_out_of_the_box_a_first_stage_trains_the_embedded_teacher():
    from trainer.core.out_of_box import fill_in

    config, notes = fill_in(create_default_config(overrides={"method": {"name": "distill", "divergence": "jsd"}}))
    first, second = config.stages
    assert (first.method.name, first.model_path, first.max_steps, first.cache) == ("sft", "builtin:small-qwen3", 300, True)
    assert not second.cache
    assert (second.method.name, second.model_path, second.max_steps) == ("distill", "builtin:tiny-qwen3", 300)
    assert (second.method.teacher, second.method.divergence) == ("stage:1", "jsd")
    assert notes and "sft 300 steps of the embedded teacher builtin:small-qwen3" in notes[0]
    assert fill_in(config)[0].stages == config.stages  # filling in twice changes nothing
    given = create_default_config(overrides={"method": {"name": "distill", "teacher": "builtin:small-qwen3"}})
    assert not fill_in(given)[0].stages


def test_the_embedded_teacher_shares_the_students_tokenizer_and_is_larger(builtin_cache, tiny_model_dir):
    from transformers import AutoConfig

    from trainer.methods.distill import tokenizer_vocabulary
    from trainer.models.builtin import resolve_model_path

    teacher = resolve_model_path("builtin:small-qwen3", builtin_cache)
    assert tokenizer_vocabulary(teacher) == tokenizer_vocabulary(tiny_model_dir)
    big, small = AutoConfig.from_pretrained(teacher), AutoConfig.from_pretrained(tiny_model_dir)
    assert big.vocab_size == small.vocab_size and big.hidden_size > small.hidden_size


@pytest.fixture(scope="session")
def small_teacher(tmp_path_factory, builtin_cache):
    """builtin:small-qwen3 after 20 SFT steps on the bundled rows: a teacher that knows something."""
    from trainer.core import TrainerEngine

    root = tmp_path_factory.mktemp("teacher")
    values = job_values(root, builtin_cache, **{
        "model.path": "builtin:small-qwen3", "hyperparams.max_steps": 20, "inference.preview_every_steps": 0,
        "inference.num_probes": 0, "output.save_steps": 100,
    })
    return TrainerEngine().run_job(create_default_config(overrides=values)).model_path


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(tmp_path, builtin_cache, tiny_model_dir, teacher, steps, **options):
    import jsonschema
    import torch

    from trainer.core import TrainerEngine

    values = job_values(tmp_path, builtin_cache, **{
        "model.path": str(tiny_model_dir), "hyperparams.max_steps": steps, "hyperparams.logging_steps": 1,
        "inference.preview_every_steps": 0, "output.save_steps": 100,
        "method": {"name": "distill", "teacher": str(teacher), **options},
    })
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert (status["phase"], status["method"]) == ("completed", "distill")
    for key in ("distill/divergence", "distill/nll", "distill/on_policy"):
        assert isinstance(status["method_metrics"][key], float), key
    before, after = load_weights(tiny_model_dir), load_weights(result.model_path)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return _records(result.run_dir)


@pytest.mark.slow
def test_off_policy_distillation_lowers_the_divergence(tmp_path, builtin_cache, tiny_model_dir, small_teacher):
    records = _run(tmp_path, builtin_cache, tiny_model_dir, small_teacher, 16, divergence="jsd", temperature=2.0)
    divergences = [r["distill/divergence"] for r in records]
    assert all(r["distill/on_policy"] == 0.0 for r in records)
    assert sum(divergences[-4:]) / 4 < 0.5 * sum(divergences[:4]) / 4, divergences


@pytest.mark.slow
def test_on_policy_distillation_trains_on_the_students_samples(tmp_path, builtin_cache, tiny_model_dir, small_teacher):
    records = _run(tmp_path, builtin_cache, tiny_model_dir, small_teacher, 8, on_policy=1.0, max_new_tokens=24,
                   divergence="reverse_kl")
    divergences = [r["distill/divergence"] for r in records]
    assert all(r["distill/on_policy"] == 1.0 for r in records)
    assert sum(divergences[-3:]) / 3 < sum(divergences[:3]) / 3, divergences


@pytest.mark.slow
def test_a_teacher_with_another_tokenizer_is_refused_at_the_start_of_the_job(tmp_path, builtin_cache, tiny_model_dir):
    from trainer.config import ConfigError
    from trainer.core import TrainerEngine

    # a builtin student is built on first use, so --validate cannot compare; the job does, before any step
    other = _other_tokenizer(tmp_path, tiny_model_dir)
    config = _distill(tmp_path, builtin_cache, other)
    with pytest.raises(ConfigError, match="method.teacher: .*its tokenizer is not the student's"):
        TrainerEngine().run_job(config)
    assert not list((tmp_path / "outputs" / "run").glob("checkpoint-*"))


def test_the_teacher_reward_is_the_teachers_mean_log_probability_given_the_conversation(tiny_model_dir, tiny_tokenizer):
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from trainer.rewards import RewardContext, build_reward

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    completion = "Answer: 5"
    context = tiny_tokenizer(tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                             add_special_tokens=False)["input_ids"]
    answer = tiny_tokenizer(completion, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context + answer])).logits[0]
    logprobs = logits[len(context) - 1 : -1].log_softmax(-1)
    expected = float(logprobs[torch.arange(len(answer)), torch.tensor(answer)].mean())

    reward = build_reward({"type": "teacher", "model_path": str(tiny_model_dir)}, RewardContext(), key="method.reward")
    row = {"prompt_messages": messages}
    [got, empty] = reward.score(["What is 2 + 3?"] * 2, [completion, ""], rows=[row, row])
    assert got == pytest.approx(expected, abs=1e-4) and got < 0
    assert empty == -30.0  # nothing to score: the floor, never a way to a high reward
    probability = build_reward({"type": "teacher", "model_path": str(tiny_model_dir), "mapping": "probability"}, RewardContext(), key="r")
    assert probability.score(["q"], [completion], rows=[row])[0] == pytest.approx(math.exp(expected), rel=1e-4)


def test_ppo_composes_the_teacher_with_the_reward_spec(tmp_path, builtin_cache, tiny_model_dir):
    def ppo(**options):
        return create_default_config(overrides=job_values(tmp_path, builtin_cache, method={"name": "ppo", **options}))

    config = ppo(teacher=str(tiny_model_dir), teacher_weight=0.25)
    assert config.method.reward_spec(config) == {"type": "weighted_sum", "components": [
        {"type": "profile", "weight": 0.75}, {"type": "teacher", "model_path": str(tiny_model_dir), "weight": 0.25}]}
    length = {"type": "length", "target": 20}
    config = ppo(teacher=str(tiny_model_dir), reward=length)
    assert config.method.reward_spec(config)["components"][0] == {**length, "weight": 0.5}
    config = ppo(teacher=str(tiny_model_dir), teacher_weight=1.0)
    assert config.method.reward_spec(config) == {"type": "teacher", "model_path": str(tiny_model_dir)}
    assert ppo().method.reward_spec(ppo()) is None  # no teacher: the spec as given (the profile's default)
    assert not [p for p in check_config(ppo(teacher=str(tiny_model_dir))) if "teacher" in p]
    assert f"method.teacher: {tmp_path / 'gone'} does not exist" in check_config(ppo(teacher=str(tmp_path / "gone")))


@pytest.mark.slow
def test_ppo_against_a_teacher_end_to_end(tmp_path, builtin_cache, tiny_model_dir, small_teacher):
    import jsonschema

    from trainer.core import TrainerEngine

    values = job_values(tmp_path, builtin_cache, **{
        "model.path": str(tiny_model_dir), "hyperparams.batch_size": 4, "hyperparams.max_steps": 3,
        "hyperparams.logging_steps": 1, "hyperparams.learning_rate": 1e-3, "inference.preview_every_steps": 0,
        "method": {"name": "ppo", "teacher": str(small_teacher), "teacher_weight": 0.5, "max_completion_length": 16,
                   "ppo_epochs": 2, "target_kl": 0.5, "score_norm": True},
    })
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    records = _records(result.run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:  # the teacher's log-probabilities are a component of every step's reward
        assert record["rewards/teacher/mean"] < 0 and "rewards/profile/mean" in record
    sample = status["rl_samples"][0]
    assert set(sample["rewards"]) == {"profile", "teacher"}


def test_the_cli_dry_run_of_method_distill_prepares_both_stages(tmp_path):
    from jobkit import out_of_box_dry_run

    proc = out_of_box_dry_run(tmp_path, "distill")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "out of the box: method distill has no teacher (method.teacher): this job runs 2 stages" in proc.stdout
    assert "=== stage 1/2: sft" in proc.stdout and "=== stage 2/2: distill" in proc.stdout
    resolved = json.loads((tmp_path / "out" / "box" / "resolved_config.json").read_text())
    stages = resolved["config"]["stages"]
    assert [(s["method"]["name"], s["model_path"]) for s in stages] == [("sft", "builtin:small-qwen3"), ("distill", "builtin:tiny-qwen3")]
    assert stages[1]["method"]["teacher"] == "stage:1"


@pytest.mark.slow
def test_a_stage_distils_the_teacher_an_earlier_stage_trained(tmp_path, builtin_cache):
    from trainer.core import TrainerEngine

    values = job_values(tmp_path, builtin_cache, **{"inference.preview_every_steps": 0, "hyperparams.logging_steps": 1}, stages=[
        {"method": {"name": "sft"}, "max_steps": 3, "model_path": "builtin:small-qwen3"},
        {"method": {"name": "distill", "teacher": "stage:1", "divergence": "reverse_kl"}, "max_steps": 3,
         "model_path": "builtin:tiny-qwen3"},
    ])
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    run = tmp_path / "outputs" / "run"
    second = json.loads((run / "stage-2-distill" / "resolved_config.json").read_text())["config"]
    assert second["method"]["teacher"] == str(run / "stage-1-sft" / "model")
    assert second["model"]["path"] == "builtin:tiny-qwen3"  # the student starts from its own model, not stage 1's
    first = json.loads((run / "stage-1-sft" / "model" / "config.json").read_text())
    student = json.loads((result.model_path / "config.json").read_text())
    assert (first["hidden_size"], student["hidden_size"]) == (256, 128)
    assert [r["distill/divergence"] > 0 for r in _records(run / "stage-2-distill")] == [True] * 3


def test_a_stage_cache_key_is_what_decides_the_weights(tmp_path, builtin_cache):
    from trainer.core.stage_cache import cache_key

    def key(**values):
        return cache_key(create_default_config(overrides=job_values(tmp_path, builtin_cache, **values)))

    base = key()
    assert key(**{"output.output_dir": str(tmp_path / "elsewhere"), "inference.num_probes": 2}) == base  # places, probes: not
    assert key(**{"hyperparams.max_steps": 13}) != base and key(**{"model.path": "builtin:small-qwen3"}) != base
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "train.jsonl", copy / "train.jsonl")
    assert key(**{"data.dataset_path": [str(copy / "train.jsonl")]}) == base  # the bytes count, not the path
    (copy / "train.jsonl").write_text((tmp_path / "train.jsonl").read_text() + "\n")
    assert key(**{"data.dataset_path": [str(copy / "train.jsonl")]}) != base


@pytest.mark.slow
def test_a_cached_stage_is_trained_once(tmp_path, builtin_cache):
    from trainer.core import TrainerEngine

    cache = tmp_path / "models"
    shutil.copytree(builtin_cache, cache)  # a cache of this test's own: the trained stages land in it

    def job(name, teacher_steps=3):
        values = job_values(tmp_path, cache, **{"inference.preview_every_steps": 0, "output.run_name": name}, stages=[
            {"method": {"name": "sft"}, "max_steps": teacher_steps, "model_path": "builtin:small-qwen3", "cache": True},
            {"method": {"name": "distill", "teacher": "stage:1"}, "max_steps": 2, "model_path": "builtin:tiny-qwen3"},
        ])
        return TrainerEngine().run_job(create_default_config(overrides=values))

    first = job("first")
    [published] = list((cache / "trained").iterdir())
    assert published.name.startswith("stage-1-sft-") and (published / "model" / "model.safetensors").is_file()
    second = job("second")
    teacher = tmp_path / "outputs" / "second" / "stage-1-sft"
    assert not list(teacher.glob("checkpoint-*"))  # not trained: copied from the cache
    import torch

    cached, trained = load_weights(teacher / "model"), load_weights(tmp_path / "outputs" / "first" / "stage-1-sft" / "model")
    assert cached.keys() == trained.keys() and all(torch.equal(cached[k], trained[k]) for k in cached)
    assert second.final_metrics["stages"][0]["final_metrics"]["from_cache"] == str(published)
    assert second.final_metrics["stages"][1]["final_metrics"]["distill/divergence"] > 0
    assert "from_cache" not in first.final_metrics["stages"][0]["final_metrics"]
    job("third", teacher_steps=4)  # another setting: trained, and cached beside the first
    assert len(list((cache / "trained").iterdir())) == 2
