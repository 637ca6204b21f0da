#!/usr/bin/env python
"""How fast does the engine train, against raw TRL and a bare PyTorch loop, side by side?

Every contestant trains the same freshly built Qwen3 (random weights, the embedded tokenizer) on
the same conversations: the first ``--rows`` rows of ``../shared/datasets/gsm8k_train.jsonl``
(the bundled arithmetic data where that folder is absent), rendered by the regime3 profile. Raw
TRL is fed exactly the conversations the engine keeps (rows over ``max_length`` are dropped by
both). Contestants run alternately (A B C A B C ...), each in a fresh process, ``--rounds``
times; the table shows the best round of each.

- ``trl-default``: ``SFTTrainer`` with its defaults (random batches padded to the longest row;
  bf16 autocast where the CPU multiplies bf16 natively, fp32 elsewhere);
- ``trl-grouped``: TRL's best setting found, ``train_sampling_strategy="group_by_length"`` (and
  the rest of ``TRL_BEST``) in the precision the engine picks for the model on this CPU;
- ``engine``: ``TrainerEngine.run_job`` with the engine's default config (previews and
  checkpoints out of the 40-step window, as they are by default);
- ``bare``: a plain PyTorch loop (forward, backward, clip, AdamW, schedule) over the very
  batches the engine's trainer yields, to show the engine's own overhead.

The figure is real (non-padding) tokens per second over steps 11..N: the first ten steps are
warm-up (allocator, first-touch), the same for everyone. Also measured: SFT at a second model
size, DPO against raw TRL ``DPOTrainer``, generation against a bare batched ``generate``, a
rerun's data preparation from the cache, and the CLI's ``--help`` / ``--print-config`` /
``--validate`` times. Asked for by ``--only levers`` (not in the default set): the engine's SFT
job at both sizes in float32, in bfloat16-mixed and with glibc's heap defaults, against its
default config. By ``--only compile`` (not in the default set either): the small SFT job
with ``system.torch_compile`` against without, per round, with each process's whole time.

Usage: python bench/speed.py [--rows 3000] [--steps 40] [--rounds 2] [--only sft,size,dpo,generate,cache,cli[,levers,compile]]
Not part of the test suite; run it on a quiet machine (other load skews every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.models.cpu import has_bf16_matmul  # noqa: E402
from trainer.models.loading import resolve_precision  # noqa: E402

GSM8K = ROOT.parent / "shared" / "datasets" / "gsm8k_train.jsonl"
BUNDLED = ROOT / "data" / "arithmetic_train.jsonl"
WARMUP_STEPS = 10
# The fastest TRL settings found here: length-grouped batches, no activation checkpointing (TRL
# turns it on by default; it recomputes the forward pass, which a 3.7 M model never needs), and
# transformers' fused AdamW (the engine's default optimizer, one flag away for a TRL user too).
TRL_BEST = {"train_sampling_strategy": "group_by_length", "activation_checkpointing": False, "optim": "adamw_torch_fused"}
BATCH, MAX_LENGTH, LR = 8, 512, 1e-3
# Model sizes: "small" is the 3.7 M-parameter shape the speed issue measured; "tiny" is the
# embedded default's own shape (a second size).
SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=768),
    "tiny": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=384),
}


# ---------------------------------------------------------------- shared set-up (parent process)

def build_model(out: Path, size: str) -> Path:
    """A Qwen3 of ``size`` with random weights and the embedded tokenizer, saved as a HF folder."""
    folder = out / f"model-{size}"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from trainer.models.builtin import BUILTIN_MODELS, resolve_model_path

    builtin = resolve_model_path("builtin:tiny-qwen3", out / "builtin")
    tokenizer = AutoTokenizer.from_pretrained(builtin)
    base = Qwen3Config.from_pretrained(builtin)
    config = Qwen3Config(
        vocab_size=base.vocab_size, max_position_embeddings=BUILTIN_MODELS["tiny-qwen3"].max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=base.eos_token_id, pad_token_id=base.pad_token_id,
        bos_token_id=None, **SIZES[size],
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    from transformers import GenerationConfig

    GenerationConfig.from_pretrained(builtin).save_pretrained(folder)
    return folder


def engine_values(out: Path, model: Path, data: Path, steps: int, name: str) -> dict:
    return {
        "model.path": str(model),
        "data.dataset_path": [str(data)],
        "data.max_length": MAX_LENGTH,
        "data.cache_dir": str(out / "cache"),
        "hyperparams.batch_size": BATCH,
        "hyperparams.max_steps": steps,
        "hyperparams.learning_rate": LR,
        "output.output_dir": str(out / "runs"),
        "output.run_name": name,
        "system.status_file": str(out / "runs" / f"{name}.status.json"),
    }


def engine_config(out: Path, values: dict):
    from trainer.config import ConfigLoader

    return ConfigLoader(ROOT / "config.json").apply(values, source="bench")


def data_file(out: Path, rows: int) -> Path:
    source = GSM8K if GSM8K.exists() else BUNDLED
    path = out / "rows.jsonl"
    with source.open() as f, path.open("w") as w:
        for i, line in enumerate(f):
            if i >= rows:
                break
            w.write(line)
    return path


def conversations(out: Path, values: dict) -> Path:
    """The conversations the engine trains on (after its drops), as TRL ``messages`` rows."""
    from core.custom_collator import tokenize_with_mask
    from trainer.data.rendering import rendered_split
    from trainer.data.report import DataReport
    from trainer.models.loading import load_tokenizer
    from trainer.models.templates import choose_chat_template
    from trainer.profiles import get_profile

    config = engine_config(out, values)
    tokenizer = load_tokenizer(Path(config.model.path), config)
    template = choose_chat_template(tokenizer, config.model.chat_template, config.resolve_path)
    profile = get_profile(config.profile.name, config.profile.options)
    train, _ = rendered_split(config, [Path(p) for p in config.data.dataset_path], profile, DataReport(), [])
    # the engine's own length test: its tokenization under the template it chooses
    kept = [
        {"messages": item.messages}
        for item in train
        if len(tokenize_with_mask(tokenizer, item.messages, template).input_ids) <= MAX_LENGTH
    ]
    path = out / "messages.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in kept))
    return path


# ---------------------------------------------------------------- contestants (child processes)

def install_clock(record: Path):
    """A callback that stamps every step's end and every log's token count, written to
    ``record`` when training ends."""
    import transformers.trainer as hf_trainer
    from transformers import TrainerCallback

    stamps: dict[int, float] = {}
    tokens: dict[int, float] = {}

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps[state.global_step] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                tokens[state.global_step] = logs["num_tokens"]

        def on_train_end(self, args, state, control, **kwargs):
            record.write_text(json.dumps({"stamps": stamps, "tokens": tokens}))

    # every Trainer built in this process (TRL's or the engine's) gets the clock
    hf_trainer.DEFAULT_CALLBACKS.append(StepClock)


def raw_trl(spec: dict, record: Path, config_class, trainer_class, data_key: str, **config) -> None:
    """A raw TRL trainer as a user writes it: the model folder, the rows, TRL's config defaults."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    install_clock(record)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"])
    data = datasets.load_dataset("json", data_files=spec[data_key], split="train")
    args = config_class(
        output_dir=spec["out"], per_device_train_batch_size=BATCH, max_steps=spec["steps"],
        logging_steps=WARMUP_STEPS, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=42,
        # TRL's configs default to bf16 autocast. Where the CPU multiplies bf16 natively
        # (AVX512-BF16 or AMX) TRL keeps its default, as the engine's precision "auto" does;
        # elsewhere bf16 runs ~100x slower than fp32, so TRL is given fp32, as the engine picks
        # there. Everything else is TRL's default unless the contestant says otherwise.
        **{"bf16": spec["bf16"], **config, **spec.get("trl_args", {})},
    )
    trainer_class(model=model, args=args, train_dataset=data, processing_class=tokenizer).train()


