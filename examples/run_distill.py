"""Distillation: a teacher (the embedded 3.7 M small-qwen3) learns the task by SFT in stage 1; stage 2
distils its next-token distributions into the tiny Qwen3 (forward KL plus the next-token loss).

    python examples/run_distill.py [--max-steps 150] [--output-dir outputs/examples] [--set KEY=VALUE ...]

The teacher stage is cached (stages[0].cache): a second run with the same settings copies it.
A teacher of your own: a local folder with the student's tokenizer as method.teacher, and no stages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a clone without installing

from trainer.config import create_default_config  # noqa: E402
from trainer.config.loader import set_overrides  # noqa: E402
from trainer.core import TrainerEngine  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "examples"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key")
    args = parser.parse_args(argv)

    config = create_default_config(
        model_path="builtin:tiny-qwen3",
        dataset_path=str(REPO / "data" / "arithmetic_train.jsonl"),
        output_dir=args.output_dir,
        profile="regime3",
        run_name="distill",
        overrides={
            "hyperparams.learning_rate": 3e-3,
            "hyperparams.batch_size": 16,
            "hyperparams.warmup_steps": min(20, args.max_steps // 10),
            "stages": [
                {"method": {"name": "sft"}, "max_steps": args.max_steps, "model_path": "builtin:small-qwen3", "cache": True},
                {"method": {"name": "distill", "teacher": "stage:1", "divergence": "forward_kl"}, "max_steps": args.max_steps,
                 "model_path": "builtin:tiny-qwen3"},
            ],
            "system.status_file": str(Path(args.output_dir) / "distill_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"distill: divergence {m.get('distill/divergence')}, next-token loss {m.get('distill/nll')}; "
          f"{m['probes_format_ok']}/{m['probes']} probes in the format; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
