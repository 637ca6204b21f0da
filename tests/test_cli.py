"""The front door: exit codes, no tracebacks for user errors, no heavy imports for quick actions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cli_main import main

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "trainer" / "cli_main.py"
HEAVY = ("torch", "transformers", "trl", "datasets")

# Runs the CLI in a fresh interpreter and reports which heavy modules it imported.
PROBE = """
import runpy, sys, json
sys.argv = ["cli_main.py", *json.loads(sys.argv[1])]
try:
    runpy.run_path({cli!r}, run_name="__main__")
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    code = PROBE.format(cli=str(CLI), heavy=HEAVY)
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(args))],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def heavy_modules(result: subprocess.CompletedProcess) -> list[str]:
    line = next(l for l in result.stderr.splitlines() if l.startswith("HEAVY="))
    return json.loads(line.removeprefix("HEAVY="))


@pytest.mark.parametrize("args", [["--help"], ["--print-config"], ["--validate"], ["--config-reference"]])
def test_quick_actions_import_no_heavy_library(args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert heavy_modules(result) == []


def test_print_config_shows_values_and_sources():
    result = run_cli("--print-config", "--lr", "0.01", "--set", "hyperparams.seed=3")
    data = json.loads(result.stdout)
    assert data["config"]["hyperparams"]["learning_rate"] == 0.01
    assert data["sources"]["hyperparams.learning_rate"] == "--lr"
    assert data["sources"]["hyperparams.seed"] == "--set"
    assert data["sources"]["model.path"] == str(REPO / "config.json")
    assert data["sources"]["hyperparams.weight_decay"] == "default"


def test_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hyperparams": {"learnig_rate": 1}, "model": {"precision": "bf16"}}')
    result = run_cli("--config", str(bad), "--set", "debug.verbos=true", "--validate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "3 configuration problems:" in result.stderr
    assert "hyperparams.learnig_rate: unknown key; did you mean hyperparams.learning_rate?" in result.stderr
    assert "debug.verbos: unknown key; did you mean debug.verbose? (from --set)" in result.stderr
    assert heavy_modules(result) == []


def test_unknown_flag_exits_2_without_traceback():
    result = run_cli("--learning-rate", "1")
    assert result.returncode == 2
    assert "unrecognized arguments: --learning-rate" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_missing_paths(tmp_path, capsys):
    code = main(["--config", str(REPO / "config.json"), "--dataset", str(tmp_path / "none.jsonl"), "--validate"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"data.dataset_path[0]: {tmp_path}/none.jsonl does not exist" in err


def test_main_in_process_print_config(capsys):
    assert main(["--config", str(REPO / "config.json"), "--print-config", "--profile", "emoji_think"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["profile"]["name"] == "emoji_think"


def test_readme_reference_matches_schema():
    from trainer.config.reference import README_BEGIN, README_END, config_reference

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    embedded = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert embedded.strip() == config_reference().strip(), (
        "README's configuration reference is stale: run "
        "python scripts/update_readme_reference.py"
    )


def test_core_train_is_the_same_front_door():
    result = subprocess.run(
        [sys.executable, str(REPO / "core" / "train.py"), "--print-config", "--dataset", "data.jsonl"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"]["data"]["dataset_path"] == ["data.jsonl"]
    assert data["sources"]["data.dataset_path"] == "--dataset"


def test_core_does_not_import_trainer():
    """Dependencies point one way: arena -> trainer -> core (core/train.py is the entry)."""
    for path in (REPO / "core").glob("*.py"):
        if path.name == "train.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "from trainer" not in text and "import trainer" not in text, path.name


def test_installed_console_script():
    script = Path(sys.executable).parent / "trainer"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's environment (pip install -e .)")
    result = subprocess.run([str(script), "--print-config", "--lr", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["hyperparams"]["learning_rate"] == 0.5
