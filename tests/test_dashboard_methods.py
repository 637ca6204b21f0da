"""The dashboards show the training method truthfully: its name, the curriculum stage, its own
figures (a table of the latest ones) and charts of them, only for the figures a run really logs.

Through the real HTTP server on 127.0.0.1 and, where Debian's chromium is installed, the page
in a real browser (the same --dump-dom approach as tests/test_dashboard_truth.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dashboard_truth import (
    ARTIFACTS,
    Dom,
    browse,
    needs_chromium,
    request,
    start,
    strict_json,
)

from core.training_status import JsonlLog, TrainingStatusWriter
from trainer.dashboard.snapshot import Sources, metric_point
from trainer.dashboard.terminal import render

# What TRL's DPOTrainer logs per step beside the common keys (values of a run that learns).
DPO_FIGURES = {
    "rewards/chosen": 0.42, "rewards/rejected": -0.61, "rewards/margins": 1.03, "rewards/accuracies": 0.8125,
    "logps/chosen": -41.5, "logps/rejected": -58.25, "logits/chosen": -1.9, "logits/rejected": -2.2,
}


@pytest.fixture
def files(tmp_path):
    return Sources(tmp_path / "training_status.json", tmp_path / "daemon_status.json")


@pytest.fixture
def server(files):
    httpd = start(files)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def api(server, path: str):
    status, kind, body = request(server.server_port, path)
    assert status == 200 and kind == "application/json", (status, body)
    return strict_json(body)


def dpo_step(step: int) -> dict:
    """One DPO log line: the figures drift as training goes (chosen up, rejected down)."""
    t = step / 10
    return {
        "step": step, "loss": 0.69 - 0.2 * t, "learning_rate": 5e-6 * (1 - t / 2), "grad_norm": 3.0, "epoch": t / 2,
        "num_tokens": 512.0 * step, "tokens_per_sec": 300.0,
        "rewards/chosen": 0.05 * step, "rewards/rejected": -0.07 * step, "rewards/margins": 0.12 * step,
        "rewards/accuracies": min(1.0, 0.4 + 0.06 * step), "logps/chosen": -45 + step, "logps/rejected": -50 - step,
        "logits/chosen": -2.0 + 0.01 * step, "logits/rejected": -2.1, "method": "dpo", "stage": 2, "stage_count": 2,
    }


def write_dpo_stage(files: Sources, job: Path, figures: dict | None = None) -> Path:
    """Stage 2 of 2 of a curriculum (sft, then dpo), running: status and its stage's metrics."""
    run = job / "stage-2-dpo"
    run.mkdir(parents=True)
    writer = TrainingStatusWriter(files.training_status, run_name="stage-2-dpo", run_dir=str(run), model_name="tiny",
                                  method="dpo", stage=2, stage_count=2)
    writer.update(phase="training", current_step=10, total_steps=20, progress=0.5, eta_seconds=30.0, loss=0.49,
                  method_metrics=DPO_FIGURES if figures is None else figures)
    log = JsonlLog(run / "metrics.jsonl")  # as the engine writes it (time first, NaN as null)
    for step in range(1, 11):
        log.append(dpo_step(step))
    return run


def write_sft(files: Sources, run: Path) -> None:
    run.mkdir(parents=True)
    writer = TrainingStatusWriter(files.training_status, run_name="sft-run", run_dir=str(run), model_name="tiny")
    writer.update(phase="training", current_step=4, total_steps=8, progress=0.5, loss=1.4,
                  method_metrics={"mean_token_accuracy": 0.61, "entropy": 1.9})
    log = JsonlLog(run / "metrics.jsonl")
    for step in range(1, 5):
        log.append({"step": step, "loss": 2.0 - 0.1 * step, "learning_rate": 1e-4, "grad_norm": 1.0, "epoch": 0.1 * step,
                    "num_tokens": 100.0 * step, "mean_token_accuracy": 0.5 + 0.03 * step, "entropy": 2.2 - 0.1 * step})


# --- the JSON routes ----------------------------------------------------------------------------


def test_training_route_names_the_method_the_stage_and_its_figures(server, files, tmp_path):
    write_dpo_stage(files, tmp_path / "job")
    training = api(server, "/api/training")
    assert (training["method"], training["stage"], training["stage_count"]) == ("dpo", 2, 2)
    assert training["method_metrics"] == DPO_FIGURES
    assert training["run_dir"].endswith("stage-2-dpo")  # the running stage's own folder


