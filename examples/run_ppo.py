"""PPO after SFT (seed 000's run_ppo where it names one): SFT teaches regime3's format, then PPO maximises
the profile's reward (format 0.3 + right answer 0.7; any reward spec of trainer.rewards works) on prompts from the
same rows.

    python examples/run_ppo.py [--max-steps 300] [--output-dir outputs/examples] [--set KEY=VALUE ...]

--max-steps is the SFT stage's; the PPO stage runs 1/20 of it. A few minutes on 2 CPU cores.
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
        run_name="ppo",
        overrides={
            "hyperparams.learning_rate": 3e-3,
            "hyperparams.batch_size": 16,
            "hyperparams.warmup_steps": min(20, args.max_steps // 10),
            "stages": [
                # an untrained model gives PPO nothing to refine: SFT teaches the format first
                {"method": {"name": "sft"}, "max_steps": args.max_steps},
                {"method": {"name": "ppo"}, "max_steps": max(1, args.max_steps // 20),
                 "learning_rate": 0.0001, "warmup_steps": 0},
            ],
            "system.status_file": str(Path(args.output_dir) / "ppo_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"ppo: held-out reward {m.get('heldout_reward_at_start')} at the RL stage's start -> {m.get('heldout_reward')}; "
          f"{m['probes_correct']}/{m['probes']} right; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
