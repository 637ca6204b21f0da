"""TrainerConfig, ConfigLoader and their errors: precedence, provenance, raise / pass pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.config import ConfigError, ConfigLoader, TrainerConfig, create_default_config
from trainer.core.preflight import check_config, check_paths

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def problems_of(fn) -> list[str]:
    with pytest.raises(ConfigError) as info:
        fn()
    return info.value.problems


# --- precedence and provenance -------------------------------------------------------------


def test_defaults_file_cli_precedence_and_sources(tmp_path):
    cfg = write(
        tmp_path / "c.json",
        {"hyperparams": {"learning_rate": 0.001, "batch_size": 4}, "profile": {"name": "emoji_think"}},
    )
    loader = ConfigLoader(cfg)
    config = loader.merge_with_cli_args({"lr": "0.01", "set": ["hyperparams.seed=7"]})
    assert config.hyperparams.learning_rate == 0.01  # CLI beats file
    assert config.hyperparams.batch_size == 4  # file beats default
    assert config.hyperparams.seed == 7
    assert config.hyperparams.weight_decay == 0.0  # default
    assert loader.sources["hyperparams.learning_rate"] == "--lr"
    assert loader.sources["hyperparams.batch_size"] == str(cfg)
    assert loader.sources["hyperparams.seed"] == "--set"
    assert loader.sources["hyperparams.weight_decay"] == "default"
    assert loader.sources["profile.name"] == str(cfg)
    assert loader.sources["system.base_dir"] == f"folder of {cfg}"
    assert config.system.base_dir == str(tmp_path.resolve())


def test_load_without_cli_and_without_file():
    loader = ConfigLoader(None)
    config = loader.load()
    assert config == TrainerConfig()
    assert set(loader.sources.values()) == {"default"}


def test_provenance_lists_every_leaf(tmp_path):
    loader = ConfigLoader(write(tmp_path / "c.json", {"output": {"run_name": "x"}}))
    config = loader.load()
    prov = loader.provenance(config)
    assert prov["config"]["output"]["run_name"] == "x"
    assert prov["sources"]["output.run_name"] == str(tmp_path / "c.json")
    assert prov["sources"]["hyperparams.learning_rate"] == "default"
    assert "profile.options" in prov["sources"]


def test_max_steps_flag_replaces_epochs_from_file(tmp_path):
    loader = ConfigLoader(write(tmp_path / "c.json", {"hyperparams": {"num_epochs": 3}}))
    config = loader.merge_with_cli_args({"max_steps": "20"})
    assert config.hyperparams.max_steps == 20
    assert config.hyperparams.num_epochs is None
    assert loader.sources["hyperparams.num_epochs"] == "--max-steps"


def test_set_parses_json_values_and_keeps_plain_strings():
    loader = ConfigLoader(None)
    config = loader.merge_with_cli_args(
        {"set": ['profile.stop_sequences=["END"]', "output.resume=null", "model.path=/m/qwen"]}
    )
    assert config.profile.stop_sequences == ["END"]
    assert config.output.resume is None
    assert config.model.path == "/m/qwen"


def test_dataset_flag_takes_several_paths():
    config = ConfigLoader(None).merge_with_cli_args({"dataset": ["a.jsonl", "b.json"]})
    assert config.data.dataset_path == ["a.jsonl", "b.json"]


def test_create_default_config_like_the_seed_example(tmp_path):
    config = create_default_config(
        model_path="/models/qwen3",
        dataset_path="train.jsonl",
        output_dir=str(tmp_path),
        profile="emoji_think",
        overrides={"hyperparams.learning_rate": 1e-4},
    )
    assert config.model.path == "/models/qwen3"
    assert config.data.dataset_path == ["train.jsonl"]
    assert config.output.output_dir == str(tmp_path)
    assert config.profile.name == "emoji_think"
    assert config.hyperparams.learning_rate == 1e-4


def test_create_default_config_rejects_bad_override():
    assert problems_of(lambda: create_default_config(overrides={"hyperparams.lr": 1})) == [
        "hyperparams.lr: unknown key; did you mean hyperparams.learning_rate? "
        "(from create_default_config)"
    ]


def test_precision_accepts_torch_dtype_names():
    assert create_default_config(overrides={"model.precision": "torch.bfloat16"}).model.precision == "bfloat16"

    class FakeDtype:  # str() like torch.float16, without importing torch in a unit test
        def __str__(self):
            return "torch.float16"

    config = TrainerConfig.model_validate({"model": {"precision": FakeDtype()}})
    assert config.model.precision == "float16"


# --- unknown keys, types, choices: exact messages ------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"hyperparams": {"learnig_rate": 1}},
            "hyperparams.learnig_rate: unknown key; did you mean hyperparams.learning_rate?",
        ),
        ({"hyperparms": {}}, "hyperparms: unknown key; did you mean hyperparams?"),
        (
            {"data": {"columns": {"questoin": "q"}}},
            "data.columns.questoin: unknown key; did you mean data.columns.question?",
        ),
        ({"learning_rate": 1}, "learning_rate: unknown key; did you mean hyperparams.learning_rate?"),
        ({"zzz": 1}, "zzz: unknown key"),
    ],
)
def test_unknown_keys_at_every_depth(tmp_path, data, message):
    path = write(tmp_path / "c.json", data)
    assert problems_of(ConfigLoader(path).load) == [f"{message} (from {path})"]


def test_all_problems_reported_together(tmp_path):
    path = write(
        tmp_path / "c.json",
        {
            "hyperparams": {"batch_size": "many", "scheduler": "cosin", "learnig_rate": 1},
            "model": {"precision": "bf16"},
        },
    )
    problems = problems_of(ConfigLoader(path).load)
    src = f" (from {path})"
    assert problems == [
        "hyperparams.batch_size: expected a valid integer, unable to parse string as an integer; "
        f"got 'many' (str){src}",
        "hyperparams.scheduler.name: expected one of 'constant', 'constant_with_warmup', 'cosine', "
        "'cosine_with_min_lr', 'cosine_with_restarts', 'cosineannealing', 'cosineannealing_warm_restarts', "
        "'cyclic', 'exponential', 'inverse_sqrt', 'linear', 'multistep', 'onecycle', 'polynomial', "
        f"'reduce_on_plateau', 'step' or 'warmup_stable_decay'; got 'cosin' (str); did you mean 'cosine'?{src}",
        f"hyperparams.learnig_rate: unknown key; did you mean hyperparams.learning_rate?{src}",
        "model.precision: expected one of 'auto', 'float32', 'bfloat16', 'bfloat16-mixed' or 'float16'; "
        f"got 'bf16' (str); did you mean 'bfloat16'?{src}",
    ]
    assert str(ConfigError(problems)).startswith("4 configuration problems:\n  - hyperparams.batch_size")


def test_cli_problems_name_their_flag():
    problems = problems_of(
        lambda: ConfigLoader(None).merge_with_cli_args(
            {"batch_size": "0", "set": ["hyperparams.sed=1", "nonsense", "hyperparams.seed.x=1"]}
        )
    )
    # the structural --set problems do not hide the validation problems
    assert problems == [
        "--set nonsense: no '='; expected KEY.PATH=VALUE, e.g. hyperparams.batch_size=8",
        "hyperparams.seed.x: hyperparams.seed is a value, not a section (from --set)",
        "hyperparams.batch_size: expected greater than or equal to 1; got '0' (str) (from --batch-size)",
        "hyperparams.sed: unknown key; did you mean hyperparams.seed? (from --set)",
    ]


def test_clashing_length_flags():
    problems = problems_of(lambda: ConfigLoader(None).merge_with_cli_args({"epochs": "2", "max_steps": "5"}))
    assert problems == ["--epochs and --max-steps both given; choose one"]


# --- cross-field rules and field validators: raise / pass pairs -----------------------------


@pytest.mark.parametrize(
    ("bad", "good", "message"),
    [
        (
            {"hyperparams": {"warmup_steps": 10, "warmup_ratio": 0.1}},
            {"hyperparams": {"warmup_steps": 10}},
            "hyperparams: set either hyperparams.warmup_steps or hyperparams.warmup_ratio, not both",
        ),
        (
            {"hyperparams": {"max_steps": 10, "num_epochs": 2}},
            {"hyperparams": {"max_steps": 10}},
            "hyperparams: set either hyperparams.max_steps or hyperparams.num_epochs, not both "
            "(--max-steps and --epochs each clear the other)",
        ),
        (
            {"output": {"run_name": "a/b"}},
            {"output": {"run_name": "a-b"}},
            "output.run_name: a run name is a single folder name, without '/'",
        ),
        (
            {"data": {"dataset_path": []}},
            {"data": {"dataset_path": "one.jsonl"}},
            "data.dataset_path: give at least one dataset file or folder",
        ),
        (
            {"hyperparams": {"learning_rate": 0}},
            {"hyperparams": {"learning_rate": 1e-6}},
            "hyperparams.learning_rate: expected greater than 0; got 0 (int)",
        ),
        (
            {"data": {"max_reject_fraction": 1.5}},
            {"data": {"max_reject_fraction": 1.0}},
            "data.max_reject_fraction: expected less than or equal to 1; got 1.5 (float)",
        ),
        (
            {"hyperparams": {"warmup_ratio": 1.0}},
            {"hyperparams": {"warmup_ratio": 0.5}},
            "hyperparams.warmup_ratio: expected less than 1; got 1.0 (float)",
        ),
    ],
)
def test_validator_raise_pass_pairs(tmp_path, bad, good, message):
    assert problems_of(ConfigLoader(write(tmp_path / "bad.json", bad)).load) == [
        f"{message} (from {tmp_path / 'bad.json'})"
    ]
    ConfigLoader(write(tmp_path / "good.json", good)).load()


# --- files -------------------------------------------------------------------------------------


def test_invalid_json_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "c.json", '{\n  "hyperparams": {\n    "seed": 1,\n  }\n}')
    assert problems_of(ConfigLoader(path).load) == [
        f"{path}:4:3: invalid JSON: Expecting property name enclosed in double quotes"
    ]


def test_top_level_must_be_object(tmp_path):
    path = write(tmp_path / "c.json", "[1, 2]")
    assert problems_of(ConfigLoader(path).load) == [
        f"{path}: the top level must be a JSON object, got list"
    ]


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.json"
    assert problems_of(ConfigLoader(path).load) == [f"{path}: config file not found"]


def test_file_problem_and_cli_problem_reported_together(tmp_path):
    path = write(tmp_path / "c.json", "{oops")
    problems = problems_of(lambda: ConfigLoader(path).merge_with_cli_args({"set": ["a.b=1"]}))
    assert problems[0].startswith(f"{path}:1:2: invalid JSON")
    assert problems[1] == "a: unknown key (from --set)"


def test_shipped_config_validates_and_its_paths_exist():
    loader = ConfigLoader(REPO / "config.json")
    config = loader.load()
    assert check_paths(config) == []
    assert config.model.path == "builtin:tiny-qwen3"


def test_check_paths_reports_every_missing_path(tmp_path):
    config = create_default_config(
        model_path="no-model",
        dataset_path=["missing.jsonl", "notes.txt"],
        overrides={"system.base_dir": str(tmp_path), "output.resume": "ckpt-9"},
    )
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "no-config").mkdir()
    assert check_config(config) == [
        f"data.dataset_path[0]: {tmp_path}/missing.jsonl does not exist",
        f"data.dataset_path[1]: {tmp_path}/notes.txt is not one of .jsonl, .json, .parquet",
        f"model.path: {tmp_path}/no-model does not exist",
        f"output.resume: checkpoint folder {tmp_path}/ckpt-9 does not exist",
    ]
    config = create_default_config(
        model_path="no-config", dataset_path="notes.txt", overrides={"system.base_dir": str(tmp_path)}
    )
    assert check_paths(config)[1:] == [
        f"model.path: {tmp_path}/no-config is not a Hugging Face model folder (no config.json); "
        "use a local folder or builtin:tiny-qwen3",
    ]


def test_optimizer_and_schedule_routes_are_library_names():
    """What the factories hand transformers must stay names it knows (trainer.optim)."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from trainer import optim
    from trainer.optim import OPTIMIZERS, SCHEDULERS

    needs = {"step": {"step_size": 2}, "multistep": {"milestones": [2]}, "cosineannealing_warm_restarts": {"t_0": 2},
             "cyclic": {"step_size_up": 2}, "warmup_stable_decay": {"num_decay_steps": 2}, "cosine_with_min_lr": {"min_lr": 0.0}}
    for name in OPTIMIZERS:
        hp = create_default_config(overrides={"hyperparams.optimizer": name}).hyperparams
        assert optim.training_arguments(hp)["optim"] in {o.value for o in OptimizerNames}, name
    for name in SCHEDULERS:
        hp = create_default_config(overrides={"hyperparams.scheduler": {"name": name, **needs.get(name, {})}}).hyperparams
        assert optim.training_arguments(hp)["lr_scheduler_type"] in {s.value for s in SchedulerType}, name

