"""KTO after SFT: the embedded tiny Qwen3 learns regime3's format by SFT, then KTO on the bundled pairs, split into desirable and undesirable answers.

    python examples/run_kto.py [--max-steps 300] [--output-dir outputs/examples] [--set KEY=VALUE ...]

--max-steps is the SFT stage's; the KTO stage runs a third of it. A few minutes on 2 CPU cores.
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
        run_name="kto",
        overrides={
            "hyperparams.learning_rate": 3e-3,
            "hyperparams.batch_size": 16,
            "hyperparams.warmup_steps": min(20, args.max_steps // 10),
            "stages": [
                # an untrained model gives KTO nothing to refine: SFT teaches the format first
                {"method": {"name": "sft"}, "max_steps": args.max_steps},
                {"method": {"name": "kto"}, "dataset_path": [str(REPO / "data" / "preferences_train.jsonl")], "max_steps": max(1, args.max_steps // 3),
                 "learning_rate": 0.0005, "warmup_steps": 0},
            ],
            "system.status_file": str(Path(args.output_dir) / "kto_status.json"),
            **set_overrides(args.set),  # as the CLI reads --set
        },
    )
    result = TrainerEngine().run_job(config)
    m = result.final_metrics
    print(f"kto: {m['probes_format_ok']}/{m['probes']} probes in the format after both stages; "
          f"rewards/margins {m.get('rewards/margins')}; model in {result.model_path}")
    return m


if __name__ == "__main__":
    main()
