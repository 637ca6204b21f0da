"""Methods behind one registry: config, errors, custom methods, and DPO end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing

import pytest

from jobkit import CLI, REPO, SCHEMA, job_values, load_weights, write_config
from trainer.config import ConfigError, create_default_config
from trainer.methods import METHODS, get_method

PAIRS = REPO / "data" / "preferences_train.jsonl"
_names = [repr(n) for n in sorted(METHODS)]
KNOWN = ", ".join(_names[:-1]) + f" or {_names[-1]}"  # as the error message lists them


def problems(**overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_default_config(overrides=overrides)
    return info.value.problems


def test_default_method_is_sft_and_every_config_keeps_working():
    config = create_default_config()
    assert config.method.name == "sft" and get_method(config.method).data_shape == "conversations"
    assert config.model_dump()["method"] == {"name": "sft"}


def test_unknown_method_lists_the_known_ones():
    assert problems(**{"method.name": "dpoo"}) == [
        f"method.name: expected one of {KNOWN}; got 'dpoo' (str); did you mean 'dpo'? (from create_default_config)"
    ]


def test_method_options_are_typed_and_checked_with_their_paths():
    config = create_default_config(overrides={"method": {"name": "dpo", "beta": 0.2, "loss_type": "ipo"}})
    assert (config.method.beta, config.method.loss_type) == (0.2, "ipo")
    found = problems(method={"name": "dpo", "beta": -1, "loss_type": "ipoo", "betta": 1})
    assert "method.beta: expected greater than 0; got -1 (int) (from create_default_config)" in found
    assert any(p.startswith("method.loss_type: expected one of 'sigmoid'") and "did you mean 'ipo'?" in p for p in found)
    assert "method.betta: unknown key; did you mean method.beta? (from create_default_config)" in found
    # options of another method are unknown keys of this one
    assert problems(method={"name": "sft", "beta": 0.1})[0].startswith("method.beta: unknown key")


def test_a_custom_method_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_method.py").write_text(
        "from typing import Literal\n"
        "from trainer.config.schema import MethodOptions\n"
        "from trainer.methods.sft import SFT\n\n"
        "class Options(MethodOptions):\n    name: str = 'my_method:Mine'\n    strength: int = 1\n\n"
        "class Mine(SFT):\n    name = 'mine'\n    Options = Options\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = create_default_config(overrides={"method": {"name": "my_method:Mine", "strength": 3}})
    assert config.method.strength == 3 and type(get_method(config.method)).__name__ == "Mine"
    assert problems(**{"method.name": "my_method:Nope"})[0].startswith("method.name: cannot import method 'my_method:Nope'")


def test_dpo_losses_are_trls():
    from trl import DPOConfig

    from trainer.methods.dpo import DPOLoss

    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    trl_losses = set(re.findall(r"`'(\w+)'`", help_text.split("If multiple")[0]))
    assert set(typing.get_args(DPOLoss)) == trl_losses


def test_method_flag_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(CLI), "--method", "dpo", "--print-config"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["config"]["method"]["name"] == "dpo" and printed["sources"]["method.name"] == "--method"
    assert printed["config"]["method"]["beta"] == 0.1


def test_preference_rows_for_sft_and_sft_rows_for_dpo_are_rejected_with_reasons(tmp_path, tiny_tokenizer):
    from trainer.data.prepare import DataError, prepare_data
    from trainer.models.templates import CHATML_TEMPLATE
    from trainer.profiles import get_profile

    config = create_default_config(dataset_path=[str(REPO / "data" / "arithmetic_train.jsonl")], overrides={"data.cache_dir": str(tmp_path / "c")})
    eos = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")}
    with pytest.raises(DataError, match=r"no row left to train on: 4000 of 4000 rows were rejected \(4000 x convert: cannot read the row as preference data"):
        prepare_data(config, tiny_tokenizer, get_profile("regime3"), CHATML_TEMPLATE, eos, tmp_path / "run", shape="preference")


@pytest.mark.slow
def test_dpo_end_to_end_on_the_tiny_model(tmp_path, builtin_cache, tiny_model_dir):
    import jsonschema
    import torch

    lines = PAIRS.read_text().splitlines()[:120]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    values = job_values(
        tmp_path,
        builtin_cache,
        **{"data.dataset_path": [str(tmp_path / "pairs.jsonl")], "hyperparams.batch_size": 4, "hyperparams.max_steps": 8, "inference.preview_every_steps": 0},
    )
    proc = subprocess.run(
        [sys.executable, str(CLI), "--config", str(write_config(tmp_path, values)), "--method", "dpo", "--set", "method.beta=0.2", "--set", "inference.evaluate_at_start=true"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "formats: prompt_chosen_rejected 120" in proc.stdout
    run = tmp_path / "outputs" / "run"
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, json.loads(SCHEMA.read_text()))
    assert (status["phase"], status["method"]) == ("completed", "dpo")
    for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert isinstance(status["method_metrics"][key], float), key
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("rewards/margins" in r for r in records)
    result = json.loads((run / "result.json").read_text())
    assert result["final_metrics"]["method"] == "dpo" and 0 <= result["final_metrics"]["rewards/accuracies"] <= 1
    # the starting model answered the same probes first (inference.evaluate_at_start)
    assert result["final_metrics"]["probes_format_ok_at_start"] == 0  # the untrained tiny model
    previews = [json.loads(l) for l in (run / "previews.jsonl").read_text().splitlines()]
    assert [p["step"] for p in previews] == [0] * 4 + [8] * 4
    assert json.loads((run / "data_report.json").read_text())["formats"] == {"prompt_chosen_rejected": 120}
    before, after = load_weights(tiny_model_dir), load_weights(run / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)
