#!/usr/bin/env python
"""Does distillation make the embedded student better? The tiny student trained by SFT alone
against the same student distilled from the embedded teacher, on the same data for the same
steps, and both against the teacher, on held-out problems.

- Data: ``data/generate_arithmetic.py --difficulty easy`` (bench/rl_vs_sft.py's: one-step
  problems), 4000 rows, the first ``--probes`` held out (the engine's split, the same in every arm).
- Arms: ``teacher``: ``builtin:small-qwen3`` (3.7 M parameters) by SFT for ``--steps``;
  ``sft``: ``builtin:tiny-qwen3`` (0.85 M) by SFT for ``--steps``; ``distill``: the tiny student
  by ``method distill`` from the teacher for ``--steps`` (the options given by ``--distill``).
- Figures per arm: the held-out loss (mean next-token loss, in nats, of the held-out rows'
  reference answers), and the format and answer rates of greedy answers to the held-out prompts,
  with the training seconds each arm took.

Usage: python bench/distill_vs_sft.py [--steps 300] [--probes 100] [--distill '{"nll_weight": 0.5}'] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rl_vs_sft import Bench, easy_data, figures  # noqa: E402  (the same data, runs and figures)


def heldout_loss(model_dir: Path, probes: list) -> float:
    """Mean next-token loss (nats per trained token) of the probes' reference answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.custom_collator import tokenize_with_mask

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for probe in probes:
            tokens = tokenize_with_mask(tokenizer, [*probe.messages, {"role": "assistant", "content": probe.reference}])
            ids, labels = torch.tensor([tokens.input_ids]), torch.tensor([tokens.labels])
            logits = model(input_ids=ids).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels[:, 1:] != -100).sum())
    return total / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--distill", default="{}", help="distill options as JSON, e.g. '{\"divergence\": \"jsd\"}'")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="distill-vs-sft-"))
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(out, easy_data(out), args.probes, rl_lr=0.0)
    steps = {"hyperparams.max_steps": args.steps}
    teacher = bench.run("teacher", **steps, **{"model.path": "builtin:small-qwen3"})
    arms = {
        "teacher (small-qwen3, sft)": teacher,
        "student (tiny-qwen3), sft": bench.run("sft", **steps),
        "student (tiny-qwen3), distill": bench.run(
            "distill", **steps, method={"name": "distill", "teacher": str(teacher.model_path), **json.loads(args.distill)}),
    }
    print(f"\n{args.steps} steps each on 4000 easy problems, {args.probes} held out; distill options {args.distill}\n")
    print("| arm | held-out loss | format | right | train s |")
    print("| --- | --- | --- | --- | --- |")
    for name, result in arms.items():
        ok, right, n, seconds = figures(result)
        loss = heldout_loss(result.model_path, result.probes)
        print(f"| {name} | {loss:.4f} | {100 * ok / n:.0f}% | {100 * right / n:.0f}% | {seconds:.0f} |")
    print(f"\nruns in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