def test_metrics_route_keeps_the_method_figures_and_spells_nan(server, files, tmp_path):
    run = write_dpo_stage(files, tmp_path / "job")
    with (run / "metrics.jsonl").open("a") as handle:  # an older writer's bare NaN token
        handle.write(json.dumps({**dpo_step(11), "rewards/margins": float("nan"), "rewards/chosen": float("inf")}) + "\n")
    metrics = api(server, "/api/metrics")
    assert [m["step"] for m in metrics] == list(range(1, 12))
    for key, value in dpo_step(3).items():
        assert metrics[2][key] == pytest.approx(value) if isinstance(value, float) else metrics[2][key] == value, key
    assert (metrics[-1]["rewards/margins"], metrics[-1]["rewards/chosen"]) == ("NaN", "Infinity")  # text, never 0
    assert "time" not in metrics[0]  # text is no figure to chart


def test_metric_points_keep_unknown_numbers_and_drop_what_is_not_a_figure():
    point = metric_point({"step": 1, "kl": 0.3, "log_odds_ratio": -0.7, "count": 4, "odd": None, "flag": True,
                          "time": "2025-01-01T00:00:00", "nonfinite": ["entropy"], "entropy": None, "method": "kto"})
    assert point == {"step": 1, "loss": None, "learning_rate": None, "grad_norm": None, "tokens_per_sec": None,
                     "epoch": None, "kl": 0.3, "log_odds_ratio": -0.7, "count": 4, "odd": None, "entropy": None,
                     "method": "kto"}
    assert len(metric_point({"step": 1, **{f"k{i}": i for i in range(500)}})) == 64  # one odd line stays small


# --- the terminal view ----------------------------------------------------------------------------


def test_terminal_view_names_the_method_the_stage_and_the_figures(files, tmp_path):
    write_dpo_stage(files, tmp_path / "job")
    screen = render(files)
    first, progress, _, figures = screen.splitlines()[:4]
    assert first.startswith("run stage-2-dpo  phase training  method dpo  stage 2/2  model tiny")
    assert progress.startswith("[###############...............] step 10/20  ETA")
    assert figures == ("dpo figures: rewards/margins 1.03  rewards/accuracies 0.8125  rewards/chosen 0.42  "
                       "rewards/rejected -0.61  logps/chosen -41.5  (+3 more)")


def test_terminal_view_shows_a_figure_that_is_not_finite_as_text(files, tmp_path):
    write_dpo_stage(files, tmp_path / "job", figures={"rewards/margins": float("nan"), "rewards/accuracies": 0.5})
    data = json.loads(files.training_status.read_text())  # the writer stores NaN as null ...
    assert data["method_metrics"]["rewards/margins"] is None
    assert "dpo figures: rewards/margins –  rewards/accuracies 0.5" in render(files)
    data["method_metrics"]["rewards/margins"] = float("nan")  # ... an older one as a bare NaN
    files.training_status.write_text(json.dumps(data))
    screen = render(files)
    assert "dpo figures: rewards/margins NaN  rewards/accuracies 0.5" in screen and "margins 0 " not in screen


def test_terminal_view_of_a_single_run_has_no_stage(files, tmp_path):
    write_sft(files, tmp_path / "run")
    first, _, _, figures = render(files).splitlines()[:4]
    assert "method sft  model tiny" in first and "stage" not in first
    assert figures == "sft figures: mean_token_accuracy 0.61  entropy 1.9"


# --- the page, in a real browser ------------------------------------------------------------------


def chart_elements(dom: Dom, ident: str, tag: str) -> list[dict]:
    """Elements of ``tag`` inside the chart ``ident`` (up to the next chart)."""
    start = dom.elements.index(dom.id(ident))
    found = []
    for e in dom.elements[start + 1:]:
        if e["tag"] == "svg":
            break
        if e["tag"] == tag:
            found.append(e)
    return found


def chart_ids(dom: Dom) -> list[str]:
    return [e["attrs"]["id"] for e in dom.elements if e["tag"] == "svg" and "chart" in e["attrs"].get("class", "")]


