#!/usr/bin/env python
"""Measure what DPO does on the embedded model: SFT, then DPO, in one two-stage job; then, on
preference pairs neither stage saw and on the held-out probes, before DPO (the SFT model) and
after it:

- pair accuracy: the share of pairs whose chosen answer has a higher log-probability (summed
  over the answer's tokens, given the prompt) than the rejected one, and the mean margin;
- format and answer rates of the probes' greedy answers.

Usage: python scripts/measure_dpo.py [--sft-steps 300] [--dpo-steps 100] [--pairs 200] [--out DIR]
Prints one table; writes the job under --out (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def unseen_pairs(count: int, out: Path) -> Path:
    """Pairs from their own seed: none of their prompts is in the training pairs."""
    spec = importlib.util.spec_from_file_location("generate_preferences", ROOT / "data" / "generate_preferences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.generate(count, seed=98765)
    path = out / "unseen_pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_figures(model_dir: Path, pairs_file: Path, config) -> tuple[float, float]:
    """(pair accuracy, mean margin in nats) of the model in ``model_dir`` on the pairs."""
    import torch

    from trainer.data.readers import iter_rows
    from trainer.data.shapes import convert_shaped, render_pair
    from trainer.models.loading import load_model, load_tokenizer
    from trainer.profiles import get_profile

    tokenizer = load_tokenizer(model_dir, config)
    model = load_model(model_dir, config, "cpu", "float32").eval()
    profile = get_profile(config.profile.name)

    def answer_logp(prompt: list[dict], answer: str) -> float:
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
        head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        targets = ids[0, 1:]
        picked = logps.gather(1, targets[:, None])[:, 0]
        return float(picked[len(head_ids) - 1 :].sum())

    wins, margins = 0, []
    for row in iter_rows([pairs_file]):
        pair = render_pair(convert_shaped(row.data, "preference"), profile, config.profile.system_prompt)
        margin = answer_logp(pair.prompt, pair.chosen) - answer_logp(pair.prompt, pair.rejected)
        wins += margin > 0
        margins.append(margin)
    return wins / len(margins), sum(margins) / len(margins)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--dpo-steps", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=200, help="unseen pairs to measure on")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="measure-dpo-"))
    out.mkdir(parents=True, exist_ok=True)

    from trainer.config import ConfigLoader
    from trainer.core import TrainerEngine

    loader = ConfigLoader(ROOT / "config.json")
    config = loader.apply(
        {
            "output.output_dir": str(out),
            "output.run_name": "sft-then-dpo",
            "system.status_file": str(out / "status.json"),
            "data.cache_dir": str(out / "cache"),
            "inference.preview_every_steps": 0,
            "inference.evaluate_at_start": True,
            "hyperparams.max_steps": None,
            "stages": [
                {"method": {"name": "sft"}, "max_steps": args.sft_steps},
                {
                    "method": {"name": "dpo", "beta": 0.1},
                    "max_steps": args.dpo_steps,
                    "dataset_path": [str(ROOT / "data" / "preferences_train.jsonl")],
                    "learning_rate": 5e-4,
                },
            ],
        },
        source="measure_dpo",
    )
    result = TrainerEngine().run_job(config)
    stages = result.final_metrics["stages"]
    sft_model, dpo_model = Path(stages[0]["model_path"]), Path(stages[1]["model_path"])
    pairs = unseen_pairs(args.pairs, out)
    before, after = pair_figures(sft_model, pairs, config), pair_figures(dpo_model, pairs, config)
    dpo = stages[1]["final_metrics"]
    n = dpo["probes"]
    print(f"\nDPO on the embedded model: SFT {args.sft_steps} steps, then DPO {args.dpo_steps} steps (job in {out})")
    print(f"{'':34} {'before DPO':>12} {'after DPO':>12}")
    print(f"{'unseen pairs: chosen preferred':34} {before[0]:>12.1%} {after[0]:>12.1%}   ({args.pairs} pairs)")
    print(f"{'unseen pairs: mean margin (nats)':34} {before[1]:>12.2f} {after[1]:>12.2f}")
    print(f"{'held-out probes: format ok':34} {dpo['probes_format_ok_at_start']:>9}/{n:<2} {dpo['probes_format_ok']:>9}/{n:<2}")
    print(f"{'held-out probes: answer right':34} {dpo['probes_correct_at_start']:>9}/{n:<2} {dpo['probes_correct']:>9}/{n:<2}")
    print(f"{'DPO train rewards/accuracies':34} {'':>12} {dpo.get('rewards/accuracies', float('nan')):>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
