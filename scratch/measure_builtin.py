"""Measure build time, vocab, params and rendered example length for builtin:tiny-qwen3."""
import json, shutil, statistics, time
from pathlib import Path
import transformers  # imported first so the build timing excludes library import time
from trainer.models.builtin import ANNOTATION, DATA_PATH, resolve_model_path

root = Path("/tmp/bt_measure"); shutil.rmtree(root, ignore_errors=True)
t = time.perf_counter(); folder = resolve_model_path("builtin:tiny-qwen3", root)
print(f"build: {time.perf_counter() - t:.2f}s")
t = time.perf_counter(); resolve_model_path("builtin:tiny-qwen3", root)
print(f"cached resolve: {(time.perf_counter() - t) * 1000:.2f}ms")
tok = transformers.AutoTokenizer.from_pretrained(folder)
model = transformers.AutoModelForCausalLM.from_pretrained(folder)
print("tokenizer len:", len(tok), "model vocab:", model.config.vocab_size)
print("params:", sum(p.numel() for p in model.parameters()))
lengths = []
for line in DATA_PATH.open():
    row = json.loads(line)
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": ANNOTATION.sub("", row["answer"])}]
    lengths.append(len(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]))
print(f"tokens/example: mean {statistics.mean(lengths):.1f} median {statistics.median(lengths)} min {min(lengths)} max {max(lengths)}")
