"""The dashboard cannot be read by other sites, and shows what is true.

Through the real HTTP server as a user meets it: foreign Host headers, symlinks out of the run
folder, a lost heartbeat, a diverged run with NaN in its files, a daemon that is not running, and
the page's charts and previews in a real browser (Debian's chromium, skipped when missing).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from core.training_status import TrainingStatusWriter
from trainer.dashboard.server import STATIC, allowed_host_names, make_server
from trainer.dashboard.snapshot import Sources
from trainer.dashboard.terminal import render

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
ROUTES = ("/", "/static/app.js", "/api/training", "/api/daemon", "/api/metrics", "/api/previews")


class TrainingDiverged(RuntimeError):
    """Stands in for the engine's error of the same name (only its name reaches the file)."""


@pytest.fixture
def files(tmp_path):
    return Sources(tmp_path / "training_status.json", tmp_path / "daemon_status.json")


def start(files: Sources, host: str = "127.0.0.1"):
    httpd = make_server(files, host=host, port=0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


@pytest.fixture
def server(files):
    httpd = start(files)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def request(port: int, path: str, host: str | None | list[str] = "default", address: str = "127.0.0.1"):
    """(status, content type, body) of a GET whose Host header we choose (None: no Host)."""
    conn = http.client.HTTPConnection(address, port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    hosts = [f"127.0.0.1:{port}"] if host == "default" else [] if host is None else [host] if isinstance(host, str) else host
    for value in hosts:
        conn.putheader("Host", value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type") or "", body


def strict_json(body: bytes):
    """JSON as a browser's JSON.parse reads it: bare NaN / Infinity are errors."""
    def refuse(token):
        raise AssertionError(f"bare {token} in the JSON: the page's JSON.parse would reject it")

    return json.loads(body, parse_constant=refuse)


def api(server, path: str):
    status, kind, body = request(server.server_port, path)
    assert status == 200 and kind == "application/json", (status, body)
    return strict_json(body)


def iso_ago(seconds: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat()


def write_run(files: Sources, run: Path, **fields) -> TrainingStatusWriter:
    run.mkdir(parents=True, exist_ok=True)
    writer = TrainingStatusWriter(files.training_status, run_name="truth", run_dir=str(run), model_name="tiny")
    writer.update(phase="training", current_step=3, total_steps=10, progress=0.3, eta_seconds=75.0, loss=1.25, **fields)
    return writer


def age_status_file(path: Path, seconds: float) -> None:
    """Make a status file look as if its writer stopped ``seconds`` ago."""
    data = json.loads(path.read_text())
    data["timestamp"] = iso_ago(seconds)
    path.write_text(json.dumps(data))


def write_diverged(files: Sources, run: Path) -> None:
    """A diverged run: phase failed, TrainingDiverged, loss null; metrics with bare NaN tokens."""
    writer = write_run(files, run)
    writer.update(loss=None)
    writer.fail(TrainingDiverged("the loss became NaN at step 3"), "Traceback (most recent call last):\n  ...\nTrainingDiverged: the loss became NaN at step 3")
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 3.0, "learning_rate": 0.001}\n'
        '{"step": 2, "loss": 2.5, "learning_rate": 0.0009}\n'
        "this line is broken\n"
        '{"step": 3, "loss": NaN, "learning_rate": 0.0008, "grad_norm": Infinity}\n'
        '{"step": 4, "loss": -Infinity, "learning_rate": null}\n'
    )


def write_daemon(files: Sources, job_status: Path, **fields) -> None:
    data = {
        "state": "training", "pid": 1, "queue_dir": "q", "timestamp": iso_ago(0), "heartbeat_interval_s": 5.0,
        "current_job": {"id": "j1", "name": "old.jsonl", "attempt": 1, "started_at": "", "status_file": str(job_status),
                        "log_file": "", "phase": "training", "current_step": 4, "total_steps": 9},
        "queue": [], "recent_jobs": [], "hero": {"version": 2, "path": "/hero/v0002"}, "hero_history": [],
        "jobs_done": 1, "jobs_failed": 0,
    }
    data.update(fields)
    files.daemon_status.write_text(json.dumps(data))


# --- other sites cannot read it (DNS rebinding) ------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "localhost:{other}", "127.0.0.1:{other}",
     "127.0.0.1", "10.1.2.3:{port}", "127.0.0.1:{port}@evil.example", "", None, ["127.0.0.1:{port}", "evil.example:{port}"]],
)
def test_a_foreign_or_missing_host_header_is_refused(server, host):
    port = server.server_port

    def fill(value):
        return value.format(port=port, other=port + 1 if port < 65535 else port - 1)

    host = None if host is None else [fill(h) for h in host] if isinstance(host, list) else fill(host)
    for path in ROUTES:
        status, kind, body = request(port, path, host=host)
        assert (status, kind) == (403, "text/plain; charset=utf-8"), (path, host, status)
        assert body == b"refused: the Host header does not name this dashboard\n"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_loopback_names_of_the_server_are_answered(server, host):
    for path in ROUTES:
        assert request(server.server_port, path, host=host.format(port=server.server_port))[0] == 200


