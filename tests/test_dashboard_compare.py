"""The dashboard's run comparison: the runs under the output folder listed, several ticked and
overlaid on one step axis with values on hover, a curriculum's stage boundaries, each method's
own charts. Real runs on the tiny model; a real Chromium clicks and hovers (tests/cdp.py)."""

from __future__ import annotations

import json
import threading

import pytest
from test_dashboard_truth import ARTIFACTS, CHROME_FLAGS, CHROMIUM, needs_chromium, request

from cdp import Chromium
from jobkit import REPO, job_values
from trainer.config import create_default_config
from trainer.core.engine import TrainerEngine
from trainer.dashboard.server import make_server
from trainer.dashboard.snapshot import Sources

PAIRS = REPO / "data" / "preferences_train.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, builtin_cache):
    """Three real runs in one output folder: two SFT runs at different learning rates, and a
    curriculum (SFT 4 steps, then DPO 4 steps on the bundled pairs)."""
    tmp = tmp_path_factory.mktemp("compare")
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("\n".join(PAIRS.read_text().splitlines()[:60]) + "\n")
    common = {"hyperparams.max_steps": 8, "hyperparams.logging_steps": 1, "inference.preview_every_steps": 0,
              "inference.num_probes": 2, "inference.max_new_tokens": 12, "output.save_steps": 100}
    for name, extra in (
        ("sft-fast", {"hyperparams.learning_rate": 3e-3}),
        ("sft-slow", {"hyperparams.learning_rate": 3e-4}),
        ("sft-then-dpo", {"stages": [{"method": "sft", "max_steps": 4},
                                     {"method": "dpo", "max_steps": 4, "dataset_path": [str(pairs)], "learning_rate": 5e-4}]}),
    ):
        config = create_default_config(overrides=job_values(tmp, builtin_cache, **common, **extra, **{"output.run_name": name}))
        TrainerEngine().run_job(config)
    return tmp