# --- YAML --------------------------------------------------------------------------------------


def test_yaml_config_loads_like_json(tmp_path):
    path = write(tmp_path / "c.yaml", "hyperparams:\n  learning_rate: 1e-4\n  batch_size: 4\nprofile: {name: emoji_think}\n")
    loader = ConfigLoader(path)
    config = loader.load()
    assert config.hyperparams.learning_rate == pytest.approx(1e-4)  # YAML 1.1 would read "1e-4" as a string
    assert isinstance(config.hyperparams.learning_rate, float)
    assert config.hyperparams.batch_size == 4 and config.profile.name == "emoji_think"
    assert loader.sources["hyperparams.learning_rate"] == str(path)
    assert config.system.base_dir == str(tmp_path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "c.yml", "hyperparams:\n  seed: 1\n   batch_size: 2\n")
    (problem,) = problems_of(ConfigLoader(path).load)
    assert problem.startswith(f"{path}:3:"), problem
    assert "invalid YAML" in problem and "mapping values are not allowed here" in problem


def test_yaml_keys_get_paths_and_did_you_mean(tmp_path):
    path = write(tmp_path / "c.yaml", "hyperparams:\n  learning_rat: 0.1\n")
    (problem,) = problems_of(ConfigLoader(path).load)
    assert problem.startswith("hyperparams.learning_rat: unknown key") and "learning_rate" in problem