def test_a_wildcard_server_answers_its_own_addresses_and_names_only(files):
    httpd = start(files, host="0.0.0.0")
    port = httpd.server_port
    try:
        assert request(port, "/api/training", host=f"127.0.0.1:{port}")[0] == 200
        assert request(port, "/api/training", host=f"{socket.gethostname()}:{port}")[0] == 200
        assert request(port, "/api/training", host=f"evil.example:{port}")[0] == 403
        assert request(port, "/api/training", host=f"10.99.99.99:{port}")[0] == 403  # not the address it came in on
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "evil.example" not in allowed_host_names("0.0.0.0")
    assert allowed_host_names("192.168.1.5") >= {"192.168.1.5"}
    assert socket.gethostname().lower() not in allowed_host_names("127.0.0.1") - {"localhost"}


# --- files reached through a symlink out of the run folder are not served ----------------------


def test_run_files_that_are_symlinks_out_of_the_run_folder_are_404(server, files, tmp_path):
    run, other = tmp_path / "outputs" / "run", tmp_path / "outputs" / "other-run"
    write_run(files, run)
    other.mkdir(parents=True)
    (other / "previews.jsonl").write_text(json.dumps({"step": 1, "prompt": "secret prompt", "model_output": "secret"}) + "\n")
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"step": 1, "loss": 42.0}\n')
    (run / "metrics.jsonl").symlink_to(secret)
    (run / "previews.jsonl").symlink_to(other / "previews.jsonl")
    for path in ("/api/metrics", "/api/previews"):
        status, _, body = request(server.server_port, path)
        assert (status, body) == (404, b"not found\n"), path
    assert api(server, "/api/training")["run_name"] == "truth"  # the rest of the page keeps working

    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to("/etc/passwd")
    assert request(server.server_port, "/api/metrics")[:3:2] == (404, b"not found\n")
    screen = render(files)  # the terminal view says why instead of crashing or showing them
    assert "not read:" in screen and "leads outside the run folder" in screen and "secret" not in screen


