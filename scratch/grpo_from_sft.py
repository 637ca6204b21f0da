"""Does GRPO raise held-out accuracy at all, from an SFT model that gets some answers right?

The setting of bench/rl_vs_sft.py (tiny-qwen3, 4000 problems, easy unless --difficulty, 100 held out), but
no equal budget: SFT for ``--sft-steps``, then GRPO from that model in each variant given as
``temperature:lr:steps:num_generations:batch_size[:JSON]`` (JSON: more GRPO options, e.g.
``{"beta": 0.04}``), each answering the held-out problems greedily at the end (the engine
prints "N/100 -> M/100 answers right").

Usage: python scratch/grpo_from_sft.py OUT [--sft-steps 245] [--sft-model DIR] [--difficulty easy] VARIANT ...
e.g.   python scratch/grpo_from_sft.py /tmp/g 1.0:1e-4:80:8:16 0.7:2e-4:40:8:64
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import rl_vs_sft as bench_module  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("variants", nargs="+")
parser.add_argument("--sft-steps", type=int, default=245)
parser.add_argument("--sft-model", default=None, help="start from this model folder instead of training SFT")
parser.add_argument("--difficulty", default="easy", help="data/generate_arithmetic.py's difficulty (4000 rows, seed 4321)")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
data = bench_module.easy_data(args.out)
if args.difficulty != "easy":
    generator = sys.modules["generate_arithmetic"]  # loaded by easy_data
    data = args.out / f"{args.difficulty}.jsonl"
    generator.write_jsonl(generator.generate(4000, seed=4321, difficulty=args.difficulty), data)
bench = bench_module.Bench(args.out, data, 100, 1e-4)
model = args.sft_model
if model is None:
    result = bench.run(f"sft{args.sft_steps}", **{"hyperparams.max_steps": args.sft_steps})
    print(f"sft {args.sft_steps} steps: (format, right, probes, train s) = {bench_module.figures(result)}", flush=True)
    model = str(result.model_path)
for number, variant in enumerate(args.variants, 1):
    temperature, lr, steps, generations, batch, *extra = variant.split(":", 5)
    result = bench.run(
        f"grpo-{number}",
        **{
            "model.path": model,
            "hyperparams.max_steps": int(steps),
            "hyperparams.batch_size": int(batch),
            "hyperparams.learning_rate": float(lr),
            "hyperparams.warmup_steps": 2,
            "method": {
                "name": "grpo", "num_generations": int(generations), "max_completion_length": 64,
                "temperature": float(temperature), **(json.loads(extra[0]) if extra else {}),
            },
        },
    )
    print(f"grpo {variant}: (format, right, probes, train s) = {bench_module.figures(result)}", flush=True)
