"""The terminal view: the dashboard's essentials as text, redrawn in place, for headless servers."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from trainer.dashboard.snapshot import Sources
from trainer.monitoring.formatting import format_duration

SPARK = "▁▂▃▄▅▆▇█"


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


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "–"


def training_lines(s: dict[str, Any], metrics: list[dict[str, Any]], previews: list[dict[str, Any]]) -> list[str]:
    if "waiting" in s:
        return [f"training: waiting: {s['waiting']}"]
    lines = [
        f"run {s.get('run_name')}  phase {s.get('phase')}{'  (no heartbeat!)' if s.get('stale') else ''}  "
        f"model {s.get('model_name')}  profile {s.get('profile')}",
        f"{bar(s.get('progress') or 0)} step {s.get('current_step')}/{s.get('total_steps')}  "
        f"ETA {format_duration(s.get('eta_seconds'))}",
        f"loss {_num(s.get('loss'), '.4f')}  lr {_num(s.get('learning_rate'), '.2e')}  "
        f"tokens/s {_num(s.get('tokens_per_sec'), '.0f')}  format ok {_num(s.get('format_ok_percent'), '.0f')}%  "
        f"accuracy {_num(s.get('accuracy_percent'), '.0f')}%",
    ]
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), (int, float))]
    if losses:
        lines.append(f"loss curve {sparkline(losses)}  ({losses[0]:.3f} -> {losses[-1]:.3f})")
    for p in previews[-3:]:
        marks = f"format {'ok' if p.get('format_ok') else 'BAD'}, answer {'right' if p.get('matches') else 'wrong' if p.get('matches') is False else '?'}"
        output = " ".join(str(p.get("model_output", "")).split())[:100]
        lines.append(f"  step {p.get('step')}: {output!r} ({marks})")
    if s.get("error_message"):
        lines.append(f"ERROR {s.get('error_type')}: {s.get('error_message')}")
    return lines


def daemon_lines(d: dict[str, Any]) -> list[str]:
    if "waiting" in d:
        return [f"daemon: waiting: {d['waiting']}"]
    job = d.get("current_job")
    hero = d.get("hero") or {}
    lines = [
        f"daemon {d.get('state')}{' (no heartbeat!)' if d.get('stale') else ''}  hero v{hero.get('version', 0)}  "
        f"done {d.get('jobs_done', 0)}  failed {d.get('jobs_failed', 0)}",
        f"  job: {job['name']} attempt {job['attempt']} {job.get('phase') or ''}" if job else "  job: none",
        "  queue: " + (", ".join(f"{q['name']} ({q['priority']})" for q in d.get("queue", [])) or "empty"),
    ]
    for j in d.get("recent_jobs", [])[:3]:
        lines.append(f"  {j['name']}: {j['outcome']}" + (f" — {j['error']}" if j.get("error") else ""))
    return lines


def render(sources: Sources) -> str:
    lines = training_lines(sources.training(), sources.metrics(), sources.previews(limit=3))
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
