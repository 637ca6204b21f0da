"""The embedded builtin:tiny-qwen3: offline, deterministic, atomic to build; plain HF to load."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.models import builtin
from trainer.models.builtin import (
    BUILTIN_MODELS,
    COMPLETE_MARKER,
    build_builtin,
    resolve_model_path,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = "builtin:tiny-qwen3"
TINY = BUILTIN_MODELS["tiny-qwen3"]
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return resolve_model_path(SPEC, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="module")
def model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=OFFLINE_ENV,
                          capture_output=True, text=True, timeout=300)


# --- resolving specs ---------------------------------------------------------------------------

def test_importing_the_module_does_not_import_heavy_libraries():
    result = run_python("import sys, trainer.models.builtin; "
                        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') "
                        "if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_non_builtin_spec_is_returned_unchanged(tmp_path):
    assert resolve_model_path("Qwen/Qwen3-0.6B", tmp_path) == Path("Qwen/Qwen3-0.6B")
    assert resolve_model_path("/models/mine", tmp_path) == Path("/models/mine")
    assert not any(tmp_path.iterdir()), "nothing is built for a non-builtin spec"


def test_unknown_builtin_names_the_offender_and_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match=r"'builtin:nope'.*known: builtin:small-qwen3, builtin:tiny-qwen3"):
        resolve_model_path("builtin:nope", tmp_path)


def test_cache_folder_is_named_by_name_and_version(folder):
    assert folder.name == f"tiny-qwen3-v{TINY.version}"
    assert [p.name for p in folder.parent.iterdir()] == [folder.name], "no staging left behind"


def test_resolving_again_reuses_the_build(folder):
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(SPEC, folder.parent) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_first_build_says_so_in_one_line_and_a_built_one_says_nothing(tmp_path, monkeypatch,
                                                                     caplog):
    def quick_build(spec, staging: Path) -> None:
        (staging / COMPLETE_MARKER).write_text("{}")

    monkeypatch.setattr(builtin, "build_builtin", quick_build)
    caplog.set_level(logging.INFO, logger=builtin.__name__)
    folder = resolve_model_path(SPEC, tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"building the embedded model builtin:tiny-qwen3 into {folder} (first use, a few seconds)"
    ]
    assert caplog.records[0].levelno == logging.INFO
    caplog.clear()
    assert resolve_model_path(SPEC, tmp_path) == folder
    assert resolve_model_path("Qwen/Qwen3-0.6B", tmp_path) == Path("Qwen/Qwen3-0.6B")
    assert caplog.records == [], "nothing is said when the build is already there"


# --- atomic publication ------------------------------------------------------------------------

def test_losing_the_publish_race_keeps_the_winner_and_cleans_up(tmp_path, monkeypatch):
    winner = tmp_path / f"tiny-qwen3-v{TINY.version}"

    def build_while_another_builder_publishes(spec, staging: Path) -> None:
        winner.mkdir()
        (winner / COMPLETE_MARKER).write_text("winner")
        (staging / COMPLETE_MARKER).write_text("loser")

    monkeypatch.setattr(builtin, "build_builtin", build_while_another_builder_publishes)
    assert resolve_model_path(SPEC, tmp_path) == winner
    assert (winner / COMPLETE_MARKER).read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == [winner.name], "the loser's copy is removed"


def test_failed_build_leaves_no_folder_behind(tmp_path, monkeypatch):
    def broken_build(spec, staging):
        (staging / "half").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(builtin, "build_builtin", broken_build)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model_path(SPEC, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_folder_in_the_cache_is_reported_not_used(tmp_path):
    stale = tmp_path / f"tiny-qwen3-v{TINY.version}"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="not a complete builtin build"):
        resolve_model_path(SPEC, tmp_path)


# Each builder waits at a file barrier so both check the cache before either has published.
CONCURRENT_BUILDER = """
import sys, time
from pathlib import Path
import torch, transformers  # import first so the barrier is what lines the builders up
from trainer.models.builtin import BUILTIN_MODELS, is_complete, resolve_model_path
cache, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(cache.parent / me).touch()
while not (cache.parent / other).exists():
    time.sleep(0.005)