def test_a_symlinked_run_folder_and_links_inside_it_are_served(server, files, tmp_path):
    real = tmp_path / "big-disk" / "run"
    real.mkdir(parents=True)
    (real / "metrics-v1.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (real / "metrics.jsonl").symlink_to("metrics-v1.jsonl")  # a link that stays inside: fine
    link = tmp_path / "outputs-run"
    link.symlink_to(real, target_is_directory=True)  # outputs on another disk: fine
    write_run(files, link)
    assert [m["loss"] for m in api(server, "/api/metrics")] == [2.0]


# --- a run whose heartbeat stopped is stale, with no ETA ---------------------------------------


def test_a_run_without_heartbeat_is_stale_and_has_no_eta(server, files, tmp_path):
    write_run(files, tmp_path / "run")
    age_status_file(files.training_status, 5 * 60 + 7)  # heartbeat every 10 s: 30 beats missed
    training = api(server, "/api/training")
    assert training["view"] == {
        "state": "stale", "tone": "warn",
        "text": "stale: no heartbeat for 5 min; the process may be gone (last phase training)",
    }
    assert training["stale"] is True and training["eta_seconds"] is None
    screen = render(files)
    assert "STALE: NO HEARTBEAT FOR 5 MIN; THE PROCESS MAY BE GONE" in screen and "ETA" not in screen

    TrainingStatusWriter(files.training_status, phase="completed", status="completed").update()
    age_status_file(files.training_status, 3600)  # a finished run is not stale, however old
    assert api(server, "/api/training")["view"]["state"] == "completed"


# --- a failed or diverged run is shown as failed; NaN is text, never a number ------------------


def test_a_diverged_run_is_failed_and_its_nan_is_never_a_number(server, files, tmp_path):
    write_diverged(files, tmp_path / "run")
    training = api(server, "/api/training")
    assert (training["phase"], training["status"], training["error_type"]) == ("failed", "crashed", "TrainingDiverged")
    assert training["view"] == {"state": "failed", "tone": "bad", "text": "failed at step 3/10 (TrainingDiverged)"}
    assert training["eta_seconds"] is None and training["loss"] is None
    metrics = api(server, "/api/metrics")  # strict JSON although the file holds bare NaN tokens
    assert [(m["step"], m["loss"]) for m in metrics] == [(1, 3.0), (2, 2.5), (3, "NaN"), (4, "-Infinity")]
    assert metrics[2]["grad_norm"] == "Infinity"  # the broken line cost only itself

    # an older writer put the bare token into the status file itself
    data = json.loads(files.training_status.read_text())
    files.training_status.write_text(json.dumps({**data, "loss": float("nan"), "grad_norm": float("inf")}))
    assert "NaN" in files.training_status.read_text()
    training = api(server, "/api/training")
    assert (training["loss"], training["grad_norm"]) == ("NaN", "Infinity")

    screen = render(files).split("\n\n")[0]  # the training part
    assert "FAILED at step 3/10 (TrainingDiverged)" in screen
    assert "ERROR TrainingDiverged: the loss became NaN at step 3" in screen
    assert "loss NaN  " in screen and "loss not finite at step 3, 4" in screen
    assert "[#" not in screen and "ETA" not in screen and "0.0000" not in screen and "nan" not in screen


# --- a daemon that is not running does not look like training ----------------------------------


@pytest.mark.parametrize(
    ("fields", "state", "tone", "word"),
    [
        ({"running": False}, "not running", "neutral", "NOT RUNNING"),
        ({"state": "stopped"}, "not running", "neutral", "NOT RUNNING"),
        ({"timestamp": 600}, "stale", "warn", "STALE: NO HEARTBEAT FOR 10 MIN; THE DAEMON MAY BE GONE"),
    ],
)
def test_a_daemon_that_is_not_running_is_not_shown_training(server, files, tmp_path, fields, state, tone, word):
    job_status = tmp_path / "job_status.json"
    job_status.write_text(json.dumps({"phase": "training", "run_name": "daemon-job"}))
    if "timestamp" in fields:  # seconds ago, taken now (collection may be minutes earlier)
        fields = {**fields, "timestamp": iso_ago(fields["timestamp"] + 10)}
    write_daemon(files, job_status, **fields)
    daemon = api(server, "/api/daemon")
    assert (daemon["view"]["state"], daemon["view"]["tone"]) == (state, tone)
    assert "current_job" not in daemon and daemon["last_job"]["name"] == "old.jsonl"  # history, not work
    screen = render(files)
    assert f"daemon {word}" in screen
    assert "job: none running (last reported: old.jsonl, attempt 1, training)" in screen
    if state == "not running":  # nor is its last job followed as the live run
        assert api(server, "/api/training")["file"] == str(files.training_status)


def test_a_missing_daemon_status_is_not_running(server, files):
    assert api(server, "/api/daemon")["view"] == {"state": "not running", "tone": "neutral", "text": "not running"}
    assert f"daemon: not running: {files.daemon_status} does not exist yet" in render(files)


# --- the page, in a real browser ------------------------------------------------------------------


class Dom(HTMLParser):
    """Elements from Chromium's --dump-dom: tag, attributes and text, by id and by class."""

    VOID = frozenset({"br", "meta", "link", "col", "img", "input", "hr"})

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(node)
        if tag not in self.VOID:
            self._open.append(node)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": ""})

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for node in self._open:
            node["text"] += data

    def id(self, ident: str) -> dict:
        return next(e for e in self.elements if e["attrs"].get("id") == ident)

    def inside(self, ident: str, cls: str) -> list[dict]:
        """Elements with class ``cls`` after the element ``ident`` and before the next id'd chart."""
        start = self.elements.index(self.id(ident))
        found = []
        for e in self.elements[start + 1:]:
            if e["tag"] == "svg":
                break
            if cls in e["attrs"].get("class", "").split():
                found.append(e)
        return found


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1400",
]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")


