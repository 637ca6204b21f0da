"""--validate and the start of a job agree: every user mistake is an exit-2 message naming its key,
found before any model loads, never a traceback. Each case runs through both, as a user meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit import CLI, REPO, job_values, write_config


def _run(config: Path, args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), "--config", str(config), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def _tokenizerless_model(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_model_dir / name).exists():
            (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    return ["--model", str(folder)]


def _output_dir_is_a_file(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    (tmp_path / "outputs-file").write_text("not a folder")
    return ["--output-dir", str(tmp_path / "outputs-file")]


def _status_file_is_a_folder(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    (tmp_path / "status-dir").mkdir()
    return ["--set", f"system.status_file={tmp_path / 'status-dir'}"]


def _profile_with_syntax_error(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    (tmp_path / "mods").mkdir(exist_ok=True)
    (tmp_path / "mods" / "broken_syntax.py").write_text("from trainer.profiles import DataProfile\n\nclass P(DataProfile:\n    pass\n")
    return ["--profile", "broken_syntax:P"]


def _profile_that_raises(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    (tmp_path / "mods").mkdir(exist_ok=True)
    (tmp_path / "mods" / "raises_on_import.py").write_text("import os\n\nSETTING = os.environ['NO_SUCH_VARIABLE_HERE']\n")
    return ["--profile", "raises_on_import:P"]


def _duplicate_keys(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    config = tmp_path / "job.json"
    text = config.read_text()
    assert text.count('"batch_size": 8') == 1
    config.write_text(text.replace('"batch_size": 8', '"batch_size": 8, "batch_size": 4'))
    return []


def _resume_from_a_non_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    (tmp_path / "not-a-checkpoint").mkdir()
    (tmp_path / "not-a-checkpoint" / "notes.txt").write_text("x")
    return ["--resume", str(tmp_path / "not-a-checkpoint")]


def _resume_from_a_missing_folder(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    return ["--resume", str(tmp_path / "nowhere" / "checkpoint-5")]


CASES = {
    "model folder without a tokenizer": (_tokenizerless_model, "model.path: {tmp}/no-tokenizer has no tokenizer"),
    "empty model.path": (lambda t, m: ["--model", ""], "model.path: an empty path; give a file or folder (from --model)"),
    "empty dataset path": (lambda t, m: ["--dataset", ""], "data.dataset_path[0]: an empty path"),
    "output dir is a file": (_output_dir_is_a_file, "output.output_dir: {tmp}/outputs-file is a file, not a folder"),
    "status file is a folder": (_status_file_is_a_folder, "system.status_file: {tmp}/status-dir is a folder"),
    "profile module with a syntax error": (
        _profile_with_syntax_error,
        "profile.name: cannot import profile 'broken_syntax:P': SyntaxError: ",
    ),
    "profile module that raises": (
        _profile_that_raises,
        "profile.name: cannot import profile 'raises_on_import:P': KeyError: 'NO_SUCH_VARIABLE_HERE' at {tmp}/mods/raises_on_import.py:3",
    ),
    "bool for an int": (
        lambda t, m: ["--set", "hyperparams.batch_size=true"],
        "hyperparams.batch_size: expected a number; got true (a boolean) (from --set)",
    ),
    "--set without a key": (lambda t, m: ["--set", "=5"], "--set =5: no key before '='"),
    "duplicate keys in the config file": (_duplicate_keys, "{tmp}/job.json: key hyperparams.batch_size is given 2 times"),
    "resume from a folder that is not a checkpoint": (
        _resume_from_a_non_checkpoint,
        "output.resume: {tmp}/not-a-checkpoint is not a complete checkpoint (missing trainer_state.json",
    ),
    "flash attention on a CPU": (
        lambda t, m: ["--set", "model.attn_implementation=flash_attention_2", "--set", "system.device=cpu"],
        "model.attn_implementation: flash_attention_2 runs on CUDA GPUs only, and system.device is 'cpu'",
    ),
    "resume from a missing folder": (
        _resume_from_a_missing_folder,
        "output.resume: checkpoint folder {tmp}/nowhere/checkpoint-5 does not exist",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_and_start_report_the_same_problem(case, tmp_path, builtin_cache, tiny_model_dir):
    make_args, expected = CASES[case]
    config = write_config(tmp_path, job_values(tmp_path, builtin_cache))
    args = make_args(tmp_path, tiny_model_dir)
    expected = expected.format(tmp=tmp_path)
    env = {"PYTHONPATH": str(tmp_path / "mods")}
    if case == "profile module with a syntax error":
        expected_line = f"at {tmp_path}/mods/broken_syntax.py:3"
    else:
        expected_line = ""
    for mode in (["--validate"], []):
        proc = _run(config, [*args, *mode], env)
        label = f"{case} with {mode or 'a real start'}"
        assert proc.returncode == 2, f"{label}: {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, label
        assert proc.stderr.startswith("error: "), label
        assert expected in proc.stderr, f"{label}: {proc.stderr}"
        assert expected_line in proc.stderr, label
    # The real start stopped before anything was written or loaded.
    assert not (tmp_path / "outputs" / "run").exists()
    assert not (tmp_path / "status.json").exists() or case == "status file is a folder"


def test_all_problems_are_reported_at_once(tmp_path, builtin_cache):
    config = write_config(tmp_path, job_values(tmp_path, builtin_cache))
    (tmp_path / "status-dir").mkdir()
    proc = _run(config, ["--validate", "--set", f"system.status_file={tmp_path / 'status-dir'}", "--resume", str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: 2 configuration problems:")
    assert "system.status_file" in proc.stderr and "output.resume" in proc.stderr


def test_a_valid_job_still_validates(tmp_path, builtin_cache):
    config = write_config(tmp_path, job_values(tmp_path, builtin_cache))
    proc = _run(config, ["--validate"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config OK")


def test_tokenizer_check_at_load_catches_an_empty_vocabulary(tmp_path, tiny_model_dir):
    """Belt and braces behind the pre-flight check: a tokenizer file with no vocabulary."""
    from trainer.config import ConfigError, create_default_config
    from trainer.models.loading import load_tokenizer

    folder = tmp_path / "empty-vocab"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    config = create_default_config(model_path=str(folder))
    with pytest.raises(ConfigError, match="model.path: the tokenizer in .* has 1 token"):
        load_tokenizer(folder, config)


def test_kernel_checks_raise_and_pass(monkeypatch):
    """flash_attention_2 where it cannot run is refused before any model loads; sdpa, the
    default, and flash attention on a CUDA machine with flash-attn installed pass."""
    import importlib.util

    from trainer.config import create_default_config
    from trainer.core.preflight import check_kernels

    def config(**values):
        return create_default_config(overrides=values)

    assert check_kernels(config()) == []
    assert check_kernels(config(**{"model.attn_implementation": "sdpa", "system.device": "cpu"})) == []
    [problem] = check_kernels(config(**{"model.attn_implementation": "flash_attention_2", "system.device": "mps"}))
    assert problem.startswith("model.attn_implementation: flash_attention_2 runs on CUDA GPUs only")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else object())
    [problem] = check_kernels(config(**{"model.attn_implementation": "flash_attention_2", "system.device": "cuda"}))
    assert "needs the flash-attn package" in problem
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert check_kernels(config(**{"model.attn_implementation": "flash_attention_2", "system.device": "cuda"})) == []


def test_torch_compile_switch_reaches_the_trainer(tmp_path):
    """system.torch_compile (off by default) is passed to transformers' TrainingArguments."""
    from types import SimpleNamespace

    from trl import SFTConfig

    from trainer.config import create_default_config
    from trainer.methods.sft import training_arguments

    for value in (False, True):
        config = create_default_config(overrides={"system.torch_compile": value})
        context = SimpleNamespace(config=config, run_dir=tmp_path, device="cpu", precision="float32")
        assert training_arguments(context, SFTConfig).torch_compile is value
    assert create_default_config().system.torch_compile is False
