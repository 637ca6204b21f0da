"""End to end on the embedded tiny model: files on disk, status, kill-and-resume, stop, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from jobkit import BUNDLED, CLI, REPO, SCHEMA, cli, job_values, load_weights, wait_for, write_config
from trainer.config import create_default_config

pytestmark = pytest.mark.slow


def test_end_to_end_run_with_the_seed_api(tmp_path, builtin_cache, tiny_model_dir):
    import jsonschema
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The seed's programmatic example, as written.
    from trainer.config import create_default_config
    from trainer.core import TrainerEngine
    from trainer.monitoring import TrainingStatusWriter

    config = create_default_config(overrides=job_values(tmp_path, builtin_cache))
    status_path = tmp_path / "status.json"
    writer = TrainingStatusWriter(status_path)
    seen, bad, done = set(), [], threading.Event()

    def poll() -> None:  # a dashboard reading throughout the run
        while not done.is_set():
            try:
                seen.add(json.loads(status_path.read_text())["phase"])
            except FileNotFoundError:
                pass
            except json.JSONDecodeError as exc:
                bad.append(exc)
            time.sleep(0.005)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        result = TrainerEngine(writer).run_job(config, sources={"hyperparams.max_steps": "test"})
    finally:
        done.set()
        reader.join()
    assert not bad
    assert {"preparing_data", "training"} <= seen

    run = tmp_path / "outputs" / "run"
    assert result.run_dir == run and result.model_path == run / "model"
    for name in ("metrics.jsonl", "previews.jsonl", "rejects.jsonl", "data_report.json", "resolved_config.json", "result.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [1, 2, 4] and steps[-1] == 12
    previews = [json.loads(l) for l in (run / "previews.jsonl").read_text().splitlines()]
    # step 6 from the preview callback, step 12 once: the final evaluation, not a second preview
    assert [p["step"] for p in previews] == [6] * 4 + [12] * 4
    resolved = json.loads((run / "resolved_config.json").read_text())
    assert resolved["sources"] == {"hyperparams.max_steps": "test"}
    assert resolved["config"]["hyperparams"]["max_steps"] == 12

    status = json.loads(status_path.read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert (status["phase"], status["status"], status["current_step"], status["total_steps"]) == ("completed", "completed", 12, 12)
    assert status["progress"] == 1.0 and status["loss"] is not None and status["learning_rate"] is not None
    assert status["tokens_per_sec"] > 0 and status["eta_seconds"] is not None
    assert status["data"]["rows_used"] == 296 and status["data"]["rows_held_out"] == 4
    assert status["total_evals"] == 8 and len(status["recent_examples"]) == 8
    assert [c["step"] for c in status["checkpoints"]] == [6, 12]
    assert status["final_model_path"] == str(run / "model")
    assert result.final_metrics["loss_end"] < result.final_metrics["loss_start"]

    # Parameters changed (the cheap proof that training happened).
    before, after = load_weights(tiny_model_dir), load_weights(run / "model")
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)

    # The saved folder is a Hugging Face model that generates with the template it was trained on
    # and stops on the end-of-turn token.
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in model.generation_config.eos_token_id
    assert "<think>" not in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=8)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, builtin_cache):
    import torch

    from trainer.core import TrainerEngine
    from trainer.core.checkpoints import is_complete_checkpoint

    common = {
        "hyperparams.max_steps": 16,
        "output.save_steps": 4,
        "output.save_total_limit": 3,
        "inference.preview_every_steps": 0,
        "inference.num_probes": 2,
    }
    reference = create_default_config(overrides=job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "straight"}))
    TrainerEngine().run_job(reference)

    values = job_values(tmp_path, builtin_cache, **common, **{"output.run_name": "killed"})
    config_file = write_config(tmp_path, values)
    run = tmp_path / "outputs" / "killed"
    proc = cli(config_file)
    wait_for(lambda: is_complete_checkpoint(run / "checkpoint-8"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "model").exists()
    # A checkpoint whose save never finished must be skipped by --resume auto.
    (run / "checkpoint-15").mkdir()
    (run / "checkpoint-15" / "model.safetensors").write_bytes(b"partial")

    resumed = cli(config_file, "--resume", "auto")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming from" in out and "checkpoint-15" not in out.split("resuming from")[1].splitlines()[0]
    assert "loss:" in out and "held-out probes:" in out and f"model saved to {run / 'model'}" in out
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "completed" and status["resumed_from_step"] in (8, 12)

    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 16  # steps redone after the kill count once

    straight, again = load_weights(tmp_path / "outputs" / "straight" / "model"), load_weights(run / "model")
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], atol=1e-5, rtol=1e-5, msg=name)


def test_sigterm_saves_checkpoint_and_stops(tmp_path, builtin_cache):
    values = job_values(tmp_path, builtin_cache, **{"hyperparams.max_steps": 400, "output.save_steps": 1000, "inference.preview_every_steps": 0})
    config_file = write_config(tmp_path, values)
    status_path = tmp_path / "status.json"

    def training_started() -> bool:
        try:
            return json.loads(status_path.read_text())["current_step"] >= 2
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    proc = cli(config_file)
    wait_for(training_started, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "run again with --resume auto" in err and "Traceback" not in err
    status = json.loads(status_path.read_text())
    assert status["phase"] == "stopped"
    saved = [c["step"] for c in status["checkpoints"]]
    assert saved and 2 <= saved[-1] < 400
    assert (tmp_path / "outputs" / "run" / f"checkpoint-{saved[-1]}" / "trainer_state.json").is_file()


def test_bad_data_fails_before_model_load(tmp_path, builtin_cache):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(BUNDLED.read_text().splitlines()[:10] + ["{broken"] * 5) + "\n")
    config_file = write_config(tmp_path, job_values(tmp_path, builtin_cache, **{"data.dataset_path": [str(bad)]}))
    proc = cli(config_file)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert "Traceback" not in err
    assert err.startswith("error: 5 of 15 rows (33.3%) were rejected, more than data.max_reject_fraction=0.05")
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["phase"], status["error_type"]) == ("failed", "DataError")
    assert status["error_message"].startswith("5 of 15 rows")
    assert "prepare_data" in status["error_traceback"]
    run = tmp_path / "outputs" / "run"
    assert (run / "rejects.jsonl").read_text().count("\n") == 5
    assert not list(run.glob("checkpoint-*")) and not (run / "model").exists()


def test_failure_during_training_is_recorded(tmp_path, builtin_cache, tiny_model_dir):
    """A model whose embedding is smaller than its tokenizer fails in the first forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.core import TrainerEngine

    broken = tmp_path / "broken-model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(64)
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    config = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{"model.path": str(broken)}))
    with pytest.raises(IndexError):
        TrainerEngine().run_job(config)
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["phase"], status["status"], status["error_type"]) == ("failed", "crashed", "IndexError")
    assert "index out of range" in status["error_message"]
    assert "embedding" in status["error_traceback"]
    assert status["data"]["rows_used"] == 296  # data preparation had finished


