"""A saved model stands on its own: its chat template carries the profile's system prompt, and its
folder holds a true model card."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from jobkit import job_values
from trainer.config import create_default_config
from trainer.core.engine import TrainerEngine
from trainer.models.templates import CHATML_TEMPLATE, with_default_system, without_default_system
from trainer.profiles import get_profile

BASE = "You are a helpful assistant."


def _render(tokenizer, template, messages):
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("profile", ["regime3", "emoji_think"])
def test_the_template_puts_the_profiles_prompt_in_and_keeps_a_users_own(tiny_tokenizer, profile):
    system = get_profile(profile).format_system_prompt(BASE)
    saved = with_default_system(CHATML_TEMPLATE, system)
    question = [{"role": "user", "content": 'What is "7 + 5"? \\ think'}]
    assert _render(tiny_tokenizer, saved, question) == _render(tiny_tokenizer, CHATML_TEMPLATE, [{"role": "system", "content": system}, *question])
    mine = [{"role": "system", "content": "Be brief."}, *question]
    assert _render(tiny_tokenizer, saved, mine) == _render(tiny_tokenizer, CHATML_TEMPLATE, mine)
    # saved again (a curriculum's next stage): one head, not two; and it comes off whole
    assert with_default_system(saved, system) == saved
    assert without_default_system(saved) == CHATML_TEMPLATE
    assert with_default_system(CHATML_TEMPLATE, "") == CHATML_TEMPLATE


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, builtin_cache):
    tmp = tmp_path_factory.mktemp("saved")
    config = create_default_config(overrides=job_values(tmp, builtin_cache, **{"output.run_name": "standalone"}))
    return TrainerEngine().run_job(config), config


@pytest.mark.slow
def test_plain_transformers_renders_what_the_engine_trained_on(saved_run):
    from transformers import AutoTokenizer

    result, config = saved_run
    tokenizer = AutoTokenizer.from_pretrained(result.model_path)
    system = get_profile(config.profile.name).format_system_prompt(config.profile.system_prompt)
    previews = [json.loads(line) for line in (result.run_dir / "previews.jsonl").read_text().splitlines()]
    assert previews
    for preview in previews:
        question = [{"role": "user", "content": preview["prompt"]}]
        plain = tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)  # no system message
        trained = _render(tokenizer, CHATML_TEMPLATE, [{"role": "system", "content": system}, *question])
        assert plain == trained


@pytest.mark.slow
def test_the_model_card_tells_the_truth_and_its_snippet_runs(saved_run):
    result, config = saved_run
    card = (result.model_path / "README.md").read_text()
    assert not (result.run_dir / "README.md").exists()  # TRL's card, naming the base None, is not written
    assert "None](https://huggingface.co/None)" not in card
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "builtin:tiny-qwen3" and front["library_name"] == "transformers"
    assert front["tags"] == ["hero-trainer", "sft", "regime3"] and front["pipeline_tag"] == "text-generation"
    report = json.loads((result.run_dir / "data_report.json").read_text())
    row = f"| `train.jsonl` | {report['rows_total']} | {report['rows_used']} | {report['rows_held_out']} | {report['rows_rejected']} | {report['rows_truncated']} |"
    assert row in card
    metrics = result.final_metrics
    assert f"| held-out answers in the profile's format | {metrics['probes_format_ok']}/{metrics['probes']} |" in card
    assert f"| loss at the last step | {metrics['loss_end']:.4g} |" in card
    assert "| learning rate | 0.003 |" in card and "| steps | 12 |" in card
    system = get_profile("regime3").format_system_prompt(config.profile.system_prompt)
    assert f"```text\n{system}\n```" in card
    assert re.search(r"by hero-trainer \S+", card)
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300, cwd="/")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip()  # the model's answer, decoded


# --- exports ---------------------------------------------------------------------------------------


def render_go(template: str, system: str, messages: list[dict]) -> str:
    """Go's text/template, the subset the Modelfile uses (``if .System``, ``if ne .Role "system"``,
    ``range .Messages``, ``.System`` / ``.Role`` / ``.Content``; ``{{-`` trims the whitespace
    before it), with the data as Ollama hands it: the system message both as ``.System`` and
    among ``.Messages``."""
    template = re.sub(r"\s*\{\{-\s*", "{{", template)
    tokens = re.split(r"(\{\{.*?\}\})", template)

    def run(pos: int, scope: dict) -> tuple[str, int]:
        out = []
        while pos < len(tokens):
            token = tokens[pos]
            if not token.startswith("{{"):
                out.append(token)
                pos += 1
                continue
            action = token[2:-2].strip()
            if action == "end":
                return "".join(out), pos + 1
            if action.startswith("if "):
                test = action[3:]
                on = bool(scope["System"]) if test == ".System" else scope["Role"] != re.fullmatch(r'ne \.Role "(\w+)"', test).group(1)
                body, pos = run(pos + 1, scope)
                out.append(body if on else "")
            elif action == "range .Messages":
                start, body = pos + 1, ""
                for message in scope["Messages"]:
                    text, pos = run(start, {**scope, "Role": message["role"], "Content": message["content"]})
                    body += text
                if not scope["Messages"]:
                    _, pos = run(start, {**scope, "Role": "", "Content": ""})
                out.append(body)
            else:
                out.append(str(scope[action.lstrip(".")]))
                pos += 1
        return "".join(out), pos

    data = {"System": system, "Messages": ([{"role": "system", "content": system}] if system else []) + messages}
    return run(0, data)[0]


def _modelfile(path) -> dict:
    text = path.read_text()
    found = {"TEMPLATE": re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1),
             "SYSTEM": re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M).group(1),
             # Ollama strips the quotes and unescapes nothing: \"\"\"...\"\"\" may span lines
             "stop": [m[0] or m[1] for m in re.findall(r'^PARAMETER stop (?:"""(.*?)"""|"([^"]*)")$', text, re.M | re.S)],
             "FROM": re.search(r"^FROM (.+)$", text, re.M).group(1)}
    found.update({k: v for k, v in re.findall(r"^PARAMETER (temperature|num_predict) (\S+)$", text, re.M)})
    return found


@pytest.mark.slow
def test_ollama_modelfile_renders_what_the_engine_renders(saved_run, capsys):
    from transformers import AutoTokenizer

    from trainer.cli_main import main

    result, config = saved_run
    assert main(["export", str(result.run_dir), "--to", "ollama"]) == 0  # a run folder: its model
    assert capsys.readouterr().out.strip() == f"wrote {result.model_path / 'Modelfile'}"
    modelfile = _modelfile(result.model_path / "Modelfile")
    profile = get_profile(config.profile.name)
    system = profile.format_system_prompt(config.profile.system_prompt)
    assert modelfile["SYSTEM"] == system and modelfile["FROM"] == "."
    assert modelfile["stop"][0] == "<|im_end|>" and set(profile.get_stop_sequences()) <= set(modelfile["stop"])
    assert (modelfile["temperature"], modelfile["num_predict"]) == ("0", str(config.inference.max_new_tokens))
    tokenizer = AutoTokenizer.from_pretrained(result.model_path)
    question = [{"role": "user", "content": "Ada has 3 pens. She buys 4 more. How many pens?"}]
    engine = tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    assert render_go(modelfile["TEMPLATE"], modelfile["SYSTEM"], question) == engine
    # a user's own system message (Ollama puts it in .System, in place of the Modelfile's): once
    mine = [{"role": "system", "content": "Be brief."}, *question]
    assert render_go(modelfile["TEMPLATE"], "Be brief.", question) == tokenizer.apply_chat_template(
        mine, tokenize=False, add_generation_prompt=True)
    # the stops are the real characters: regime3's blank-line stop is three newlines, not "\\n"
    assert "\n\n\n" in modelfile["stop"]
    # a bare model folder (no run around it) still gets the system prompt its template carries
    bare = result.run_dir.parent / "bare-model"
    shutil.copytree(result.model_path, bare)
    assert main(["export", str(bare), "--to", "ollama"]) == 0
    assert _modelfile(bare / "Modelfile")["SYSTEM"] == system
    # written elsewhere, the Modelfile names the weights' folder (Ollama resolves FROM against it)
    elsewhere = result.run_dir.parent / "ollama" / "new"
    assert main(["export", str(result.run_dir), "--to", "ollama", "--output", str(elsewhere)]) == 0
    assert _modelfile(elsewhere / "Modelfile")["FROM"] == str(result.model_path.resolve())


@pytest.mark.slow
def test_merged_export_of_a_lora_adapter_folder_loads_without_peft(tmp_path, builtin_cache):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.cli_main import main
    from trainer.models.loading import load_model

    config = create_default_config(overrides=job_values(tmp_path, builtin_cache, **{
        "model.lora": {"r": 4, "merge": False}, "hyperparams.max_steps": 4, "inference.preview_every_steps": 0}))
    result = TrainerEngine().run_job(config)
    assert (result.model_path / "adapter_config.json").is_file()  # merge off: the adapters alone
    assert main(["export", str(result.model_path), "--to", "merged"]) == 0
    merged = result.model_path.parent / "model-merged"
    assert not (merged / "adapter_config.json").exists() and (merged / "README.md").is_file()
    plain = AutoModelForCausalLM.from_pretrained(merged).state_dict()
    engine = load_model(result.model_path, config, "cpu", "float32").state_dict()  # the engine's own merge
    for name, value in plain.items():
        assert torch.allclose(value, engine[name], atol=1e-6), name
    # refused, with a reason and exit 2: a full model, and a folder that holds none
    assert main(["export", str(merged), "--to", "merged"]) == 2
    assert main(["export", str(tmp_path), "--to", "ollama"]) == 2
