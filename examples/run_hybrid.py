"""Seed 000's hybrid: cycles of SFT then RL (PPO by default; GRPO here, the faster on CPU), the RL share
rising over the cycles (a fifth, then half), SFT first so that RL has a format to reward.

    python examples/run_hybrid.py [--max-steps 300] [--output-dir outputs/examples] [--set KEY=VALUE ...]

The hybrid is a short form of stages (trainer.config.schema.HybridSection): resolved_config.json
shows the stages it stands for.
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
        run_name="hybrid",
        overrides={
            "hyperparams.max_steps": args.max_steps,
            "hyperparams.learning_rate": 3e-3,
            "hyperparams.batch_size": 16,
            "hyperparams.warmup_steps": min(20, args.max_steps // 10),
            # 2 cycles of max_steps / 2: SFT 120 + GRPO 30, then SFT 75 + GRPO 75 (of 300); SFT-heavy
            # first, so the format is learnt before RL has anything to reward
            "hybrid": {
                "cycles": 2,
                "steps_per_cycle": max(2, args.max_steps // 2),
                "rl_share_start": 0.2,
                "rl_share_end": 0.5,
                "rl_method": {"name": "grpo", "num_generations": 4},
            },
            "system.status_file": str(Path(args.output_dir) / "hybrid_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"hybrid: {m['probes_format_ok']}/{m['probes']} probes in the format, {m['probes_correct']} right "
          f"after the last stage; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