@needs_chromium
def test_page_shows_the_method_the_stage_its_figures_and_their_charts(server, files, tmp_path):
    run = write_dpo_stage(files, tmp_path / "job", figures={**DPO_FIGURES, "rewards/margins": float("nan")})
    with (run / "metrics.jsonl").open("a") as handle:  # step 11: the margin diverged (an older writer's NaN)
        handle.write(json.dumps({**dpo_step(11), "rewards/margins": float("nan")}) + "\n")
    url = f"http://127.0.0.1:{server.server_port}/"
    dom = browse(tmp_path, url)
    assert dom.id("method")["text"] == "dpo" and "hidden" not in dom.id("method")["attrs"]
    assert dom.id("stage-of")["text"] == "stage 2 of 2" and "hidden" not in dom.id("stage-of")["attrs"]
    assert dom.id("figures-title")["text"] == "dpo figures, latest"
    table = dom.elements[dom.elements.index(dom.id("figures")):dom.elements.index(dom.id("data"))]
    cells = [e["text"] for e in table if e["tag"] == "td"]
    assert dict(zip(cells[::2], cells[1::2])) == {
        "rewards/chosen": "0.42", "rewards/rejected": "-0.61", "rewards/margins": "–",  # NaN: no value, not 0
        "rewards/accuracies": "0.8125", "logps/chosen": "-41.5", "logps/rejected": "-58.25",
        "logits/chosen": "-1.9", "logits/rejected": "-2.2"}

    # one chart per group: chosen beside rejected, margins with accuracies, then the others
    assert chart_ids(dom) == ["loss-chart", "lr-chart", "rewards-chart", "margins-chart", "logps-chart",
                              "figure-chart-logits"]
    rewards = chart_elements(dom, "rewards-chart", "polyline")
    assert [(p["attrs"]["data-key"], p["attrs"]["data-count"]) for p in rewards] == [
        ("rewards/chosen", "11"), ("rewards/rejected", "11")]
    assert [e["text"] for e in dom.inside("rewards-chart", "legend-label")] == ["rewards/chosen", "rewards/rejected"]
    assert [e["text"] for e in dom.inside("rewards-chart", "axis-label")] == ["step"]
    steps = [int(e["text"]) for e in dom.inside("rewards-chart", "x-tick")]
    assert steps[0] == 1 and steps[-1] == 11 and steps == sorted(steps)
    assert [e["text"] for e in dom.inside("rewards-chart", "y-tick")] == ["-0.77", "-0.11", "0.55"]
    # accuracies on their own 0..1 axis at the right, margins on the left
    assert [e["text"] for e in dom.inside("margins-chart", "legend-label")] == [
        "rewards/margins", "rewards/accuracies (right axis)"]
    assert [e["text"] for e in dom.inside("margins-chart", "y2-tick")] == ["0.00", "0.50", "1.00"]
    assert [e["text"] for e in dom.inside("margins-chart", "y-tick")] == ["0.12", "0.66", "1.20"]  # NaN is not 0
    assert [e["text"] for e in dom.inside("margins-chart", "nan-label")] == ["rewards/margins NaN at step 11"]
    margins = {p["attrs"]["data-key"]: p["attrs"]["data-count"] for p in chart_elements(dom, "margins-chart", "polyline")}
    assert margins == {"rewards/margins": "10", "rewards/accuracies": "11"}
    assert [p["attrs"]["data-key"] for p in chart_elements(dom, "logps-chart", "polyline")] == ["logps/chosen", "logps/rejected"]
    assert all(e["text"].strip() == "stage 2 of 2 · dpo" for e in dom.elements if "scope" in e["attrs"].get("class", ""))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard-dpo.png"
    shot.unlink(missing_ok=True)
    browse(tmp_path, url, screenshot=shot)
    assert shot.stat().st_size > 20_000


@needs_chromium
def test_page_of_an_sft_run_shows_no_preference_charts(server, files, tmp_path):
    write_sft(files, tmp_path / "run")
    dom = browse(tmp_path, f"http://127.0.0.1:{server.server_port}/")
    assert dom.id("method")["text"] == "sft" and "hidden" in dom.id("stage-of")["attrs"]
    assert chart_ids(dom) == ["loss-chart", "lr-chart", "figure-chart-mean-token-accuracy", "figure-chart-entropy"]
    assert [p["attrs"]["data-key"] for p in chart_elements(dom, "figure-chart-entropy", "polyline")] == ["entropy"]
    assert not dom.inside("figure-chart-entropy", "legend-label")  # one line needs no legend
    assert "hidden" in dom.id("charts-left-out")["attrs"]


