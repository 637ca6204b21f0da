"""Supervised fine-tuning: the embedded tiny Qwen3 learns regime3's answer format on the bundled
arithmetic (the main job, through the Python API).

    python examples/run_sft.py [--max-steps 300] [--output-dir outputs/examples] [--set KEY=VALUE ...]

About two minutes on 2 CPU cores. Point model.path at a local Hugging Face folder and
data.dataset_path at your own rows to train yours: --set model.path=/models/Qwen3-0.6B.
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
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "examples"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key")
    args = parser.parse_args(argv)

    config = create_default_config(
        model_path="builtin:tiny-qwen3",
        dataset_path=str(REPO / "data" / "arithmetic_train.jsonl"),
        output_dir=args.output_dir,
        profile="regime3",
        run_name="sft",
        overrides={
            "method.name": "sft",
            "hyperparams.max_steps": args.max_steps,
            "hyperparams.batch_size": 16,
            "hyperparams.learning_rate": 3e-3,
            "hyperparams.warmup_steps": min(20, args.max_steps // 10),
            "hyperparams.scheduler": "cosine",
            "system.status_file": str(Path(args.output_dir) / "sft_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"sft: loss {m['loss_start']:.3f} -> {m['loss_end']:.3f}; {m['probes_format_ok']}/{m['probes']} probes "
          f"in the format, {m['probes_correct']} right; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