def test_dry_run_prints_report_and_trains_nothing(tmp_path, builtin_cache):
    config_file = write_config(tmp_path, job_values(tmp_path, builtin_cache))
    proc = cli(config_file, "--dry-run")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "rows: 300 read, 296 used for training, 4 held out, 0 rejected" in out
    assert "check inference_prompt_matches_training: ok" in out
    assert "check generation_stops_there: True" in out
    assert "--- example 1 (trained text between [[ and ]]) ---" in out
    assert "<|im_start|>assistant\n[[Step 1:" in out
    run = tmp_path / "outputs" / "run"
    report = json.loads((run / "data_report.json").read_text())
    assert report["rows_used"] == 296 and report["token_lengths"]["max"] > 0
    assert not (run / "model").exists() and not list(run.glob("checkpoint-*"))


@pytest.mark.parametrize("profile", ["regime3", "emoji_think"])
def test_main_job_learns_the_profile_format(tmp_path, builtin_cache, profile):
    """The README's main job, with the shipped config.json: >= 90% of held-out probe answers
    follow the profile's format at the end (about a minute and a half each on 2 CPU cores)."""
    proc = subprocess.run(
        [
            sys.executable, str(CLI), "--profile", profile,
            "--output-dir", str(tmp_path / "outputs"), "--run-name", "main",
            "--set", f"system.status_file={tmp_path / 'status.json'}",
            "--set", f"model.builtin_cache={builtin_cache}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ETA" in proc.stdout
    result = json.loads((tmp_path / "outputs" / "main" / "result.json").read_text())
    metrics = result["final_metrics"]
    assert metrics["probes"] == 16
    assert metrics["probes_format_ok"] >= 0.9 * metrics["probes"], proc.stdout[-2000:]
    assert metrics["loss_end"] < metrics["loss_start"] / 5

    # The saved model stands alone: plain transformers, the held-out questions with no system
    # message (as serving stacks send them), greedy: as many answers in the format as the
    # engine's own previews (its template puts the profile's system prompt in).
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.profiles import get_profile

    folder = tmp_path / "outputs" / "main" / "model"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    previews = [json.loads(line) for line in (tmp_path / "outputs" / "main" / "previews.jsonl").read_text().splitlines()]
    last = [p for p in previews if p["step"] == max(q["step"] for q in previews)]
    assert len(last) == metrics["probes"]
    checker, plain_ok = get_profile(profile), 0
    for preview in last:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": preview["prompt"]}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.no_grad():
            output = model.generate(**inputs, do_sample=False)
        answer = tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        plain_ok += checker.check_format(answer).format_ok
    assert plain_ok >= metrics["probes_format_ok"], (plain_ok, metrics["probes_format_ok"])


def test_fresh_run_refuses_a_run_folder_with_checkpoints(tmp_path, builtin_cache):
    from trainer.config import ConfigError
    from trainer.core import TrainerEngine

    (tmp_path / "outputs" / "run" / "checkpoint-4").mkdir(parents=True)
    config = create_default_config(overrides=job_values(tmp_path, builtin_cache))
    with pytest.raises(ConfigError) as info:
        TrainerEngine().run_job(config)
    assert info.value.problems == [
        f"output.run_name: {tmp_path / 'outputs' / 'run'} already holds checkpoints of an earlier run; "
        "add --resume auto to continue it, or choose another --run-name"
    ]
    # refused before anything was written: no status, nothing new in the run folder
    assert not (tmp_path / "status.json").exists()
    assert [p.name for p in (tmp_path / "outputs" / "run").iterdir()] == ["checkpoint-4"]
