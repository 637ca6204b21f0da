"""Judges (trainer.judges) on known pairs, the win-rate arithmetic and tracker, their config checks,
the win rate in a real job's status file (schema-valid), and the daemon's promotion rule on it."""

from __future__ import annotations

import json

import pytest

from jobkit import SCHEMA, job_values
from trainer.config import ConfigError, create_default_config
from trainer.core.preflight import check_config
from trainer.data.example import Probe
from trainer.judges import WinRate, build_judge, judged_inputs
from trainer.profiles import get_profile

RIGHT = "Step 1: 2 + 3 = 5.\n\nAnswer: 5"
WRONG = "Step 1: 2 + 3 = 6.\n\nAnswer: 6"
PROSE = "five"


def _probes(n: int = 3) -> list[Probe]:
    return [Probe(messages=[{"role": "user", "content": f"What is 2 + 3? ({i})"}], golden="5", reference=RIGHT, source="t")
            for i in range(n)]


def _judge(name: str, **options):
    config = create_default_config(overrides={"inference.judge": {"name": name, **options}})
    return build_judge(config.inference.judge, get_profile("regime3"))


def test_the_profile_judge_prefers_the_right_answer_then_the_format():
    judge = _judge("profile")
    prompts, references, rows = judged_inputs(_probes())
    assert judge.pairwise(prompts, [RIGHT, WRONG, RIGHT], [WRONG, RIGHT, RIGHT], references, rows) == [1.0, 0.0, 0.5]
    assert judge.pairwise(prompts, [WRONG, PROSE, PROSE], [PROSE, WRONG, PROSE], references, rows) == [1.0, 0.0, 0.5]
    assert judge.binary(prompts, [RIGHT, WRONG, PROSE], references, rows) == [True, False, False]
    # no right answer known: an answer in the format is good
    unknown = [{**row, "expected": None} for row in rows]
    assert judge.binary(prompts, [WRONG, PROSE, RIGHT], [None] * 3, unknown) == [True, False, True]


def test_the_always_judge_agrees():
    judge = _judge("always")
    assert judge.pairwise(["p"] * 2, ["a", ""], ["b", "c"]) == [1.0, 1.0]
    assert judge.binary(["p"] * 2, ["", "x"]) == [True, True]


def test_the_reward_model_judge_follows_the_reward_models_scores(tmp_path, tiny_model_dir, tiny_tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification

    from trainer.rewards import RewardContext, build_reward

    torch.manual_seed(0)
    folder = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    prompts, references, rows = judged_inputs(_probes())
    first, second = [RIGHT, WRONG, PROSE], [WRONG, PROSE, RIGHT]
    scorer = build_reward({"type": "reward_model", "model_path": str(folder)}, RewardContext(), key="r")
    a, b = scorer.score(prompts, first, references, rows), scorer.score(prompts, second, references, rows)
    judge = _judge("reward_model", model_path=str(folder), threshold=min(a))
    assert judge.pairwise(prompts, first, second, references, rows) == [1.0 if x > y else 0.0 if x < y else 0.5 for x, y in zip(a, b)]
    assert judge.binary(prompts, first, references, rows) == [x > min(a) for x in a]


def test_win_rate_counts_ties_as_half():
    won = WinRate.of([1.0, 0.5, 0.0, 1.0])
    assert (won.wins, won.ties, won.losses, won.n, won.rate) == (2, 1, 1, 4, 0.625)
    assert WinRate.of([]).rate is None


def test_judge_config_is_checked(tmp_path, builtin_cache):
    with pytest.raises(ConfigError, match="inference.judge.name: expected one of 'always', 'profile' or 'reward_model'; got 'profle'.*did you mean 'profile'"):
        create_default_config(overrides={"inference.judge": "profle"})
    with pytest.raises(ConfigError, match="inference.judge.threshold: unknown key"):
        create_default_config(overrides={"inference.judge": {"name": "profile", "threshold": 1}})
    gone = tmp_path / "gone"
    missing = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "inference.win_rate_every_steps": 4, "inference.judge": {"name": "reward_model", "model_path": str(gone)}}))
    assert any(p.startswith("inference.judge.model_path: ") and "does not exist" in p for p in check_config(missing))
    no_probes = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "inference.win_rate_every_steps": 4, "inference.num_probes": 0}))
    assert ("inference.win_rate_every_steps: the win rate compares answers to the held-out prompts, and "
            "inference.num_probes is 0; set it above 0") in check_config(no_probes)
    classifier = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "inference.win_rate_every_steps": 4, "method.name": "classify"}))
    assert "inference.win_rate_every_steps: method classify does not generate answers to judge" in check_config(classifier)
    daemon = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "daemon.min_win_rate": 0.5, "inference.judge": {"name": "reward_model", "model_path": str(gone)}}))
    assert any(p.startswith("inference.judge.model_path: ") for p in check_config(daemon))
    good = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"inference.win_rate_every_steps": 4}))
    assert not [p for p in check_config(good) if "win_rate" in p or "judge" in p]


