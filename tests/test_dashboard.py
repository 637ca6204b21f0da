"""Dashboards: HTTP routes and refusals, waiting states, terminal view, and a real browser."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from trainer.cli_main import main
from trainer.dashboard.server import STATIC, make_server
from trainer.dashboard.snapshot import Sources
from trainer.dashboard.terminal import render

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "trainer" / "cli_main.py"
BUNDLED = REPO / "data" / "arithmetic_train.jsonl"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture
def files(tmp_path):
    return Sources(tmp_path / "training_status.json", tmp_path / "daemon_status.json")


@pytest.fixture
def server(files):
    httpd = make_server(files, port=0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def get(server, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type") or "", body


def write_status(files: Sources, run_dir: Path, **fields) -> None:
    from core.training_status import TrainingStatus

    status = TrainingStatus(run_name="r", phase="training", run_dir=str(run_dir), current_step=3, total_steps=10, **fields)
    files.training_status.write_text(status.model_dump_json())


def test_page_and_assets_are_served_and_offline(server):
    for path, kind in (("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, content_type, body = get(server, path)
        assert status == 200 and content_type.startswith(kind)
    for asset in STATIC.iterdir():
        text = asset.read_text(encoding="utf-8")
        # the only absolute URL is the SVG namespace name, which is never fetched
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{asset.name} refers to {urls}: the page must work offline"
        assert "@import" not in text and "fonts." not in text


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/static/../server.py",
        "/static/..%2f..%2fserver.py",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/index.html",
        "/static/",
        "/api/",
        "/api/metrics/../../etc/passwd",
        "/snapshot.py",
        "//etc/passwd",
    ],
)
def test_anything_outside_the_routes_is_404(server, path):
    status, _, body = get(server, path)
    assert status == 404 and body == b"not found\n"


def test_read_only(server):
    for method in ("POST", "PUT", "DELETE"):
        assert get(server, "/api/training", method)[0] == 405


def test_missing_empty_and_half_written_files_are_waiting(server, files):
    assert json.loads(get(server, "/api/training")[2]) == {
        "waiting": f"{files.training_status} does not exist yet",
        "file": str(files.training_status),
        "view": {"state": "waiting", "tone": "neutral", "text": "waiting"},
    }
    files.training_status.write_text("")
    assert json.loads(get(server, "/api/training")[2])["waiting"] == f"{files.training_status} is empty"
    files.training_status.write_text('{"phase": "train')
    assert json.loads(get(server, "/api/training")[2])["waiting"] == f"{files.training_status} is being written"
    assert json.loads(get(server, "/api/daemon")[2]) == {
        "waiting": f"{files.daemon_status} does not exist yet",
        "view": {"state": "not running", "tone": "neutral", "text": "not running"},
    }
    assert json.loads(get(server, "/api/metrics")[2]) == []
    assert json.loads(get(server, "/api/previews")[2]) == []


def test_status_metrics_and_previews_of_the_named_run(server, files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_status(files, run, loss=1.5)
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 3.0, "learning_rate": 0.001, "entropy": 2}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo'
    )
    (run / "previews.jsonl").write_text(json.dumps({"step": 2, "prompt": "p", "model_output": "o", "format_ok": True}) + "\n")
    training = json.loads(get(server, "/api/training")[2])
    assert (training["phase"], training["current_step"], training["loss"], training["stale"]) == ("training", 3, 1.5, False)
    metrics = json.loads(get(server, "/api/metrics")[2])
    assert [(m["step"], m["loss"]) for m in metrics] == [(1, 3.0), (2, 2.0)]  # torn last line skipped
    assert metrics[0]["entropy"] == 2 and "entropy" not in metrics[1]  # a method's figure is kept, as logged
    assert json.loads(get(server, "/api/previews")[2])[0]["model_output"] == "o"


def test_old_heartbeat_is_flagged_stale(server, files, tmp_path):
    write_status(files, tmp_path, timestamp="2020-01-01T00:00:00+00:00")
    assert json.loads(get(server, "/api/training")[2])["stale"] is True


def test_daemon_job_status_is_followed(server, files, tmp_path):
    job_status = tmp_path / "job_status.json"
    files.daemon_status.write_text(json.dumps({
        "state": "training",
        "current_job": {"id": "j", "name": "d.jsonl", "attempt": 1, "started_at": "", "status_file": str(job_status), "log_file": ""},
    }))
    job_status.write_text(json.dumps({"phase": "training", "run_name": "daemon-job"}))
    assert json.loads(get(server, "/api/training")[2])["run_name"] == "daemon-job"


def test_terminal_view(files, tmp_path):
    assert render(files).splitlines() == [
        f"training: waiting: {files.training_status} does not exist yet",
        "",
        f"daemon: not running: {files.daemon_status} does not exist yet",
    ]
    run = tmp_path / "run"
    run.mkdir()
    write_status(files, run, loss=1.25, eta_seconds=75, progress=0.3, error_type="ValueError", error_message="bad")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 1.0}\n')
    screen = render(files)
    assert "[#########.....................] step 3/10  ETA 1:15" in screen
    assert "loss curve █▁  (3.000 -> 1.000)" in screen
    assert "ERROR ValueError: bad" in screen


def test_watch_action_once(tmp_path, capsys):
    status = tmp_path / "s.json"
    assert main(["watch", "--once", "--set", f"system.status_file={status}", "--set", f"daemon.status_file={tmp_path / 'd.json'}"]) == 0
    assert f"training: waiting: {status} does not exist yet" in capsys.readouterr().out


class _Dom(HTMLParser):
    """Text and attributes by element id, from Chromium's --dump-dom."""

    def __init__(self):
        super().__init__()
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.polylines: list[dict[str, str]] = []
        self.preview_rows = 0
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.attrs[attrs["id"]] = attrs
            self.text.setdefault(attrs["id"], "")
            self._open.append(attrs["id"])
        else:
            self._open.append("")
        if tag == "polyline":
            self.polylines.append(attrs)
        if tag == "tr" and attrs.get("class") == "preview":
            self.preview_rows += 1

    def handle_endtag(self, tag):
        if self._open and tag not in ("polyline", "br", "meta", "link"):
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text[ident] += data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chrome-{time.monotonic_ns()}"
    return subprocess.run(
        [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_page_in_a_real_browser_during_a_real_run(tmp_path, builtin_cache):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(BUNDLED.read_text().splitlines()[:400]) + "\n")
    status = tmp_path / "status.json"
    run = subprocess.Popen(
        [
            sys.executable, str(CLI), "--dataset", str(data), "--max-steps", "400",
            "--output-dir", str(tmp_path / "outputs"), "--run-name", "watched",
            "--set", f"system.status_file={status}", "--set", f"model.builtin_cache={builtin_cache}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "hyperparams.logging_steps=2",
            "--set", "inference.preview_every_steps=10", "--set", "inference.num_probes=2",
            "--set", "inference.max_new_tokens=48",
        ],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    files = Sources(status, tmp_path / "daemon_status.json")
    httpd = make_server(files, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}/"
    try:
        deadline = time.monotonic() + 240
        while True:  # until the run has logged a few steps and written its first preview
            assert run.poll() is None, run.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run did not get going"
            try:
                s = json.loads(status.read_text())
                if s.get("total_evals", 0) >= 1 and s.get("current_step", 0) >= 12:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.5)

        page = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", url)
        assert page.returncode == 0, page.stderr[-2000:]
        dom = _Dom()
        dom.feed(page.stdout)
        assert dom.text["phase"].strip() in ("training", "evaluating")
        assert "hidden" in dom.attrs["stale"]  # a live run has a fresh heartbeat
        done, total = (int(x) for x in dom.text["step"].split("/"))
        assert total == 400 and 12 <= done < 400
        assert 0 < float(dom.attrs["progress"]["value"]) < 1
        assert "active" in dom.attrs["progress"]["class"]  # the running colour, not failed or stale
        assert re.fullmatch(r"\d+:\d\d", dom.text["eta"].strip())
        loss_lines = [p for p in dom.polylines if p.get("data-key") in ("loss", "learning_rate") and int(p.get("data-count", 0)) >= 3]
        assert len(loss_lines) == 2  # loss and learning-rate curves, from metrics.jsonl
        charted = {p.get("data-key") for p in dom.polylines}  # and SFT's own figures, no preference ones
        assert {"mean_token_accuracy", "entropy"} <= charted and not any(k.startswith(("rewards/", "logps/")) for k in charted)
        assert len(loss_lines[0]["points"].split()) >= 3
        assert dom.preview_rows >= 1
        assert dom.text["daemon-waiting"].startswith("not running:")  # no daemon status file
        assert dom.text["daemon-state"] == "not running"

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        picture = chromium(tmp_path, "--virtual-time-budget=10000", "--window-size=1280,1500", f"--screenshot={shot}", url)
        assert picture.returncode == 0 and shot.stat().st_size > 20_000
    finally:
        run.terminate()
        run.wait(timeout=120)
        httpd.shutdown()
        httpd.server_close()


def test_nan_and_torn_utf8_keep_the_page_working(server, files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_status(files, run, loss=float("nan"))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": NaN}\n')
    preview = json.dumps({"step": 1, "model_output": "🤔🤔🤔🤔 hm"}, ensure_ascii=False).encode()
    (run / "previews.jsonl").write_bytes(preview + b"\n" + preview[:20])  # cut inside an emoji
    training = json.loads(get(server, "/api/training")[2])
    assert training["loss"] is None
    # a bare NaN token is read, and reaches the page spelled as text, never as a number
    assert json.loads(get(server, "/api/metrics")[2]) == [{"step": 1, "loss": "NaN", "learning_rate": None, "grad_norm": None, "tokens_per_sec": None, "epoch": None}]
    assert [p["model_output"] for p in json.loads(get(server, "/api/previews")[2])] == ["🤔🤔🤔🤔 hm"]
    files.training_status.write_bytes('{"phase": "🤔'.encode()[:-1])
    assert json.loads(get(server, "/api/training")[2])["waiting"] == f"{files.training_status} is being written"


def test_odd_field_types_do_not_break_the_snapshot(server, files):
    files.training_status.write_text(json.dumps({"phase": "training", "timestamp": 5, "heartbeat_interval_s": "x", "run_dir": 3}))
    training = json.loads(get(server, "/api/training")[2])
    assert training["stale"] is False and training["age_seconds"] is None
    assert json.loads(get(server, "/api/metrics")[2]) == []