def write_grpo_run(files: Sources, run: Path) -> None:
    """A GRPO run: reward figures per step and the latest sampled completions with rewards."""
    run.mkdir(parents=True)
    writer = TrainingStatusWriter(files.training_status, run_name="grpo-run", run_dir=str(run), model_name="tiny", method="grpo")
    samples = [
        {"step": 4, "prompt": "Ann has 2 pens. How many?", "completion": "Step 1: 2 pens.\nAnswer: 2", "reward": 1.0,
         "rewards": {"format": 1.0, "answer": 1.0}},
        {"step": 4, "prompt": "Ann has 2 pens. How many?", "completion": "two", "reward": 0.0, "rewards": {"format": 0.0, "answer": 0.0}},
    ]
    writer.update(phase="training", current_step=4, total_steps=8, progress=0.5, loss=0.01,
                  method_metrics={"reward": 0.5, "rewards/format/mean": 0.5, "kl": 0.02}, rl_samples=samples)
    log = JsonlLog(run / "metrics.jsonl")
    for step in range(1, 5):
        log.append({"step": step, "loss": 0.01, "learning_rate": 1e-4, "grad_norm": 1.0, "reward": 0.1 * step,
                    "reward_std": 0.3, "rewards/format/mean": 0.2 * step, "rewards/format/std": 0.4,
                    "rewards/answer/mean": 0.05 * step, "rewards/answer/std": 0.2, "kl": 0.01 * step, "entropy": 1.5,
                    "completions/mean_length": 30.0, "samples": samples})


@needs_chromium
def test_page_charts_an_rl_runs_reward_and_shows_its_sampled_completions(server, files, tmp_path):
    write_grpo_run(files, tmp_path / "run")
    dom = browse(tmp_path, f"http://127.0.0.1:{server.server_port}/")
    assert chart_ids(dom)[:4] == ["loss-chart", "lr-chart", "rl-reward-chart", "rl-kl-chart"]
    lines = chart_elements(dom, "rl-reward-chart", "polyline")
    assert [p["attrs"]["data-key"] for p in lines] == ["reward", "rewards/format/mean", "rewards/answer/mean"]
    assert "figure-chart-rewards-format-std" not in chart_ids(dom)  # the spreads stay in the table
    assert "hidden" not in dom.id("samples")["attrs"]
    table = dom.elements[dom.elements.index(dom.id("samples")):dom.elements.index(dom.id("data"))]
    cells = [e["text"] for e in table if e["tag"] == "td"]
    assert cells == ["Ann has 2 pens. How many?", "Step 1: 2 pens.\nAnswer: 2", "1", "Ann has 2 pens. How many?", "two", "0"]


@needs_chromium
def test_page_shows_the_win_rate_and_charts_it(server, files, tmp_path):
    run = tmp_path / "run"
    write_sft(files, run)
    dom = browse(tmp_path, f"http://127.0.0.1:{server.server_port}/")
    assert "hidden" in dom.id("win-rate-item")["attrs"]  # not measured: not shown
    TrainingStatusWriter(files.training_status, run_name="sft-run", run_dir=str(run)).update(
        phase="training", current_step=4, total_steps=8, win_rate=0.625,
        win_rates=[{"step": 2, "win_rate": 0.5, "wins": 1, "ties": 2, "losses": 1},
                   {"step": 4, "win_rate": 0.625, "wins": 2, "ties": 1, "losses": 1}])
    log = JsonlLog(run / "metrics.jsonl")
    for step, rate in ((2, 0.5), (4, 0.625)):
        log.append({"step": step, "win_rate": rate})
    dom = browse(tmp_path, f"http://127.0.0.1:{server.server_port}/")
    assert "hidden" not in dom.id("win-rate-item")["attrs"]
    assert dom.id("win-rate")["text"] == "63% at step 4 (2 won, 1 tied, 1 lost)"
    assert "figure-chart-win-rate" in chart_ids(dom)
    points = chart_elements(dom, "figure-chart-win-rate", "polyline")
    assert [p["attrs"]["data-key"] for p in points] == ["win_rate"]


def test_terminal_view_shows_the_win_rate(files, tmp_path):
    run = tmp_path / "run"
    write_sft(files, run)
    TrainingStatusWriter(files.training_status, run_name="sft-run", run_dir=str(run)).update(
        phase="training", win_rates=[{"step": 4, "win_rate": 0.625, "wins": 2, "ties": 1, "losses": 1}])
    assert "win rate over the starting model 62% at step 4 (2 won, 1 tied, 1 lost)" in render(files)