def test_yaml_repeated_key_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", "hyperparams:\n  seed: 1\n  seed: 2\n")
    assert problems_of(ConfigLoader(path).load) == [
        f"{path}: key hyperparams.seed is given 2 times; YAML keeps only the last, so keep one"
    ]


@pytest.mark.parametrize("text, got", [("- 1\n- 2\n", "list"), ("just text\n", "str")])
def test_yaml_top_level_must_be_mapping(tmp_path, text, got):
    path = write(tmp_path / "c.yaml", text)
    assert problems_of(ConfigLoader(path).load) == [f"{path}: the top level must be a YAML mapping, got {got}"]


def test_empty_yaml_is_defaults(tmp_path):
    loaded = ConfigLoader(write(tmp_path / "c.yaml", "# nothing yet\n")).load().model_dump()
    defaults = TrainerConfig().model_dump()
    assert loaded["system"].pop("base_dir") == str(tmp_path)
    defaults["system"].pop("base_dir")
    assert loaded == defaults


def test_default_config_file_may_be_yaml_but_not_two(tmp_path):
    from trainer.config.loader import default_config_path

    assert default_config_path(None, tmp_path) is None
    write(tmp_path / "config.yaml", "hyperparams: {seed: 3}\n")
    assert default_config_path(None, tmp_path) == tmp_path / "config.yaml"
    write(tmp_path / "config.json", {})
    (problem,) = problems_of(lambda: default_config_path(None, tmp_path))
    assert "config.json, config.yaml" in problem and "--config" in problem
    assert default_config_path("x.yml", tmp_path) == Path("x.yml")


