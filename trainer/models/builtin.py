"""Embedded default models: ``builtin:<name>`` specs built offline into a local cache folder.

A builtin is a tiny Qwen3 causal LM with a byte-level BPE tokenizer trained on the bundled
arithmetic data and a bundled page of ordinary English, so the engine can fine-tune and test end to end on CPU with no download. The
build is deterministic (fixed seeds, fixed corpus) and lands in ``<cache_root>/<name>-v<version>``
as a plain Hugging Face folder that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load as-is.

Heavy libraries (torch, transformers, tokenizers) are imported inside the build functions, so
importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.data.bundled import CONVERSATIONS
from trainer.models.templates import CHATML_TEMPLATE

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
# Written last into a build folder: its presence means the folder is complete.
COMPLETE_MARKER = "builtin.json"
DATA_PATH = CONVERSATIONS
# Everyday English (word problems, instructions, prose) so that real data such as GSM8K or Alpaca
# tokenizes to whole words, not byte soup: about 20% fewer tokens on GSM8K than arithmetic alone.
ENGLISH_PATH = DATA_PATH.with_name("english_corpus.txt")
# How many times each paragraph of ENGLISH_PATH is seen: enough for its words to earn merges
# next to the 4000 arithmetic rows; more changes nothing measurable.
ENGLISH_REPEATS = 20

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Order fixes their ids (0..4). The think tags are special so the engine can penalize them.
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, EOS_TOKEN, THINK_OPEN, THINK_CLOSE]

# Plain ChatML (no <think> injection), the same template the engine trains Qwen-family models with.
CHAT_TEMPLATE = CHATML_TEMPLATE

# Text the data profiles wrap around examples, so their markers become a few tokens each rather
# than byte soup. Generic English keeps the tokenizer usable outside arithmetic.
PROFILE_CORPUS = """\
system
You are a helpful assistant.
user
assistant
For this task, think with 🤔 /four/ times.
🤔🤔🤔🤔
Think step by step.
Think step by step, then give the final answer.
Step 1: Read the question.
Step 2: Work out the numbers.
Step 3: Check the result.
Answer: 42

