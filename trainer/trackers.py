"""Experiment trackers (``output.report_to``): transformers' own integrations, told where to write.

A job names trackers by transformers' integration names; every method's trainer gets them as
``TrainingArguments.report_to``, so transformers' callbacks log each logged step (the loss, the
learning rate and every figure the method logs: rewards, KL, margins, ``distill/*``). This module
adds what those callbacks leave out:

- where they write: each tracker's files go into the run's own folder (TensorBoard's event files
  under ``<run>/tensorboard``, W&B's under ``<run>/wandb``) or, for a tracker whose store is shared
  by design (MLflow), under the output folder, unless the user's environment says otherwise;
- the job's own config (``resolved_config.json``'s content), beside the TrainingArguments they log;
- the final figures measured after training (probe format / answer counts, win rate, held-out
  accuracy), as ``final/<name>``.

The table is light (no tracker is imported), so the config can check names and installed
packages before anything loads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROJECT = "hero-trainer"


@dataclass(frozen=True)
class Tracker:
    """One of transformers' reporting integrations, as this engine drives it.

    ``environment(run_dir, output_dir, project)`` gives the variables its callback reads (set
    for the job when the user has not set them); ``log_config(callback, config)`` records the
    job's config once the callback has started its run; ``log_final(callback, figures, step)``
    records the figures measured after training (None: the tracker's run is closed by then, so
    they are not sent); ``log_table(callback, key, columns, rows, history, step)`` records a
    table during training (this step's ``rows``; ``history``, every row so far, for trackers
    that replace a table whole); ``close(callback)`` ends what the callback leaves open."""

    name: str
    package: str  # the module whose presence makes it usable (importlib.util.find_spec)
    install: str  # what to pip install
    environment: Callable[[Path, Path, str], dict[str, str]] = lambda run_dir, output_dir, project: {}
    log_config: Callable[[Any, dict[str, Any]], None] | None = None
    log_final: Callable[[Any, dict[str, float], int], None] | None = None
    log_table: Callable[[Any, str, list[str], list[list[Any]], list[list[Any]], int], None] | None = None
    open_before: Callable[[Any], Any] = lambda callback: None  # what the tracker had open before the job
    close: Callable[[Any, Any], None] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _config_text(config: dict[str, Any]) -> str:
    return "```json\n" + json.dumps(config, indent=2) + "\n```"  # TensorBoard renders Markdown


def _tb_config(callback: Any, config: dict[str, Any]) -> None:
    if callback.tb_writer is not None:
        callback.tb_writer.add_text("trainer_config", _config_text(config))
        callback.tb_writer.flush()


def _tb_final(callback: Any, figures: dict[str, float], step: int) -> None:
    # transformers closes its writer at the end of training; a fresh one appends to the same folder
    writer = callback._SummaryWriter(log_dir=callback.logging_dir)
    for name, value in figures.items():
        writer.add_scalar(f"final/{name}", value, step)
    writer.close()


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def _tb_table(callback: Any, key: str, columns: list[str], rows: list[list[Any]], history: list[list[Any]], step: int) -> None:
    if callback.tb_writer is not None:
        lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in rows]
        callback.tb_writer.add_text(key, "\n".join(lines), step)
        callback.tb_writer.flush()


def _wandb_table(callback: Any, key: str, columns: list[str], rows: list[list[Any]], history: list[list[Any]], step: int) -> None:
    if callback._wandb is not None and callback._wandb.run is not None:
        # a W&B table is logged whole each time (as TRL's LogCompletionsCallback does)
        callback._wandb.log({key: callback._wandb.Table(columns=columns, data=history)})


def _mlflow_table(callback: Any, key: str, columns: list[str], rows: list[list[Any]], history: list[list[Any]], step: int) -> None:
    if callback._initialized and callback._ml_flow.active_run() is not None:
        data = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
        callback._ml_flow.log_table(data=data, artifact_file=f"{key}/step_{step:06d}.json")


def _wandb_config(callback: Any, config: dict[str, Any]) -> None:
    if callback._wandb is not None and callback._wandb.run is not None:
        callback._wandb.config.update({"trainer_config": config}, allow_val_change=True)


def _wandb_final(callback: Any, figures: dict[str, float], step: int) -> None:
    run = callback._wandb.run if callback._wandb is not None else None
    if run is not None:
        run.summary.update({f"final/{name}": value for name, value in figures.items()})


def _wandb_close(callback: Any, before: Any) -> None:
    # transformers leaves the run open until the process exits; a daemon or a notebook runs
    # several jobs in one process, each its own W&B run. A run the user had open before the job
    # (transformers logs into it) is theirs to finish.
    run = callback._wandb.run if callback._wandb is not None else None
    if run is not None and run is not before:
        callback._wandb.finish()


def _wandb_open(callback: Any) -> Any:
    return callback._wandb.run if callback._wandb is not None else None


def _mlflow_config(callback: Any, config: dict[str, Any]) -> None:
    if callback._initialized and callback._ml_flow.active_run() is not None:
        callback._ml_flow.log_dict(config, "trainer_config.json")


def _trackio_config(callback: Any, config: dict[str, Any]) -> None:
    if getattr(callback, "_initialized", False):
        callback._trackio.config.update({"trainer_config": config}, allow_val_change=True)


TRACKERS: dict[str, Tracker] = {
    t.name: t
    for t in (
        Tracker(
            "tensorboard", "tensorboard", "hero-trainer[tensorboard]",
            environment=lambda run_dir, output_dir, project: {"TENSORBOARD_LOGGING_DIR": str(run_dir / "tensorboard")},
            log_config=_tb_config, log_final=_tb_final, log_table=_tb_table,
        ),
        Tracker(
            "wandb", "wandb", "hero-trainer[wandb]",
            environment=lambda run_dir, output_dir, project: {"WANDB_DIR": str(run_dir), "WANDB_PROJECT": project},
            log_config=_wandb_config, log_final=_wandb_final, log_table=_wandb_table,
            open_before=_wandb_open, close=_wandb_close,
            notes=("set WANDB_MODE=offline to keep the run on disk (wandb sync uploads it later)",),
        ),
        Tracker(
            "mlflow", "mlflow", "hero-trainer[mlflow]",
            environment=lambda run_dir, output_dir, project: {
                "MLFLOW_TRACKING_URI": (output_dir / "mlruns").resolve().as_uri(),
                "MLFLOW_EXPERIMENT_NAME": project,
            },
            log_config=_mlflow_config, log_table=_mlflow_table,
        ),
        Tracker("trackio", "trackio", "hero-trainer[trackio]", log_config=_trackio_config),
        Tracker("comet_ml", "comet_ml", "comet_ml"),
        Tracker("clearml", "clearml", "clearml"),
        Tracker("dvclive", "dvclive", "dvclive"),
        Tracker("swanlab", "swanlab", "swanlab"),
        Tracker("neptune", "neptune", "neptune"),
        Tracker("codecarbon", "codecarbon", "codecarbon"),
    )
}


def tracker_problems(names: list[str]) -> list[str]:
    """What is wrong with ``output.report_to``: unknown names (with a did-you-mean), names
    given twice, and trackers whose package is not installed (naming what to install)."""
    import difflib

    problems, seen = [], set()
    for index, name in enumerate(names):
        key = f"[{index}] {name!r}"
        if name in seen:
            problems.append(f"{key} is given twice")
        seen.add(name)
        tracker = TRACKERS.get(name)
        if tracker is None:
            close = difflib.get_close_matches(name, TRACKERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}: not a tracker; expected one of {', '.join(sorted(TRACKERS))}{hint}")
        elif importlib.util.find_spec(tracker.package) is None:
            problems.append(f"{key}: the {tracker.package} package is not installed: pip install '{tracker.install}'")
    return problems


class TrackerSession:
    """The trackers of one job: :meth:`attach` to its trainer once built, :meth:`final` with the
    figures measured after training; leaving the ``with`` block (done or failed) closes what the
    trackers leave open and puts the environment back.

    Example::

        with TrackerSession(["tensorboard"], run_dir, output_dir, "my-project") as trackers:
            trainer = method.build(...)
            trackers.attach(trainer, config.model_dump(mode="json"))
            trainer.train()
            trackers.final(metrics, trainer.state.global_step, is_main_process())
    """

    def __init__(self, names: list[str], run_dir: Path, output_dir: Path, project: str):
        self.names = list(names)
        self._environment = environment(self.names, run_dir, output_dir, project)
        self._attached: list[tuple[Tracker, Any]] = []
        self._before: list[Any] = []

    def __enter__(self) -> TrackerSession:
        self._environment.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for (tracker, callback), before in zip(self._attached, self._before):
                if tracker.close is not None:
                    tracker.close(callback, before)
        finally:
            self._environment.__exit__(*exc)

    def attach(self, trainer: Any, config: dict[str, Any]) -> None:
        """Find transformers' callbacks in ``trainer`` and record ``config`` in each tracker when
        training begins."""
        if not self.names:
            return
        self._attached = integration_callbacks(trainer, self.names)
        self._before = [tracker.open_before(callback) for tracker, callback in self._attached]
        trainer.add_callback(config_callback(self._attached, config))

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], history: list[list[Any]], step: int) -> int:
        """Send a table to each tracker that takes tables; how many took it."""
        taken = 0
        for tracker, callback in self._attached:
            if tracker.log_table is not None:
                tracker.log_table(callback, key, columns, rows, history, step)
                taken += 1
        return taken

    def final(self, figures: Mapping[str, Any], step: int, main_process: bool) -> None:
        """Send the final figures: finite numbers only (a tracker never shows NaN as a figure)."""
        numbers = {
            key: float(value)
            for key, value in figures.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        if not (main_process and numbers):
            return
        for tracker, callback in self._attached:
            if tracker.log_final is not None:
                tracker.log_final(callback, numbers, step)


@contextlib.contextmanager
def environment(names: list[str], run_dir: Path, output_dir: Path, project: str) -> Iterator[None]:
    """The trackers' variables for one job (the user's own win), put back afterwards: a daemon
    or a notebook runs several jobs in one process, and each writes into its own run folder."""
    wanted: dict[str, str] = {}
    for name in names:
        wanted.update(TRACKERS[name].environment(run_dir, output_dir, project))
    set_here = {key: value for key, value in wanted.items() if key not in os.environ}
    os.environ.update(set_here)
    try:
        yield
    finally:
        for key in set_here:
            os.environ.pop(key, None)


def integration_callbacks(trainer: Any, names: list[str]) -> list[tuple[Tracker, Any]]:
    """(tracker, transformers' callback instance) for each tracker the trainer reports to."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    found = []
    for name in names:
        cls = INTEGRATION_TO_CALLBACK[name]
        callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, cls)), None)
        if callback is not None:
            found.append((TRACKERS[name], callback))
    return found


def config_callback(attached: list[tuple[Tracker, Any]], config: dict[str, Any]) -> Any:
    """A TrainerCallback that records ``config`` in each tracker when training begins (after
    transformers' own callbacks, which come first in the handler, have started their runs)."""
    from transformers import TrainerCallback

    class TrackerConfigCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            for tracker, callback in attached:
                if tracker.log_config is not None:
                    tracker.log_config(callback, config)

    return TrackerConfigCallback()