def browse(tmp_path: Path, url: str, screenshot: Path | None = None) -> Dom:
    profile = tmp_path / f"chrome-{time.monotonic_ns()}"
    action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    page = subprocess.run(
        [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000", *action, url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert page.returncode == 0, page.stderr[-2000:]
    return Dom(page.stdout)


def page_of(server) -> str:
    return f"http://127.0.0.1:{server.server_port}/"


@needs_chromium
def test_page_shows_a_stale_run_as_stale_without_eta(server, files, tmp_path):
    write_run(files, tmp_path / "run")
    age_status_file(files.training_status, 5 * 60 + 7)
    dom = browse(tmp_path, page_of(server))
    stale = dom.id("stale")
    assert "hidden" not in stale["attrs"]
    assert stale["text"].startswith("stale: no heartbeat for 5 min; the process may be gone")
    assert dom.id("eta")["text"] == "–"
    assert dom.id("progress")["attrs"]["class"] == "bar warn"


@needs_chromium
def test_page_shows_a_diverged_run_failed_with_nan_as_text(server, files, tmp_path):
    write_diverged(files, tmp_path / "run")
    dom = browse(tmp_path, page_of(server))
    assert dom.id("phase")["text"] == "failed" and dom.id("phase")["attrs"]["class"] == "badge bad"
    assert dom.id("state-text")["text"] == "failed at step 3/10 (TrainingDiverged)"
    assert "hidden" not in dom.id("error")["attrs"]
    assert dom.id("error")["text"].startswith("TrainingDiverged: the loss became NaN at step 3")
    assert dom.id("progress")["attrs"]["class"] == "bar bad"  # red, not the running blue
    assert dom.id("eta")["text"] == "–" and dom.id("loss")["text"] == "–"  # null, not 0.0000
    # the chart keeps the finite points and marks the NaN step instead of dropping everything
    lines = [e for e in dom.elements if e["tag"] == "polyline"]
    assert [line["attrs"]["data-count"] for line in lines] == ["2", "3"]  # loss, learning rate
    assert len(dom.inside("loss-chart", "nan")) == 2
    assert [e["text"] for e in dom.inside("loss-chart", "nan-label")] == ["NaN at step 3 (+1 more)"]
    assert [e["text"] for e in dom.inside("loss-chart", "y-tick")] == ["2.500", "2.750", "3.000"]  # NaN is not 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard-diverged.png"
    shot.unlink(missing_ok=True)
    browse(tmp_path, page_of(server), screenshot=shot)
    assert shot.stat().st_size > 20_000


@needs_chromium
def test_page_says_the_daemon_is_not_running(server, files, tmp_path):
    write_daemon(files, tmp_path / "job_status.json", running=False)
    dom = browse(tmp_path, page_of(server))
    assert dom.id("daemon-state")["text"] == "not running"
    assert dom.id("daemon-state")["attrs"]["class"] == "badge neutral"
    job = dom.id("daemon-job")["text"]
    assert job.startswith("no job in progress · last reported: old.jsonl") and "running" not in job.split("·")[0]
    assert dom.id("queue-title")["text"] == "Queue (as last reported)"


@needs_chromium
def test_page_charts_have_a_labelled_step_axis_and_y_range(server, files, tmp_path):
    run = tmp_path / "run"
    write_run(files, run)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 4.0 - s / 25, "learning_rate": 1e-3 * (1 - s / 200)}) + "\n" for s in range(5, 101, 5)
    ))
    dom = browse(tmp_path, page_of(server))
    steps = [int(e["text"]) for e in dom.inside("loss-chart", "x-tick")]
    assert steps[0] == 5 and steps[-1] == 100 and len(steps) >= 3 and steps == sorted(steps)
    assert [e["text"] for e in dom.inside("loss-chart", "axis-label")] == ["step"]
    assert [e["text"] for e in dom.inside("loss-chart", "y-tick")] == ["0.000", "1.900", "3.800"]
    lr_ticks = [e["text"] for e in dom.inside("lr-chart", "y-tick")]
    assert len(lr_ticks) == 3 and lr_ticks[0] == "5.0e-4" and all(t.endswith("e-4") for t in lr_ticks)
    assert [e["text"] for e in dom.inside("lr-chart", "axis-label")] == ["step"]


