"""Data preparation: files -> canonical examples -> profile messages -> masked tokens.

Every row read ends up used, held out, rejected (with file, line and reason in
``rejects.jsonl``) or unused because of ``data.max_rows``; the data report counts each. Too many
rejects, or no row left, stops the job here, before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.custom_collator import (
    IGNORE_INDEX,
    TemplateMismatch,
    render_marked,
    tokenize_with_mask,
)
from core.run_layout import RunLayout
from trainer.config.schema import TrainerConfig
from trainer.data.cache import PreparedCache, cache_key, tokenizer_fingerprint
from trainer.data.example import DataError, Probe, Rejected
from trainer.data.labeled_data import build_labeled
from trainer.data.pairs import build_pairs
from trainer.data.prompt_data import build_prompts
from trainer.data.readers import expand_paths
from trainer.data.rendering import Rendered, rendered_split
from trainer.data.report import DataReport, length_stats
from trainer.data.unpaired_data import build_unpaired
from trainer.profiles import DataProfile

SAMPLES_SHOWN = 3


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset: the method's training columns (SFT: input_ids and labels)
    probes: list[Probe]
    report: DataReport
    # Held-out rows in the method's own shape, for methods that measure on them instead of
    # generating (preference: TRL's prompt / chosen / rejected; labeled: input_ids / label).
    heldout: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # labeled data: class names by label id


def _tokenize(
    rendered: list[Rendered],
    tokenizer: Any,
    template: str | None,
    config: TrainerConfig,
    report: DataReport,
    rejects: list[Rejected],
) -> tuple[dict[str, list], list[Any]]:
    columns: dict[str, list] = {"input_ids": [], "labels": []}
    kept = []
    max_len, policy = config.data.max_length, config.data.overlong_policy
    overlong = []
    lengths: list[int] = []  # every row's full length, before drop or truncation
    for item in rendered:
        file, _, line = item.example.source.rpartition(":")
        where = (file, int(line) if line.isdigit() else None)
        try:
            tokens = tokenize_with_mask(tokenizer, item.messages, template)
        except TemplateMismatch as exc:
            rejects.append(Rejected(*where, str(exc), item.messages, "tokenize"))
            continue
        ids, labels = tokens.input_ids, tokens.labels
        lengths.append(len(ids))
        if len(ids) > max_len:
            if policy == "error":
                overlong.append(f"{item.example.source} ({len(ids)} tokens)")
                continue
            if policy == "drop":
                rejects.append(
                    Rejected(*where, f"longer than data.max_length ({len(ids)} > {max_len} tokens)", None, "length")
                )
                continue
            ids, labels = ids[:max_len], labels[:max_len]
            report.rows_truncated += 1
        if all(label == IGNORE_INDEX for label in labels):
            rejects.append(Rejected(*where, "no trainable token left", None, "tokenize"))
            continue
        columns["input_ids"].append(ids)
        columns["labels"].append(labels)
        kept.append((tokens, item))
    report.record_lengths(lengths)
    if overlong:
        raise report.overlong_error(overlong, "rows")
    return columns, kept


def _checks(tokenizer: Any, template: str | None, kept: list[tuple[Any, Rendered]], eos_ids: set[int]):
    """Inference must see the prompt exactly as training did, and stop on the turn's last token."""
    mismatched = 0
    for tokens, item in kept[:50]:
        prompt = tokenizer.apply_chat_template(
            item.messages[:-1], chat_template=template, tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
        mismatched += tokens.input_ids[: len(prompt_ids)] != prompt_ids
    enders = {next(t for t in reversed(k.labels) if t != IGNORE_INDEX) for k, _ in kept}
    names = sorted(tokenizer.convert_ids_to_tokens(sorted(enders)))
    return {
        "inference_prompt_matches_training": "ok" if not mismatched else f"{mismatched} of {min(50, len(kept))} rows differ",
        "assistant_turn_ends_with": names,
        "generation_stops_there": enders <= eos_ids,
    }


def _profile_identity(profile: DataProfile | None) -> list[str]:
    """Every class in the profile chain by import path: two profiles that share a ``name`` but
    render differently (a subclass, a custom class) must not share a cache entry."""
    chain = []
    while profile is not None:
        cls = type(profile)
        chain.append(f"{cls.__module__}.{cls.__qualname__}:{profile.options.model_dump_json()}")
        profile = profile.inner
    return chain


def _settings(config: TrainerConfig, profile: DataProfile, eos_ids: set[int]) -> dict[str, Any]:
    # packing and padding_free decide how prepared rows are batched, not the rows themselves
    data = config.data.model_dump(exclude={"cache_dir", "dataset_path", "max_reject_fraction", "packing", "padding_free"})
    return {
        "data": data,
        "profile": profile.full_name,
        "profile_classes": _profile_identity(profile),
        "system_prompt": config.profile.system_prompt,
        "seed": config.hyperparams.seed,
        "eos_ids": sorted(i for i in eos_ids if i is not None),
    }


def _build(config, files, tokenizer, template, profile, eos_ids):
    report = DataReport.for_job(config, files, profile)
    rejects: list[Rejected] = []
    train, holdout = rendered_split(config, files, profile, report, rejects)
    columns, kept = _tokenize(train, tokenizer, template, config, report, rejects)
    report.rows_used = len(columns["input_ids"])
    report.rows_held_out = len(holdout)
    report.count_rejects(rejects)
    lengths = [len(ids) for ids in columns["input_ids"]]
    report.token_lengths = length_stats(lengths)
    report.total_tokens = sum(lengths)
    report.trainable_tokens = sum(sum(l != IGNORE_INDEX for l in labels) for labels in columns["labels"])
    report.samples = [render_marked(tokens) for tokens, _ in kept[:SAMPLES_SHOWN]]
    if kept:
        report.checks = _checks(tokenizer, template, kept, eos_ids)
    probes = [
        Probe(r.messages[:-1], r.example.final_answer, r.messages[-1]["content"], r.example.source)
        for r in holdout
    ]
    return columns, probes, report, [r.to_json() for r in rejects]


# Data shape (a method's ``data_shape``) -> the builder of its columns, probes, report, rejects
# and, optionally, a fifth item: a dict of PreparedData's optional fields (heldout, classes).
BUILDERS = {
    "conversations": _build,
    "preference": build_pairs,
    "labeled": build_labeled,
    "unpaired": build_unpaired,
    "prompts": build_prompts,
}


def prepare_data(
    config: TrainerConfig,
    tokenizer: Any,
    profile: DataProfile,
    chat_template: str | None,
    eos_ids: set[int],
    run_dir: Path,
    write_outputs: bool = True,
    shape: str = "conversations",
) -> PreparedData:
    """Prepare (or load from cache) the training data and write the report and rejects
    (``write_outputs``: False on ranks other than 0, which prepare the same data). ``shape`` is
    the method's data shape (:data:`BUILDERS`).

    Raises:
        DataError: too many rows rejected, no row left, or over-long rows with policy 'error'.
    """
    from datasets import Dataset

    try:
        files = expand_paths([config.resolve_path(p) for p in config.data.dataset_path])
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    if not files:
        raise DataError(f"no .jsonl, .json or .parquet file in {', '.join(config.data.dataset_path)}")
    if shape not in BUILDERS:
        raise DataError(f"this engine cannot prepare {shape!r} data yet; it prepares: {', '.join(BUILDERS)}")
    settings = {**_settings(config, profile, eos_ids), "shape": shape}
    key = cache_key(files, tokenizer_fingerprint(tokenizer, chat_template), settings)
    cache = PreparedCache(config.resolve_path(config.data.cache_dir))
    hit = cache.load(key)
    if hit is not None and "extra" not in hit[1]:
        hit = None  # prepared before held-out rows were kept: rebuilt, so none go missing
    if hit is not None:
        train, meta = hit
        report = DataReport.from_json(meta["report"])
        report.cache_hit = True
        probes = [Probe(**p) for p in meta["probes"]]
        rejects = meta["rejects"]
        extra = meta["extra"]
    else:
        columns, probes, report, rejects, *more = BUILDERS[shape](config, files, tokenizer, chat_template, profile, eos_ids)
        extra = more[0] if more else {}
        train = Dataset.from_dict(columns)
        report.cache_key = key
        meta = {"report": report.to_json(), "probes": [asdict(p) for p in probes], "rejects": rejects, "extra": extra}
        if len(train):  # datasets cannot load a saved table of no rows, and there is nothing to save
            cache.store(key, train, meta)
    if write_outputs:
        _write_outputs(run_dir, report, rejects)
    else:
        report.rejects_file = str(RunLayout(run_dir).rejects)
    _enforce_threshold(report, config.data.max_reject_fraction)
    return PreparedData(train, probes, report, **extra)


def _write_outputs(run_dir: Path, report: DataReport, rejects: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    rejects_path = RunLayout(run_dir).rejects
    with rejects_path.open("w", encoding="utf-8") as handle:
        for record in rejects:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    report.rejects_file = str(rejects_path)
    RunLayout(run_dir).data_report.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False), "utf-8")


def _enforce_threshold(report: DataReport, max_fraction: float) -> None:
    reasons = "; ".join(f"{n} x {r}" for r, n in list(report.rejected_by_reason.items())[:5])
    where = f"Rejected rows, with file, line and reason: {report.rejects_file}"
    if any(reason.startswith("length:") for reason in report.rejected_by_reason):
        where = f"{report.length_advice()} {where}"
    if report.rows_used == 0:
        raise DataError(
            f"no row left to train on: {report.rows_rejected} of {report.rows_total} rows were "
            f"rejected ({reasons or 'no rows read'}). {where}"
        )
    if report.reject_fraction > max_fraction:
        raise DataError(
            f"{report.rows_rejected} of {report.rows_total} rows "
            f"({100 * report.reject_fraction:.1f}%) were rejected, more than "
            f"data.max_reject_fraction={max_fraction:g}: {reasons}. {where}"
        )