def _logged(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def dashboard(runs):
    files = Sources(runs / "status.json", runs / "daemon_status.json", runs / "outputs")
    httpd = make_server(files, port=0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_runs_route_lists_every_run_with_its_figures(dashboard, runs):
    listed = {r["name"]: r for r in json.loads(request(dashboard.server_port, "/api/runs")[2])}
    assert set(listed) == {"sft-fast", "sft-slow", "sft-then-dpo"}
    fast = listed["sft-fast"]
    assert (fast["method"], fast["profile"], fast["status"], fast["tone"]) == ("sft", "regime3", "completed", "ok")
    result = json.loads((runs / "outputs" / "sft-fast" / "result.json").read_text())["final_metrics"]
    assert fast["final"]["loss_end"] == result["loss_end"] and fast["started"]
    staged = listed["sft-then-dpo"]
    assert staged["method"] == "sft -> dpo" and [(s["method"], s["start"], s["steps"]) for s in staged["stages"]] == [
        ("sft", 0, 4), ("dpo", 4, 4)]
    assert isinstance(staged["final"]["rewards/margins"], float)


@pytest.mark.slow
def test_run_metrics_put_a_curriculum_on_one_step_axis(dashboard, runs):
    staged = json.loads(request(dashboard.server_port, "/api/run-metrics?name=sft-then-dpo")[2])
    folder = runs / "outputs" / "sft-then-dpo"
    sft, dpo = _logged(folder / "stage-1-sft"), _logged(folder / "stage-2-dpo")
    assert [p["step"] for p in staged["points"]] == [r["step"] for r in sft] + [r["step"] + 4 for r in dpo]
    assert [p["stage"] for p in staged["points"]] == [1] * len(sft) + [2] * len(dpo)
    assert staged["stages"] == [{"step": 0, "label": "stage 1 sft"}, {"step": 4, "label": "stage 2 dpo"}]
    plain = json.loads(request(dashboard.server_port, "/api/run-metrics?name=sft-fast")[2])
    assert [p["loss"] for p in plain["points"]] == [r["loss"] for r in _logged(runs / "outputs" / "sft-fast")]
    # only the runs listed: no other name, and never a path
    for bad in ("nope", "../sft-fast", "sft-fast/../sft-slow", "", "sft-fast&name=sft-slow"):
        assert request(dashboard.server_port, "/api/run-metrics?name=" + bad)[0] == 404, bad
    assert request(dashboard.server_port, "/api/run-metrics")[0] == 404


@pytest.mark.slow
@needs_chromium
def test_ticking_runs_overlays_them_with_values_on_hover(dashboard, runs, tmp_path):
    url = f"http://127.0.0.1:{dashboard.server_port}/"
    with Chromium(CHROMIUM, CHROME_FLAGS, tmp_path / "profile") as browser:
        page = browser.open(url)
        page.wait_for("document.querySelectorAll('#runs tr.run-row').length === 3")
        rows = page.js("[...document.querySelectorAll('#runs tr.run-row')].map(r => [...r.cells].slice(1).map(c => c.textContent))")
        by_name = {r[0]: r for r in rows}
        assert by_name["sft-then-dpo"][1] == "sft -> dpo (2 stages)" and by_name["sft-fast"][3] == "completed"
        assert by_name["sft-fast"][5] == "8" and by_name["sft-then-dpo"][5] == "8"
        assert page.js("document.getElementById('compare').hidden") is True

        # tick two runs with real clicks: their loss curves share one chart and one step axis
        page.click('input[data-run="sft-fast"]')
        page.click('input[data-run="sft-slow"]')
        page.wait_for("document.querySelectorAll('#compare-loss polyline').length === 2")
        assert page.js("location.hash") == "#compare=sft-fast,sft-slow"
        lines = page.js("[...document.querySelectorAll('#compare-loss polyline')].map(l => [l.dataset.label, +l.dataset.count])")
        assert sorted(lines) == [["sft-fast", 8], ["sft-slow", 8]]
        assert page.js("[...document.querySelectorAll('#compare-loss .x-tick')].map(t => t.textContent)")[::-1][0] == "8"

        # hover: the values of both runs at the step under the pointer, as logged
        page.scroll_to("#compare-loss")
        box = page.js("(() => { const r = document.querySelector('#compare-loss .hover-area').getBoundingClientRect();"
                      " return [r.left, r.top, r.width, r.height]; })()")
        page.hover(box[0] + box[2] * (4 - 1) / (8 - 1), box[1] + box[3] / 2)  # step 4 of 1..8
        hover = page.wait_for("document.querySelector('#compare-loss .hover') && "
                              "[...document.querySelectorAll('#compare-loss .hover text')].map(t => t.textContent)")
        fast = {r["step"]: r["loss"] for r in _logged(runs / "outputs" / "sft-fast")}
        slow = {r["step"]: r["loss"] for r in _logged(runs / "outputs" / "sft-slow")}
        assert hover[0] == "step 4"
        assert hover[1] == f"sft-fast: {float(f'{fast[4]:.4g}'):g}" and hover[2] == f"sft-slow: {float(f'{slow[4]:.4g}'):g}"

        # the curriculum: its stage boundary on the shared axis, and DPO's own charts join in
        page.click('input[data-run="sft-then-dpo"]')
        page.wait_for("document.querySelectorAll('#compare-loss polyline').length === 3")
        bounds = page.js("[...document.querySelectorAll('#compare-loss .bound')].map(b => +b.dataset.step)")
        assert bounds == [4]
        assert "sft-then-dpo: stage 2 dpo" in page.js("[...document.querySelectorAll('#compare-loss .bound-label')].map(t => t.textContent)")
        titles = page.js("[...document.querySelectorAll('#compare-charts h3')].map(h => h.textContent)")
        assert titles[:2] == ["loss", "learning_rate"] and {"rewards/margins", "rewards/accuracies"} <= set(titles)
        margins = page.js("[...document.querySelectorAll('#compare-rewards-margins polyline')].map(l => l.dataset.label)")
        assert margins == ["sft-then-dpo"]  # only the run that logged it

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard_compare.png"
        page.scroll_to("#compare-loss")
        box = page.js("(() => { const r = document.querySelector('#compare-loss .hover-area').getBoundingClientRect();"
                      " return [r.left, r.top, r.width, r.height]; })()")
        page.hover(box[0] + box[2] * (5 - 1) / (8 - 1), box[1] + box[3] / 2)  # values at step 5 in the picture
        page.wait_for("!!document.querySelector('#compare-loss .hover')")
        page.screenshot(shot)
        assert shot.stat().st_size > 20_000

        # a reload keeps the comparison (it lives in the address)
        again = browser.open(url + "#compare=sft-fast,sft-then-dpo")
        again.wait_for("document.querySelectorAll('#compare-loss polyline').length === 2")
        assert again.js("[...document.querySelectorAll('#runs input:checked')].map(i => i.dataset.run)") == ["sft-then-dpo", "sft-fast"] or \
            sorted(again.js("[...document.querySelectorAll('#runs input:checked')].map(i => i.dataset.run)")) == ["sft-fast", "sft-then-dpo"]


def test_the_live_run_shows_its_live_verdict_before_an_old_failed_result(tmp_path):
    from datetime import datetime, timezone

    run = tmp_path / "outputs" / "resumed"
    run.mkdir(parents=True)
    (run / "resolved_config.json").write_text(json.dumps({"config": {"method": {"name": "sft"}, "profile": {"name": "regime3"}}}))
    (run / "result.json").write_text(json.dumps({"status": "failed", "error_type": "TrainingDiverged"}))
    other = tmp_path / "outputs" / "diverged"
    other.mkdir()
    (other / "resolved_config.json").write_text((run / "resolved_config.json").read_text())
    (other / "result.json").write_text((run / "result.json").read_text())
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"phase": "training", "run_dir": str(run), "timestamp": datetime.now(timezone.utc).isoformat()}))
    listed = {r["name"]: r for r in Sources(status, tmp_path / "daemon.json", tmp_path / "outputs").runs()}
    assert (listed["resumed"]["status"], listed["resumed"]["tone"]) == ("running", "active")  # being resumed
    assert (listed["diverged"]["status"], listed["diverged"]["tone"]) == ("failed", "bad")
