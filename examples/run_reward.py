"""A reward model: the embedded tiny Qwen3 with a scalar head learns to score the chosen answer of
each bundled pair above the rejected one; its folder then serves the `reward_model` reward and judge.

    python examples/run_reward.py [--max-steps 150] [--output-dir outputs/examples] [--set KEY=VALUE ...]
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
        dataset_path=str(REPO / "data" / "preferences_train.jsonl"),
        output_dir=args.output_dir,
        profile="regime3",
        run_name="reward",
        overrides={
            "method.name": "reward",
            "hyperparams.max_steps": args.max_steps,
            "hyperparams.learning_rate": 1e-3,
            "system.status_file": str(Path(args.output_dir) / "reward_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"reward: held-out pair accuracy {m.get('heldout_accuracy')}; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
