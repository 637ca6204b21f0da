"""Every script in examples/ runs, through the public Python API, with a tiny step count, so none
can rot: each trains on the embedded default, saves its model, and reports its method's figures."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("run_*.py"))

# what each example's summary must carry (its method's own figures), beside a saved model
FIGURES = {
    "run_sft": ("loss_start", "loss_end", "probes_format_ok"),
    "run_dpo": ("rewards/margins", "rewards/accuracies"),
    "run_kto": ("kl", "rewards/margins"),
    "run_simpo": ("rewards/margins",),
    "run_orpo": ("log_odds_ratio", "rewards/accuracies"),
    "run_reward": ("heldout_accuracy",),
    "run_classify": ("heldout_accuracy",),
    "run_grpo": ("reward", "heldout_reward", "heldout_reward_at_start"),
    "run_rloo": ("reward", "heldout_reward"),
    "run_ppo": ("reward", "kl", "heldout_reward"),
    "run_hybrid": ("probes_format_ok",),
    "run_distill": ("distill/divergence", "distill/nll"),
}


def test_every_method_and_seed_demo_has_an_example():
    from trainer.methods import METHODS

    names = {path.stem for path in EXAMPLES}
    assert {f"run_{method}" for method in METHODS} | {"run_hybrid"} <= names
    assert set(FIGURES) == names


@pytest.fixture(scope="module")
def shared(tmp_path_factory, builtin_cache):
    # one data cache for all: the examples prepare the same bundled files
    return tmp_path_factory.mktemp("examples-cache"), builtin_cache


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(script, tmp_path, shared, capsys):
    cache, builtin_cache = shared
    main = runpy.run_path(str(script), run_name="example")["main"]
    out_dir = tmp_path / "out"
    figures = main([
        "--max-steps", "2", "--output-dir", str(out_dir),
        "--set", f"model.builtin_cache={builtin_cache}", "--set", f"data.cache_dir={cache}",
        "--set", "inference.num_probes=2", "--set", "inference.max_new_tokens=12",
        "--set", "inference.preview_every_steps=0", "--set", "hyperparams.batch_size=8", "--set", "data.max_rows=200",
    ])
    printed = capsys.readouterr().out
    name = script.stem
    assert printed.splitlines()[-1].startswith(name.removeprefix("run_") + ": "), printed[-2000:]
    for key in FIGURES[name]:
        assert isinstance(figures.get(key), (int, float)), (key, sorted(figures))
    models = [p.parent for p in out_dir.rglob("model/config.json")]  # a curriculum saves one per stage
    assert models and all((m / "tokenizer_config.json").is_file() for m in models)