found = is_complete(cache / f"tiny-qwen3-v{BUILTIN_MODELS['tiny-qwen3'].version}")
folder = resolve_model_path("builtin:tiny-qwen3", cache)
transformers.AutoTokenizer.from_pretrained(folder)  # whichever copy won must be whole
transformers.AutoModelForCausalLM.from_pretrained(folder)
print(found, folder)
"""


def test_two_concurrent_builders_both_succeed(tmp_path):
    cache = tmp_path / "cache"
    builders = [subprocess.Popen([sys.executable, "-c", CONCURRENT_BUILDER, str(cache), me, other],
                                 cwd=REPO, env=OFFLINE_ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for me, other in (("a.ready", "b.ready"), ("b.ready", "a.ready"))]
    outputs = [builder.communicate(timeout=300) for builder in builders]
    for builder, (stdout, stderr) in zip(builders, outputs):
        assert builder.returncode == 0, stderr
        found, path = stdout.split()
        assert found == "False", "both builders must have started from an empty cache"
        assert Path(path) == cache / f"tiny-qwen3-v{TINY.version}"
    assert [p.name for p in cache.iterdir()] == [f"tiny-qwen3-v{TINY.version}"]


# --- the built folder --------------------------------------------------------------------------

def test_folder_loads_offline_with_plain_auto_classes(folder):
    result = run_python("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; "
                        "tok = AutoTokenizer.from_pretrained(sys.argv[1]); "
                        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1]); "
                        "print(model.config.model_type, tok.eos_token)", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["qwen3", "<|im_end|>"]


def test_config_has_the_tiny_dimensions(model, tokenizer):
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.head_dim, config.intermediate_size,
            config.max_position_embeddings) == (128, 3, 4, 2, 32, 384, 1024)
    assert config.tie_word_embeddings
    assert config.vocab_size % 64 == 0 and len(tokenizer) <= config.vocab_size < len(tokenizer) + 64
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert config.bos_token_id is None
    assert next(model.parameters()).dtype.is_floating_point
    assert str(next(model.parameters()).dtype) == "torch.float32"


def test_generation_config_stops_on_both_end_markers(folder, tokenizer):
    generation = json.loads((folder / "generation_config.json").read_text())
    ids = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert generation["eos_token_id"] == ids
    assert generation["pad_token_id"] == ids[1]


def test_marker_records_spec_and_data_hash(folder):
    record = json.loads((folder / COMPLETE_MARKER).read_text())
    assert record["spec"]["name"] == "tiny-qwen3"
    assert len(record["data_sha256"]) == 64


# --- tokenizer ---------------------------------------------------------------------------------

def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] in tokenizer.all_special_ids, token
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False) == [tokenizer.eos_token_id]


def test_chat_template_renders_plain_chatml(tokenizer):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is 2 + 3?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    assert "<think>" not in rendered


def test_chat_template_renders_assistant_turns(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"


@pytest.mark.parametrize("text", [
    "For this task, think with 🤔 /four/ times.\n🤔🤔🤔🤔",
    "Step 1: 27 + 8 = 35\n\nStep 2: 35 * 2 = 70\nAnswer: 70",
    "Ünïcode, 中文 and tabs\tsurvive byte-level encoding ✓",
])
def test_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_each_digit_is_its_own_token(tokenizer):
    tokens = tokenizer.tokenize("She has 1234567890 apples")
    digits = [token for token in tokens if any(char.isdigit() for char in token)]
    assert digits == list("1234567890")


def test_profile_markers_are_compact(tokenizer):
    # Trained on the profile corpus, these markers take a handful of tokens, not one per byte.
    for text in ("Step 1:", "Answer:", "🤔🤔🤔🤔", "You are a helpful assistant."):
        assert len(tokenizer.tokenize(text)) <= 6, (text, tokenizer.tokenize(text))


# --- model -------------------------------------------------------------------------------------

def test_forward_pass_gives_logits_over_the_vocab(model, tokenizer):
    import torch

    batch = tokenizer(["Tom has 5 apples.", "Step 1:"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_greedy_generate_runs(model, tokenizer):
    import torch

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                           add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new_tokens = output.shape[1] - prompt["input_ids"].shape[1]
    assert 1 <= new_tokens <= 8


# --- determinism -------------------------------------------------------------------------------

def test_two_builds_are_identical(folder, tmp_path):
    from safetensors.torch import load_file

    again = tmp_path / "again"
    again.mkdir()
    build_builtin(TINY, again)
    assert (again / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    first, second = load_file(folder / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].equal(second[name]), name
