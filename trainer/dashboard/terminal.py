"""The terminal view: the dashboard's essentials as text, redrawn in place, for headless servers.

It renders the snapshots' ``view`` verdicts (see :mod:`trainer.dashboard.snapshot`): a failed,
stale or stopped run gets no ETA, and a failed one no progress bar.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from trainer.dashboard.snapshot import NotServed, Sources, spell_non_finite
from trainer.monitoring.formatting import format_duration

SPARK = "▁▂▃▄▅▆▇█"
NON_FINITE = ("NaN", "Infinity", "-Infinity")  # how snapshots spell non-finite numbers
FIGURES_SHOWN = 5  # method figures on the terminal's one line
# The headline figures of the preference methods, shown first when a method logs them.
FIGURES_FIRST = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "kl", "log_odds_ratio")


def sparkline(values: list[float], width: int = 40) -> str:
    if not values:
        return ""
    values = values[-width:]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1)))] for v in values)


def bar(fraction: float, width: int = 30) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any, spec: str) -> str:
    """A number in ``spec``; a non-finite one by its name (``NaN``), never as 0; else ``–``."""
    value = spell_non_finite(value)
    if _finite(value):
        return format(value, spec)
    return value if value in NON_FINITE else "–"


def _progress_line(s: dict[str, Any]) -> str:
    view = s.get("view") or {}
    steps = f"step {s.get('current_step')}/{s.get('total_steps')}"
    if view.get("state") == "failed":
        return f"FAILED at {steps} ({s.get('error_type') or 'no error type recorded'})"  # no bar
    filled = bar(s["progress"] if _finite(s.get("progress")) else 0.0)
    if view.get("state") == "running":
        return f"{filled} {steps}  ETA {format_duration(s.get('eta_seconds'))}"
    shout = view.get("state") == "stale"
    return f"{filled} {steps}  {view.get('text', '').upper() if shout else view.get('text', '')}"


def _method_words(s: dict[str, Any]) -> str:
    """``  method dpo  stage 2/2``: the method, and in a curriculum the running stage of how many."""
    words = f"  method {s['method']}" if isinstance(s.get("method"), str) and s["method"] else ""
    stage, count = s.get("stage"), s.get("stage_count")
    if isinstance(stage, int) and not isinstance(stage, bool):
        words += f"  stage {stage}/{count if isinstance(count, int) and not isinstance(count, bool) else '?'}"
    return words


def _figures_line(method: Any, figures: Any) -> str:
    """``dpo figures: rewards/margins 1.03  ...``: the method's latest figures on one line, the
    headline ones first; "" when there are none."""
    if not isinstance(figures, dict) or not figures:
        return ""
    names = [k for k in FIGURES_FIRST if k in figures] + [k for k in figures if k not in FIGURES_FIRST]
    shown = "  ".join(f"{k} {_num(figures[k], '.4g')}" for k in names[:FIGURES_SHOWN])
    more = len(names) - FIGURES_SHOWN
    label = f"{method} figures" if isinstance(method, str) and method else "figures"
    return f"{label}: {shown}" + (f"  (+{more} more)" if more > 0 else "")


def training_lines(s: dict[str, Any], metrics: list[dict[str, Any]], previews: list[dict[str, Any]]) -> list[str]:
    if "waiting" in s:
        return [f"training: waiting: {s['waiting']}"]
    lines = [
        f"run {s.get('run_name')}  phase {s.get('phase')}{_method_words(s)}  model {s.get('model_name')}  profile {s.get('profile')}",
        _progress_line(s),
        (
            f"loss {_num(s.get('loss'), '.4f')}  lr {_num(s.get('learning_rate'), '.2e')}  "
            f"tokens/s {_num(s.get('tokens_per_sec'), '.0f')}  format ok {_num(s.get('format_ok_percent'), '.0f')}%  "
            f"accuracy {_num(s.get('accuracy_percent'), '.0f')}%"
        ),
    ]
    figures = _figures_line(s.get("method"), s.get("method_metrics"))
    if figures:
        lines.append(figures)
    won = (s.get("win_rates") or [None])[-1]
    if isinstance(won, dict) and _finite(won.get("win_rate")):
        lines.append(f"win rate over the starting model {100 * won['win_rate']:.0f}% at step {won.get('step')} "
                     f"({won.get('wins')} won, {won.get('ties')} tied, {won.get('losses')} lost)")
    losses = [m["loss"] for m in metrics if _finite(m.get("loss"))]
    if losses:
        lines.append(f"loss curve {sparkline(losses)}  ({losses[0]:.3f} -> {losses[-1]:.3f})")
    broken = [str(m.get("step")) for m in metrics if spell_non_finite(m.get("loss")) in NON_FINITE]
    if broken:
        lines.append(f"loss not finite at step {', '.join(broken[:5])}{' ...' if len(broken) > 5 else ''}")
    for p in previews[-3:]:
        marks = f"format {'ok' if p.get('format_ok') else 'BAD'}, answer {'right' if p.get('matches') else 'wrong' if p.get('matches') is False else '?'}"
        output = " ".join(str(p.get("model_output", "")).split())[:100]
        lines.append(f"  step {p.get('step')}: {output!r} ({marks})")
    if s.get("error_message") or s.get("error_type"):
        lines.append(f"ERROR {s.get('error_type')}: {s.get('error_message')}")
    return lines


def _job_line(d: dict[str, Any]) -> str:
    job, last = d.get("current_job"), d.get("last_job")
    if isinstance(job, dict):
        return f"  job: {job.get('name')} attempt {job.get('attempt')} {job.get('phase') or ''}"
    if isinstance(last, dict):  # the snapshot moves a dead daemon's job here: history, not work
        return f"  job: none running (last reported: {last.get('name')}, attempt {last.get('attempt')}, {last.get('phase') or 'starting'})"
    return "  job: none"


def daemon_lines(d: dict[str, Any]) -> list[str]:
    view = d.get("view") or {}
    if "waiting" in d:
        return [f"daemon: {view.get('text', 'waiting')}: {d['waiting']}"]
    hero = d.get("hero") or {}
    state = d.get("state") if view.get("state") == "running" else str(view.get("text")).upper()
    lines = [
        f"daemon {state}  hero v{hero.get('version', 0)}  done {d.get('jobs_done', 0)}  failed {d.get('jobs_failed', 0)}",
        _job_line(d),
        "  queue: " + (", ".join(f"{q.get('name')} ({q.get('priority')})" for q in d.get("queue", [])) or "empty"),
    ]
    for j in d.get("recent_jobs", [])[:3]:
        lines.append(f"  {j.get('name')}: {j.get('outcome')}" + (f" — {j['error']}" if j.get("error") else ""))
    return lines


def _read_run_file(read: Callable[[], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        return read(), []
    except NotServed as exc:
        return [], [f"not read: {exc}"]


def render(sources: Sources) -> str:
    metrics, refused = _read_run_file(sources.metrics)
    previews, refused_too = _read_run_file(lambda: sources.previews(limit=3))
    lines = training_lines(sources.training(), metrics, previews) + refused + refused_too
    return "\n".join([*lines, "", *daemon_lines(sources.daemon())]) + "\n"


def watch(sources: Sources, interval: float = 2.0, once: bool = False, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    try:
        while True:
            screen = render(sources)
            if once:
                stream.write(screen)
                return 0
            stream.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S  (Ctrl-C to leave)\n") + screen)
            stream.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