The quick brown fox jumps over the lazy dog. It was a bright and cold day in April, and the
clocks were striking thirteen. What is the best way to learn something new? Start small, ask
questions, and practice a little every day. If you don't know the answer, say so: it's better to
be honest than to guess. We will meet at the library on Monday at noon; bring your notes, a pen
and something to drink. Can you explain why the sky is blue? Sunlight is scattered by the air,
and blue light is scattered more than red light. They said that this model was trained to follow
instructions, to write clearly and to reason about simple problems.
"""
# How many copies of PROFILE_CORPUS the tokenizer sees: about as often as a profile's markers
# would appear over the bundled data, so they earn merges without crowding out the data's words.
PROFILE_CORPUS_REPEATS = 200
ANNOTATION = re.compile(r"<<[^>]*>>")  # GSM8K calculator notes; the data loader strips them too


@dataclass(frozen=True)
class BuiltinSpec:
    """Recipe for one builtin model. Bump ``version`` whenever the recipe or the data changes,
    since cached folders are keyed by name and version only."""

    name: str
    version: int
    seed: int
    # Cap on the tokenizer vocabulary, special tokens included. BPE stops earlier once every word
    # of the templated corpus is a single token.
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    max_position_embeddings: int  # also the tokenizer's model_max_length, in tokens
    description: str


BUILTIN_MODELS: dict[str, BuiltinSpec] = {
    "tiny-qwen3": BuiltinSpec(
        name="tiny-qwen3",
        version=2,
        seed=0,
        vocab_size=2048,
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=384,
        max_position_embeddings=1024,
        description="~0.85M-parameter Qwen3 for fast CPU runs on the bundled arithmetic data",
    ),
    # The embedded teacher of distillation (method distill): the same tokenizer (same corpus,
    # vocabulary cap and trainer), about 4x the parameters. bench/speed.py measures this shape
    # ("small") at about 2.4x the tiny model's cost per token on this 2-core CPU.
    "small-qwen3": BuiltinSpec(
        name="small-qwen3",
        version=1,
        seed=0,
        vocab_size=2048,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=768,
        max_position_embeddings=1024,
        description="~3.7M-parameter Qwen3 with tiny-qwen3's tokenizer: the embedded distillation teacher",
    ),
}


def resolve_model_path(spec: str, cache_root: Path) -> Path:
    """Turn a model spec into a local folder, building a builtin on first use.

    Args:
        spec: ``"builtin:<name>"`` or any other path or hub id, which is returned unchanged.
        cache_root: folder that holds built builtins, one ``<name>-v<version>`` folder each.

    Returns:
        The folder to pass to ``from_pretrained``.

    Raises:
        ValueError: ``spec`` names a builtin that does not exist.
        RuntimeError: the cache folder exists but is not a complete build.
    """
    if not spec.startswith(BUILTIN_PREFIX):
        return Path(spec)
    builtin = lookup_builtin(spec[len(BUILTIN_PREFIX):])
    folder = Path(cache_root) / f"{builtin.name}-v{builtin.version}"
    if is_complete(folder):
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise RuntimeError(f"{folder} exists but is not a complete builtin build "
                           f"(no {COMPLETE_MARKER}); delete it to rebuild")
    # The build takes a few seconds the first time and none after; say why this run paused.
    log.info("building the embedded model %s%s into %s (first use, a few seconds)",
             BUILTIN_PREFIX, builtin.name, folder)
    publish_build(builtin, folder)
    return folder


def lookup_builtin(name: str) -> BuiltinSpec:
    """The registered builtin called ``name``; the error lists the known names."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(BUILTIN_PREFIX + each for each in sorted(BUILTIN_MODELS))
        raise ValueError(f"unknown builtin model '{BUILTIN_PREFIX}{name}'; known: {known}") from None


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished build (its marker is written last)."""
    return (folder / COMPLETE_MARKER).is_file()


def publish_build(spec: BuiltinSpec, folder: Path) -> None:
    """Build into a private temp folder, then rename it into place in one atomic step.

    Concurrent builders each build their own copy; the first rename wins and the others, finding
    the folder already there, discard theirs. Nobody ever sees a half-built folder.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        build_builtin(spec, staging)
        staging.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared
        try:
            os.replace(staging, folder)
        except OSError:
            # Renaming onto a non-empty folder fails: another builder published first.
            if not is_complete(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_builtin(spec: BuiltinSpec, folder: Path) -> None:
    """Write the tokenizer, model and generation config of ``spec`` into ``folder``.

    The same spec and data always give the same tokenizer.json and weights.
    """
    from transformers.utils import logging as hf_logging

    tokenizer = build_tokenizer(spec)
    model = build_model(spec, tokenizer)
    # The one log line in resolve_model_path says what is happening; no progress bar for one shard.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    write_marker(spec, folder)


def write_marker(spec: BuiltinSpec, folder: Path) -> None:
    """Record what was built, from which data; written last, it marks the folder complete."""
    record = {"spec": asdict(spec)}
    for key, path in (("data", DATA_PATH), ("english", ENGLISH_PATH)):
        record[key] = path.name
        record[f"{key}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / COMPLETE_MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def tokenizer_corpus() -> Iterator[str]:
    """Texts the tokenizer is trained on: the bundled data as the model will see it, the profile
    corpus, then the English page one paragraph at a time."""
    if not DATA_PATH.is_file():
        raise FileNotFoundError(f"bundled data {DATA_PATH} is missing; run "
                                "`python data/generate_arithmetic.py` to regenerate it")
    if not ENGLISH_PATH.is_file():
        raise FileNotFoundError(f"bundled text {ENGLISH_PATH} is missing; restore it from git")
    with DATA_PATH.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            yield row["question"]
            yield ANNOTATION.sub("", row["answer"])
    for _ in range(PROFILE_CORPUS_REPEATS):
        yield PROFILE_CORPUS
    paragraphs = ENGLISH_PATH.read_text(encoding="utf-8").split("\n\n")
    for _ in range(ENGLISH_REPEATS):
        yield from paragraphs


def build_tokenizer(spec: BuiltinSpec) -> Any:
    """Train a byte-level BPE tokenizer and wrap it for transformers.

    Digits are split one per token (as in Qwen), so every number is spelled digit by digit; being
    byte-level, any text (emoji included) encodes without unknown tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        extra_special_tokens=[IM_START, THINK_OPEN, THINK_CLOSE],
        model_max_length=spec.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(spec: BuiltinSpec, tokenizer: Any) -> Any:
    """A randomly initialized Qwen3ForCausalLM sized by ``spec``, seeded for reproducibility."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    config = Qwen3Config(
        # A multiple of 64 keeps the embedding matmul shapes friendly.
        vocab_size=64 * math.ceil(len(tokenizer) / 64),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = Qwen3ForCausalLM(config).to(torch.float32)
    # Stop on either end marker: <|im_end|> closes a chat turn, <|endoftext|> a raw completion.
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, bos_token_id=None)
    return model
