"""Prompts for the RL methods (GRPO, RLOO, PPO): conversations -> a prompt, a reference answer.

Any SFT-shaped data serves: each row is read and rendered by its profile exactly as for SFT
(``trainer.data.rendering``); the messages before the last assistant turn are the prompt the
policy answers, and the last assistant turn (in the profile's format) is the reference that the
rewards compare against. ``expected`` is the row's final answer as the profile's answer check
reads it (None where the row states none). Columns are TRL's conversational ``prompt`` plus
``reference``, ``expected`` and ``source``, which TRL hands every reward function.

A prompt longer than ``data.max_length`` is rejected under ``overlong_policy: drop`` and
``truncate`` alike (a cut prompt asks another question) and counted; ``error`` stops the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config.schema import TrainerConfig
from trainer.data.example import Probe, Rejected
from trainer.data.rendering import rendered_split
from trainer.data.report import DataReport, length_stats
from trainer.profiles import DataProfile

SAMPLES_SHOWN = 3


def _prompt_length(tokenizer: Any, template: str | None, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def build_prompts(config: TrainerConfig, files: list[Path], tokenizer: Any, template: str | None, profile: DataProfile, eos_ids: set[int]):
    """(columns, probes, report, rejects) for an RL method; see ``trainer.data.prepare``."""
    report = DataReport.for_job(config, files, profile)
    rejects: list[Rejected] = []
    train, holdout = rendered_split(config, files, profile, report, rejects)

    max_len, policy = config.data.max_length, config.data.overlong_policy
    columns: dict[str, list] = {"prompt": [], "reference": [], "expected": [], "source": []}
    lengths, overlong = [], []
    for item in train:
        prompt = item.messages[:-1]
        length = _prompt_length(tokenizer, template, prompt)
        lengths.append(length)
        if length > max_len:
            if policy == "error":
                overlong.append(f"{item.example.source} ({length} tokens)")
                continue
            file, _, line = item.example.source.rpartition(":")
            reason = f"prompt longer than data.max_length ({length} > {max_len} tokens)"
            rejects.append(Rejected(file, int(line) if line.isdigit() else None, reason, None, "length"))
            continue
        columns["prompt"].append(prompt)
        columns["reference"].append(item.messages[-1]["content"])
        columns["expected"].append(item.example.final_answer)
        columns["source"].append(item.example.source)
    report.record_lengths(lengths)
    if overlong:
        raise report.overlong_error(overlong, "prompts")
    report.rows_used = len(columns["prompt"])
    report.rows_held_out = len(holdout)
    report.count_rejects(rejects)
    report.token_lengths = length_stats([n for n in lengths if n <= max_len])
    report.samples = [
        tokenizer.apply_chat_template(p, chat_template=template, tokenize=False, add_generation_prompt=True)
        for p in columns["prompt"][:SAMPLES_SHOWN]
    ]
    probes = [Probe(r.messages[:-1], r.example.final_answer, r.messages[-1]["content"], r.example.source) for r in holdout]
    return columns, probes, report, [r.to_json() for r in rejects]