@needs_chromium
def test_previews_give_the_model_output_most_of_the_width(tmp_path):
    """The real page files in Chromium, laid out at 1280 px; a script measures the columns."""
    for asset in STATIC.iterdir():
        shutil.copy(asset, tmp_path / asset.name)
    long_output = "<think>\n" + "step by step, " * 80 + "\n</think>\n\n    indented line kept\nfinal: 42"
    probe = f"""<script>
      renderPreviews([{{step: 7, prompt: "What is 6 x 7?", golden: "42", format_ok: true, matches: true,
                        model_output: {json.dumps(long_output)}}}]);
      const widths = [...document.querySelectorAll("#previews th")].map((th) => th.getBoundingClientRect().width);
      const out = document.querySelector("#previews pre.output");
      document.body.dataset.widths = widths.map(Math.round).join(",");
      document.body.dataset.space = getComputedStyle(out).whiteSpace;
      document.body.dataset.overflows = String(out.scrollWidth > out.clientWidth + 1);
      document.body.dataset.text = out.textContent === {json.dumps(long_output)} ? "verbatim" : "changed";
    </script>"""
    html = (tmp_path / "index.html").read_text().replace("/static/", "").replace("</body>", probe + "</body>")
    (tmp_path / "index.html").write_text(html)
    body = next(e for e in browse(tmp_path, (tmp_path / "index.html").as_uri()).elements if e["tag"] == "body")["attrs"]
    step, prompt, output, golden, fmt, answer = (int(w) for w in body["data-widths"].split(","))
    assert output > 0.5 * (step + prompt + output + golden + fmt + answer)
    assert output > 2 * prompt > 0 and prompt > golden
    assert (body["data-space"], body["data-overflows"], body["data-text"]) == ("pre-wrap", "false", "verbatim")


@needs_chromium
def test_page_keeps_working_when_a_run_file_is_refused(server, files, tmp_path):
    run = tmp_path / "run"
    write_run(files, run)
    (run / "metrics.jsonl").symlink_to("/etc/passwd")
    dom = browse(tmp_path, page_of(server))
    assert dom.id("phase")["text"] == "training" and dom.id("step")["text"] == "3 / 10"  # the rest still renders
    assert "metrics not available: /api/metrics: HTTP 404" in dom.id("loss-chart")["text"]
    assert "root:" not in " ".join(e["text"] for e in dom.elements)