def trl_sft(spec: dict, record: Path) -> None:
    from trl import SFTConfig, SFTTrainer

    raw_trl(spec, record, SFTConfig, SFTTrainer, "messages", learning_rate=LR, max_length=MAX_LENGTH)


def engine_sft(spec: dict, record: Path) -> None:
    from trainer.core import TrainerEngine

    install_clock(record)
    values = {**spec["values"], "inference.num_probes": spec.get("num_probes", 16)}
    import io

    TrainerEngine(console=io.StringIO()).run_job(engine_config(Path(spec["out"]), values))


def bare_sft(spec: dict, record: Path) -> None:
    """The engine's own batches (its dataloader, sampler and collator), trained by a plain loop."""
    import torch
    import trl
    from transformers import get_cosine_schedule_with_warmup

    from trainer.models.lm_head import plain_log_probs

    def bare_train(self, *args, **kwargs):
        loader = iter(self.get_train_dataloader())
        batches = [next(loader) for _ in range(spec["steps"])]
        model = self.model
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, fused=True)
        schedule = get_cosine_schedule_with_warmup(optimizer, 20, spec["steps"])
        stamps, tokens, seen = {}, {}, 0
        for step, batch in enumerate(batches, start=1):
            # the same arithmetic as the engine's loss: logits at the trained positions only, in
            # the engine's precision (bf16 autocast where it resolved to bfloat16-mixed)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.args.bf16):
                labels = batch["labels"]
                hidden = model.get_decoder()(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).last_hidden_state
                trained = labels[:, 1:] != -100
                log_probs = plain_log_probs(hidden[:, :-1][trained], model.get_output_embeddings().weight, None,
                                            labels[:, 1:][trained], 1.0, 0)[0]
                loss = -log_probs.mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            seen += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["position_ids"].numel()
            stamps[step], tokens[step] = time.perf_counter(), seen
        record.write_text(json.dumps({"stamps": stamps, "tokens": tokens}))
        os._exit(0)  # the figures are written; the engine's evaluation and saving are not the point

    trl.SFTTrainer.train = bare_train
    engine_sft({**spec, "num_probes": 0}, Path(os.devnull))


