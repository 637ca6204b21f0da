#!/usr/bin/env python
"""Does RL make the embedded model better? SFT alone against SFT followed by GRPO, by PPO, and
the hybrid, at an equal wall-clock budget, on held-out problems.

- Data: ``data/generate_arithmetic.py --difficulty easy`` (one-step problems: a start of 2..9,
  then one addition or subtraction of 1..9), 4000 rows, the first ``--probes`` held out (the
  engine's own held-out split, the same in every arm: same data, same seed).
- Model: the embedded ``builtin:tiny-qwen3``, profile regime3. SFT alone gets some of these right
  (about a quarter in 300 steps), so a reward for the right answer has something to work with.
- Arms (``--arms``): ``sft`` trains SFT for the whole budget; ``sft+grpo`` / ``sft+ppo`` train
  SFT for ``--sft-share`` of it, then the RL method for the rest, with the profile's reward
  (format 0.3 + answer 0.7); ``hybrid`` alternates SFT and PPO (``hybrid`` config) over it.
- Budget: each arm's steps come from each method's seconds per step, measured first by a short
  calibration run of each method on this machine, so every arm trains for about ``--budget-s``
  seconds; the table shows the training time each arm really took.

Every arm answers the same held-out problems greedily at the end; the table prints the format
and answer rates. Run it on a quiet machine: other load skews the calibration.

Usage: python bench/rl_vs_sft.py [--budget-s 240] [--sft-share 0.6] [--probes 100]
       [--arms sft,sft+grpo,sft+ppo,hybrid] [--rl-lr 5e-5] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALIBRATION_STEPS = 6
RL_OPTIONS = {"num_generations": 4, "max_completion_length": 64}


def easy_data(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("generate_arithmetic", ROOT / "data" / "generate_arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    path = out / "easy.jsonl"
    module.write_jsonl(module.generate(4000, seed=4321, difficulty="easy"), path)
    return path


class Bench:
    def __init__(self, out: Path, data: Path, probes: int, rl_lr: float):
        from trainer.config import ConfigLoader

        self.out, self.data, self.probes, self.rl_lr = out, data, probes, rl_lr
        self.loader = ConfigLoader(ROOT / "config.json")

    def run(self, name: str, **values):
        from trainer.core import TrainerEngine

        config = self.loader.apply(
            {
                "output.output_dir": str(self.out),
                "output.run_name": name,
                "system.status_file": str(self.out / f"{name}.status.json"),
                "data.cache_dir": str(self.out / "cache"),
                "data.dataset_path": [str(self.data)],
                "data.holdout_size": self.probes,
                "inference.num_probes": self.probes,
                "inference.preview_every_steps": 0,
                "hyperparams.logging_steps": 1,
                "output.save_steps": 10_000,
                **values,
            },
            source="rl_vs_sft",
        )
        return TrainerEngine().run_job(config)

    def seconds_per_step(self, method: str) -> float:
        """From the timestamps of a short run's logged steps (the first step's set-up excluded)."""
        values = {"hyperparams.max_steps": CALIBRATION_STEPS, "hyperparams.warmup_steps": 0}
        if method != "sft":
            values["method"] = {"name": method, **RL_OPTIONS}
        result = self.run(f"calibrate-{method}", **values)
        stamps = [json.loads(line)["time"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        first, last = (datetime.fromisoformat(stamps[i]) for i in (0, -1))
        return (last - first).total_seconds() / (len(stamps) - 1)

    def rl_stage(self, method: str, steps: int) -> dict:
        return {"method": {"name": method, **RL_OPTIONS}, "max_steps": steps, "learning_rate": self.rl_lr, "warmup_steps": 2}


def figures(result) -> tuple[int, int, int, float]:
    """(format ok, answers right, probes, training seconds) of a job (the last stage's probes)."""
    m = result.final_metrics
    runtime = sum(s["final_metrics"]["train_runtime_s"] for s in m["stages"]) if "stages" in m else m["train_runtime_s"]
    return m["probes_format_ok"], m["probes_correct"], m["probes"], runtime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=240.0, help="training seconds per arm")
    parser.add_argument("--sft-share", type=float, default=0.6, help="share of an RL arm's budget spent on SFT first")
    parser.add_argument("--probes", type=int, default=100, help="held-out problems every arm answers")
    parser.add_argument("--arms", default="sft,sft+grpo,sft+ppo,hybrid")
    parser.add_argument("--rl-lr", type=float, default=5e-5, help="peak learning rate of the RL stages")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    arms = args.arms.split(",")
    out = args.out or Path(tempfile.mkdtemp(prefix="rl-vs-sft-"))
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(out, easy_data(out), args.probes, args.rl_lr)

    methods = {"sft"} | {arm.split("+")[1] for arm in arms if "+" in arm} | ({"ppo"} if "hybrid" in arms else set())
    pace = {method: bench.seconds_per_step(method) for method in sorted(methods)}
    print("seconds per step: " + ", ".join(f"{m} {s:.3f}" for m, s in pace.items()), flush=True)

    sft_budget = args.budget_s * args.sft_share
    rows = []
    for arm in arms:
        if arm == "sft":
            steps = max(1, round(args.budget_s / pace["sft"]))
            result, plan = bench.run("sft", **{"hyperparams.max_steps": steps}), f"sft {steps}"
        elif arm == "hybrid":
            # three cycles; RL's share rises 0.25 -> 0.75, so over the cycles half the steps are ppo
            mean_pace = (pace["sft"] + pace["ppo"]) / 2
            per_cycle = max(4, round(args.budget_s / mean_pace / 3))
            hybrid = {"cycles": 3, "steps_per_cycle": per_cycle, "rl_method": {"name": "ppo", **RL_OPTIONS}, "rl_learning_rate": args.rl_lr}
            result, plan = bench.run("hybrid", **{"hyperparams.max_steps": None, "hybrid": hybrid}), f"hybrid 3 x {per_cycle}"
        else:
            method = arm.split("+")[1]
            sft_steps = max(1, round(sft_budget / pace["sft"]))
            rl_steps = max(1, round((args.budget_s - sft_budget) / pace[method]))
            stages = [{"method": {"name": "sft"}, "max_steps": sft_steps}, bench.rl_stage(method, rl_steps)]
            result, plan = bench.run(arm.replace("+", "-"), **{"hyperparams.max_steps": None, "stages": stages}), f"sft {sft_steps} + {method} {rl_steps}"
        rows.append((arm, plan, *figures(result)))
        print(f"{arm}: done ({plan})", flush=True)

    print(f"\nRL against SFT alone, about {args.budget_s:.0f} s of training each, {args.probes} held-out easy problems (jobs in {out})")
    print(f"{'arm':10} {'steps':24} {'train s':>8} {'format':>8} {'right':>8}")
    for arm, plan, fmt, right, n, seconds in rows:
        print(f"{arm:10} {plan:24} {seconds:>8.0f} {fmt / n:>8.0%} {right / n:>8.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