def test_the_tracker_keeps_the_starting_answers_for_a_resume(tmp_path):
    from core.training_status import JsonlLog, TrainingStatusWriter
    from trainer.monitoring.win_rate import START_ANSWERS, WinRateTracker

    writer = TrainingStatusWriter(tmp_path / "status.json")
    log = JsonlLog(tmp_path / "metrics.jsonl")
    tracker = WinRateTracker(_judge("profile"), _probes(), tmp_path, writer, log)
    tracker.keep_start([WRONG, WRONG, RIGHT])
    assert tracker.measure(4, [RIGHT, WRONG, WRONG]).rate == pytest.approx(0.5)  # one won, one tied, one lost
    again = WinRateTracker(_judge("profile"), _probes(), tmp_path, writer, log)
    assert again.load_start() and again.start == [WRONG, WRONG, RIGHT]
    assert again.measure(8, [RIGHT, RIGHT, RIGHT]).rate == pytest.approx(5 / 6)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["win_rate"] == pytest.approx(5 / 6)
    assert [(p["step"], p["wins"], p["ties"], p["losses"]) for p in status["win_rates"]] == [(4, 1, 1, 1), (8, 2, 1, 0)]
    assert [json.loads(line)["win_rate"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == pytest.approx([0.5, 5 / 6])
    # other probes: the saved answers are not theirs
    assert not WinRateTracker(_judge("profile"), _probes(2), tmp_path, writer, log).load_start()
    assert (tmp_path / START_ANSWERS).is_file()


@pytest.mark.slow
def test_a_job_records_its_win_rate_over_the_starting_model(tmp_path, builtin_cache):
    import jsonschema

    from trainer.core import TrainerEngine
    from trainer.core.context import format_summary

    values = job_values(tmp_path, builtin_cache, **{
        "hyperparams.max_steps": 8, "inference.win_rate_every_steps": 4, "inference.preview_every_steps": 0,
        "inference.judge": "profile",
    })
    result = TrainerEngine().run_job(create_default_config(overrides=values))
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert [p["step"] for p in status["win_rates"]] == [4, 8]
    for point in status["win_rates"]:
        assert point["wins"] + point["ties"] + point["losses"] == 4 and 0 <= point["win_rate"] <= 1
    final = status["win_rates"][-1]
    assert status["win_rate"] == final["win_rate"] == result.final_metrics["win_rate"]
    assert result.final_metrics["win_rate_judge"] == "profile"
    assert (result.run_dir / "win_rate_start.json").is_file()
    assert "win rate over the starting model: " in format_summary(result)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "win_rate" in r] == [4, 8]


def test_the_daemon_refuses_a_candidate_below_the_win_rate():
    from arena.hero import EvalMetrics, decide

    rules = create_default_config(overrides={"daemon.min_win_rate": 0.5}).daemon
    hero = EvalMetrics(n=4, format_rate=1.0, accuracy=0.5)
    assert decide(EvalMetrics(n=4, format_rate=1.0, accuracy=0.5, win_rate=0.5), hero, rules) == (True, [])
    assert decide(EvalMetrics(n=4, format_rate=1.0, accuracy=0.5, win_rate=0.25), hero, rules) == (
        False, ["win rate over the hero 0.25 < 0.5 (daemon.min_win_rate)"])
    assert decide(EvalMetrics(n=4, format_rate=1.0, accuracy=0.5), hero, rules) == (False, [
        "no win rate over the hero was measured (no held-out answers to judge), and daemon.min_win_rate asks for one"])
    unset = create_default_config().daemon
    assert decide(EvalMetrics(n=4, format_rate=1.0, accuracy=0.5, win_rate=0.0), hero, unset) == (True, [])


def test_the_daemons_evaluation_measures_the_win_rate_over_the_hero(tmp_path, builtin_cache, tiny_model_dir):
    from arena.job_runner import evaluate_job
    from arena.jobs import EVALUATION_FILE
    from core.training_status import TrainingStatusWriter
    from trainer.core.context import JobResult

    values = job_values(tmp_path, builtin_cache, **{"daemon.min_win_rate": 0.5, "inference.judge": "always",
                                                    "inference.max_new_tokens": 8})
    result = JobResult(tmp_path, tiny_model_dir, {}, probes=_probes(2))
    assert evaluate_job(tmp_path, create_default_config(overrides=values), result, TrainingStatusWriter(tmp_path / "s.json")) == 0
    evaluation = json.loads((tmp_path / EVALUATION_FILE).read_text())
    assert evaluation["candidate"]["win_rate"] == 1.0 and evaluation["hero"]["win_rate"] is None
    job = create_default_config(overrides={**values, "daemon.min_win_rate": None, "inference.judge": "profile"})
    evaluate_job(tmp_path, job, result, TrainingStatusWriter(tmp_path / "s.json"))
    assert json.loads((tmp_path / EVALUATION_FILE).read_text())["candidate"]["win_rate"] is None  # not asked: not judged
    # the daemon's rate and judge decide, whatever the job's own config says
    daemon = create_default_config(overrides=values)
    evaluate_job(tmp_path, job, result, TrainingStatusWriter(tmp_path / "s.json"), daemon=daemon)
    assert json.loads((tmp_path / EVALUATION_FILE).read_text())["candidate"]["win_rate"] == 1.0