def trl_dpo(spec: dict, record: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    raw_trl(spec, record, DPOConfig, DPOTrainer, "pairs", learning_rate=5e-4)


CONTESTANTS = {"trl": trl_sft, "engine": engine_sft, "bare": bare_sft, "trl-dpo": trl_dpo}


def child(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    CONTESTANTS[spec["kind"]](spec, Path(spec["record"]))


# ---------------------------------------------------------------- measuring

def run_contestant(spec: dict, out: Path) -> float:
    """Real tokens per second over steps WARMUP_STEPS+1 .. last, from a fresh process (for a
    trainer that logs no token count, DPO's: pairs per second)."""
    record = out / f"record-{spec['name']}.json"
    record.unlink(missing_ok=True)
    spec = {**spec, "record": str(record), "out": str(out / spec["name"])}
    if "values" in spec:  # a fresh run folder every round: the engine never reuses one
        run = f"{spec['name']}-{time.time_ns()}"
        spec["values"] = {**spec["values"], "output.run_name": run, "system.status_file": str(out / "runs" / f"{run}.status.json")}
    subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True, stdout=subprocess.DEVNULL)
    data = json.loads(record.read_text())
    stamps = {int(k): v for k, v in data["stamps"].items()}
    tokens = {int(k): v for k, v in data["tokens"].items()}
    last = max(stamps)
    if not tokens:  # pairs per second
        return BATCH * (last - WARMUP_STEPS) / (stamps[last] - stamps[WARMUP_STEPS])
    return (tokens[last] - tokens[WARMUP_STEPS]) / (stamps[last] - stamps[WARMUP_STEPS])


def alternate(specs: list[dict], rounds: int, out: Path) -> dict[str, float]:
    best: dict[str, float] = {}
    for r in range(rounds):
        for spec in specs:
            rate = run_contestant(spec, out)
            print(f"  round {r + 1} {spec['name']:14} {rate:8.0f} real tokens/s", flush=True)
            best[spec["name"]] = max(best.get(spec["name"], 0.0), rate)
    return best


def sft_specs(out: Path, size: str, data: Path, steps: int) -> list[dict]:
    model = build_model(out, size)
    values = engine_values(out, model, data, steps, f"engine-{size}")
    messages = conversations(out, values)
    common = {"model": str(model), "messages": str(messages), "steps": steps, "bf16": has_bf16_matmul()}
    # TRL's best gets the precision the engine picks for this model on this CPU (bf16 autocast
    # only where it pays: trainer.models.loading.resolve_precision); README, "Speed", has TRL's
    # figures in both
    best_bf16 = resolve_precision("auto", "cpu", SIZES[size]["hidden_size"]) == "bfloat16-mixed"
    return [
        {"name": f"trl-default-{size}", "kind": "trl", **common},
        {"name": f"trl-grouped-{size}", "kind": "trl", "trl_args": {**TRL_BEST, "bf16": best_bf16}, **common},
        {"name": f"engine-{size}", "kind": "engine", "values": values, **common},
        {"name": f"bare-{size}", "kind": "bare", "values": {**values, "output.run_name": f"bare-{size}"}, **common},
    ]


def table(best: dict[str, float], size: str) -> list[str]:
    base, grouped = best[f"trl-default-{size}"], best[f"trl-grouped-{size}"]
    engine, bare = best[f"engine-{size}"], best[f"bare-{size}"]
    return [
        f"| SFT {size}: TRL defaults | {base:,.0f} | 1.00x |",
        f"| SFT {size}: TRL group_by_length | {grouped:,.0f} | {grouped / base:.2f}x |",
        f"| SFT {size}: engine (default config) | {engine:,.0f} | {engine / base:.2f}x defaults, {engine / grouped:.2f}x grouped |",
        f"| SFT {size}: bare loop, engine's batches | {bare:,.0f} | engine overhead {100 * (bare / engine - 1):+.1f}% |",
    ]


def dpo_specs(out: Path, steps: int) -> list[dict]:
    """The bundled preference pairs: TRL gets exactly the prompt / chosen / rejected rows the
    engine's data preparation gives its own DPOTrainer."""
    from trainer.data.bundled import PREFERENCES
    from trainer.data.prepare import prepare_data
    from trainer.models.loading import load_tokenizer
    from trainer.profiles import get_profile

    model = build_model(out, "small")
    values = {**engine_values(out, model, PREFERENCES, steps, "engine-dpo"), "method": {"name": "dpo"},
              "hyperparams.learning_rate": 5e-4}
    config = engine_config(out, values)
    tokenizer = load_tokenizer(model, config)
    profile = get_profile(config.profile.name, config.profile.options)
    prepared = prepare_data(config, tokenizer, profile, tokenizer.chat_template, {tokenizer.eos_token_id},
                            out / "dpo-probe", write_outputs=False, shape="preference")
    pairs = out / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in prepared.train))
    return [
        {"name": "trl-dpo-default", "kind": "trl-dpo", "model": str(model), "pairs": str(pairs), "steps": steps, "bf16": has_bf16_matmul()},
        {"name": "engine-dpo", "kind": "engine", "values": values, "steps": steps},
        # the lever on its own: the same engine with its pairs left padded (trainer.models.unpad)
        {"name": "engine-dpo-padded", "kind": "engine", "values": {**values, "data.padding_free": False}, "steps": steps},
    ]