def test_print_config_as_yaml_reads_back(tmp_path, capsys):
    import yaml

    from trainer.cli_main import main

    path = write(tmp_path / "c.yaml", "hyperparams:\n  learning_rate: 2e-5\n")
    assert main(["--config", str(path), "--print-config", "--format", "yaml", "--set", "hyperparams.seed=9"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["config"]["hyperparams"]["seed"] == 9
    assert printed["sources"]["hyperparams.seed"] == "--set"
    assert printed["sources"]["hyperparams.learning_rate"] == str(path)
    # the printed config is itself a config file that loads to the same values
    again = write(tmp_path / "again.yaml", yaml.safe_dump(printed["config"]))
    assert ConfigLoader(again).load().hyperparams.learning_rate == pytest.approx(2e-5)


def test_yaml_anchors_and_merge_keys(tmp_path):
    path = write(tmp_path / "c.yaml", (
        "stages:\n"
        "  - &sft {method: {name: sft}, max_steps: 10, learning_rate: 1e-3}\n"
        "  - {<<: *sft, max_steps: 20}\n"
    ))
    config = ConfigLoader(path).load()
    assert [(s.method.name, s.max_steps, s.learning_rate) for s in config.stages] == [("sft", 10, 1e-3), ("sft", 20, 1e-3)]
    twice = write(tmp_path / "d.yaml", "stages:\n  - {method: sft, max_steps: 1, max_steps: 2}\n")
    assert problems_of(ConfigLoader(twice).load) == [
        f"{twice}: key stages.max_steps is given 2 times; YAML keeps only the last, so keep one"]


def test_set_overrides_reads_set_items_as_the_cli_does():
    from trainer.config.loader import set_overrides

    assert set_overrides(["hyperparams.seed=3", "profile.name=emoji_think", "data.max_rows=null"]) == {
        "hyperparams.seed": 3, "profile.name": "emoji_think", "data.max_rows": None}
    assert problems_of(lambda: set_overrides(["seed", "=3", "a.b=1"])) == [
        "--set seed: no '='; expected KEY.PATH=VALUE, e.g. hyperparams.batch_size=8",
        "--set =3: no key before '='; expected KEY.PATH=VALUE, e.g. hyperparams.batch_size=8",
    ]