def generation(out: Path, probes: int = 32, new_tokens: int = 64) -> tuple[float, float]:
    """Generated tokens per second: the engine's preview backend (the path previews, probes and
    held-out RL figures use) against a bare batched ``generate`` with a KV cache, same prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.config.schema import InferenceSection
    from trainer.data.example import Probe
    from trainer.monitoring.preview_backend import PreviewBackend
    from trainer.profiles import get_profile

    folder = build_model(out, "small")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    config = engine_config(out, {})
    profile = get_profile(config.profile.name, config.profile.options)
    rows = [json.loads(line) for line in (out / "messages.jsonl").read_text().splitlines()[:probes]]
    probe_list = [Probe(messages=r["messages"][:-1], golden=None, reference="", source="bench") for r in rows]
    settings = InferenceSection(max_new_tokens=new_tokens, num_probes=probes)
    backend = PreviewBackend(tokenizer, profile, probe_list, settings, tokenizer.chat_template,
                             profile.get_stop_sequences(), [tokenizer.eos_token, tokenizer.pad_token])
    prompts = [backend.prompt_text(p) for p in probe_list]

    def bare(chunk):
        tokenizer.padding_side = "left"
        batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out_ids = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return out_ids[:, batch["input_ids"].shape[1]:]

    def engine(chunk):
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in backend.generate(model, chunk)]

    def count(new):
        return sum(int((torch.as_tensor(row) != tokenizer.pad_token_id).sum()) if len(row) else 0 for row in new)

    best = {"engine": 0.0, "bare": 0.0}
    for _ in range(2):  # alternately, best of two
        for name, fn in (("bare", bare), ("engine", engine)):
            start, made = time.perf_counter(), 0
            for i in range(0, len(prompts), 16):  # the preview backend's batch size
                made += count(fn(prompts[i:i + 16]))
            best[name] = max(best[name], made / (time.perf_counter() - start))
    return best["engine"], best["bare"]


def cache_rerun(out: Path, values: dict) -> float:
    """Seconds to prepare the data of a rerun whose data did not change (a cache hit)."""
    from trainer.data.prepare import prepare_data
    from trainer.models.loading import load_tokenizer
    from trainer.profiles import get_profile

    config = engine_config(out, values)
    tokenizer = load_tokenizer(Path(config.model.path), config)
    profile = get_profile(config.profile.name, config.profile.options)
    eos = {tokenizer.eos_token_id}
    run_dir = out / "cache-probe"
    prepare_data(config, tokenizer, profile, tokenizer.chat_template, eos, run_dir, write_outputs=False)  # fills the cache
    start = time.perf_counter()
    data = prepare_data(config, tokenizer, profile, tokenizer.chat_template, eos, run_dir, write_outputs=False)
    seconds = time.perf_counter() - start
    assert data.report.cache_hit, "the rerun missed the cache"
    return seconds


def cli_times(out: Path) -> dict[str, float]:
    """Wall seconds of the CLI's quick commands, as a user runs them (best of three)."""
    cli = [sys.executable, str(ROOT / "trainer" / "cli_main.py")]
    times = {}
    for name, extra in (("--help", ["--help"]), ("--print-config", ["--print-config"]), ("--validate", ["--validate"])):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(cli + extra, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    return times


def compile_rows(out: Path, data: Path, steps: int, rounds: int) -> list[str]:
    """``system.torch_compile`` on the small SFT job: steady tokens/s (steps 11..N, compiled
    graphs warm) and each whole process's seconds, where the compile time shows. Inductor keeps
    its graphs in an on-disk cache: the first compiled round compiles cold, later ones warm."""
    # a cache of the bench's own, so that round 1 compiles cold and later rounds hit the cache
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(out / "inductor-cache")
    plain = next(s for s in sft_specs(out, "small", data, steps) if s["kind"] == "engine")
    compiled = {**plain, "name": "engine-compiled", "values": {**plain["values"], "system.torch_compile": True}}
    seen: dict[str, list[tuple[float, float]]] = {}
    for r in range(rounds):
        for spec in (plain, compiled):
            start = time.perf_counter()
            rate = run_contestant(spec, out)
            seconds = time.perf_counter() - start
            print(f"  round {r + 1} {spec['name']:16} {rate:8.0f} real tokens/s, process {seconds:6.1f} s", flush=True)
            seen.setdefault(spec["name"], []).append((rate, seconds))
    return [
        f"| SFT small, {name}, round {i + 1} | {rate:,.0f} (process {seconds:.1f} s) | "
        f"{rate / seen[plain['name']][i][0]:.2f}x, {seconds - seen[plain['name']][i][1]:+.1f} s |"
        for name, runs in seen.items() for i, (rate, seconds) in enumerate(runs)
    ]


# The CPU levers that are settings, each switched off alone against the default config
# (``--only levers``): the precision auto picks, the heap that keeps freed memory
LEVERS = {"float32": {"model.precision": "float32"}, "bfloat16-mixed": {"model.precision": "bfloat16-mixed"},
          "heap-default": {"system.keep_freed_memory": False}}


def lever_rows(out: Path, data: Path, steps: int, rounds: int) -> list[str]:
    """The engine's SFT job at both sizes with each of ``LEVERS`` against its default config,
    alternately, best round of each."""
    lines = []
    for size in ("small", "tiny"):
        print(f"levers, {size} model:", flush=True)
        plain = next(s for s in sft_specs(out, size, data, steps) if s["kind"] == "engine")
        picked = resolve_precision("auto", "cpu", SIZES[size]["hidden_size"])
        levers = [name for name in LEVERS if name != picked]  # the default's own precision is the baseline
        specs = [plain] + [{**plain, "name": f"engine-{size}-{name}", "values": {**plain["values"], **LEVERS[name]}}
                           for name in levers]
        best = alternate(specs, rounds, out)
        base = best[plain["name"]]
        lines.append(f"| SFT {size}: engine, default config ({picked}, heap kept) | {base:,.0f} | 1.00x |")
        lines += [f"| SFT {size}: engine, {name} | {best[f'engine-{size}-{name}']:,.0f} | {best[f'engine-{size}-{name}'] / base:.2f}x |"
                  for name in levers]
    return lines


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="sft,size,dpo,generate,cache,cli")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="speed-"))
    out.mkdir(parents=True, exist_ok=True)
    parts = args.only.split(",")
    data = data_file(out, args.rows)
    print(f"data: {data} ({'GSM8K' if GSM8K.exists() else 'bundled arithmetic'}, {args.rows} rows); work in {out}", flush=True)
    lines = ["| contestant | real tokens/s | ratio |", "| --- | --- | --- |"]
    for size in [s for s, part in (("small", "sft"), ("tiny", "size")) if part in parts]:
        print(f"SFT, {size} model:", flush=True)
        best = alternate(sft_specs(out, size, data, args.steps), args.rounds, out)
        lines += table(best, size)
    if "dpo" in parts:
        print("DPO, small model:", flush=True)
        best = alternate(dpo_specs(out, args.steps), args.rounds, out)
        lines.append(f"| DPO small: TRL DPOTrainer defaults | {best['trl-dpo-default']:,.0f} | 1.00x |")
        base = best["trl-dpo-default"]
        lines.append(f"| DPO small: engine (default config) | {best['engine-dpo']:,.0f} | {best['engine-dpo'] / base:.2f}x |")
        lines.append(f"| DPO small: engine, pairs padded (data.padding_free false) | {best['engine-dpo-padded']:,.0f} | {best['engine-dpo-padded'] / base:.2f}x |")
    if "generate" in parts:
        if not (out / "messages.jsonl").exists():
            conversations(out, engine_values(out, build_model(out, "small"), data, args.steps, "prompts"))
        engine, bare = generation(out)
        lines.append(f"| generation: bare batched generate (KV cache) | {bare:,.0f} new tokens/s | 1.00x |")
        lines.append(f"| generation: engine's preview backend | {engine:,.0f} new tokens/s | {engine / bare:.2f}x |")
    if "levers" in parts:  # not in the default set
        lines += lever_rows(out, data, args.steps, args.rounds)
    if "compile" in parts:  # not in the default set: a cold compile alone takes minutes here
        print("torch.compile, small model:", flush=True)
        lines += compile_rows(out, data, args.steps, args.rounds)
    if "cache" in parts:
        seconds = cache_rerun(out, engine_values(out, build_model(out, "small"), data, args.steps, "cache"))
        lines.append(f"| rerun, unchanged data: preparation from the cache | {seconds:.2f} s | goal < 1 s |")
    if "cli" in parts:
        for name, seconds in cli_times(out).items():
            lines.append(f"| `cli_main.py {name}` | {seconds:.2f} s | goal < 0.5 s |")
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
