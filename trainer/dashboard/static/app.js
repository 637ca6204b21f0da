// The dashboard page: polls the read-only JSON routes and renders them. No libraries, no CDN:
// the page works offline, served by `python trainer/cli_main.py dashboard`.
"use strict";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function text(id, value) { $(id).textContent = value === null || value === undefined || value === "" ? "–" : String(value); }
function fixed(x, digits) { return typeof x === "number" ? x.toFixed(digits) : null; }
function duration(seconds) {
  if (typeof seconds !== "number") return null;
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
}
function el(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children || []) node.append(child);
  return node;
}
function mark(value) {
  if (value === true) return el("span", { className: "mark-ok", textContent: "✓" });
  if (value === false) return el("span", { className: "mark-bad", textContent: "✗" });
  return el("span", { className: "mark-none", textContent: "–" });
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function renderTraining(s) {
  const waiting = s.waiting !== undefined;
  $("run-waiting").hidden = !waiting;
  $("run-body").hidden = waiting;
  if (waiting) { $("run-waiting").textContent = "waiting: " + s.waiting; return; }
  text("run-name", s.run_name);
  text("phase", s.phase);
  $("phase").className = "badge" + (s.phase === "failed" ? " bad" : s.phase === "completed" ? " ok" : "");
  $("stale").hidden = !s.stale;
  text("model", [s.model_name, s.profile ? "profile " + s.profile : ""].filter(Boolean).join(" · "));
  $("progress").value = s.progress || 0;
  text("step", (s.current_step ?? 0) + " / " + (s.total_steps ?? 0));
  text("eta", duration(s.eta_seconds));
  text("loss", fixed(s.loss, 4));
  text("lr", typeof s.learning_rate === "number" ? s.learning_rate.toExponential(2) : null);
  text("tps", fixed(s.tokens_per_sec, 0));
  text("format-pct", typeof s.format_ok_percent === "number" ? s.format_ok_percent.toFixed(0) + "%" : null);
  text("accuracy", typeof s.accuracy_percent === "number" ? s.accuracy_percent.toFixed(0) + "%" : null);
  const d = s.data || {};
  $("data").textContent = d.rows_total ? `data: ${d.rows_used} rows trained, ${d.rows_held_out} held out, ${d.rows_rejected} rejected, ${d.rows_truncated} truncated` : "";
  const failed = Boolean(s.error_message);
  $("error").hidden = !failed;
  if (failed) $("error").textContent = `${s.error_type}: ${s.error_message}\n\n${s.error_traceback || ""}`;
}

function renderChart(id, points, key) {
  const svg = $(id);
  const data = points.filter((p) => typeof p[key] === "number" && typeof p.step === "number");
  svg.replaceChildren();
  if (data.length < 1) {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("x", "8"); t.setAttribute("y", "20"); t.textContent = "waiting for the first logged step";
    svg.append(t);
    return;
  }
  const xs = data.map((p) => p.step), ys = data.map((p) => p[key]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => (x1 === x0 ? 200 : 8 + ((x - x0) / (x1 - x0)) * 384);
  const sy = (y) => (y1 === y0 ? 80 : 150 - ((y - y0) / (y1 - y0)) * 135);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", data.map((p) => sx(p.step).toFixed(1) + "," + sy(p[key]).toFixed(1)).join(" "));
  line.dataset.count = String(data.length);
  svg.append(line);
  for (const [y, label] of [[12, y1], [158, y0]]) {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("x", "4"); t.setAttribute("y", String(y));
    t.textContent = key === "learning_rate" ? label.toExponential(1) : label.toFixed(3);
    svg.append(t);
  }
}

function renderPreviews(previews) {
  const body = $("previews").tBodies[0];
  body.replaceChildren(...previews.slice(-8).reverse().map((p) =>
    el("tr", { className: "preview" }, [
      el("td", { textContent: String(p.step ?? "") }),
      el("td", {}, [el("pre", { textContent: p.prompt ?? "" })]),
      el("td", {}, [el("pre", { className: "output", textContent: p.model_output ?? "" })]),
      el("td", {}, [el("pre", { textContent: p.golden ?? "" })]),
      el("td", {}, [mark(p.format_ok)]),
      el("td", {}, [mark(p.matches)]),
    ])));
  if (!previews.length) body.append(el("tr", {}, [el("td", { colSpan: 6, className: "muted", textContent: "no preview yet" })]));
}

function renderDaemon(d) {
  const waiting = d.waiting !== undefined;
  $("daemon-waiting").hidden = !waiting;
  $("daemon-body").hidden = waiting;
  if (waiting) { text("daemon-state", "not running"); $("daemon-waiting").textContent = "waiting: " + d.waiting; return; }
  text("daemon-state", d.stale ? d.state + " (no heartbeat)" : d.state);
  const job = d.current_job;
  $("daemon-job").textContent = job ? `running ${job.name} (attempt ${job.attempt}), ${job.phase || "starting"} ${job.current_step ?? 0}/${job.total_steps ?? 0}` : "no job running";
  $("queue").replaceChildren(...(d.queue || []).map((q) => el("li", { textContent: `${q.name} · ${q.priority}${q.complete ? "" : " · still arriving"}` })));
  if (!(d.queue || []).length) $("queue").append(el("li", { className: "muted", textContent: "empty" }));
  $("recent").replaceChildren(...(d.recent_jobs || []).map((j) => el("li", {
    className: j.outcome === "failed" ? "bad" : "",
    textContent: `${j.name}: ${j.outcome}${j.promoted === true ? ", promoted to v" + j.hero_version : j.promoted === false ? ", not promoted" : ""}${j.error ? " — " + j.error : ""}`,
  })));
  const hero = d.hero;
  $("hero").textContent = hero ? `v${hero.version} · ${hero.path}` : "–";
  $("hero-history").replaceChildren(...(d.hero_history || []).slice(-10).reverse().map((h) => el("li", {
    textContent: `${h.job_id}: ${h.promoted ? "promoted v" + h.version : "rejected"}`,
  })));
}

async function refresh() {
  try {
    const [training, metrics, previews, daemon] = await Promise.all(
      ["/api/training", "/api/metrics", "/api/previews", "/api/daemon"].map(getJSON));
    renderTraining(training);
    renderChart("loss-chart", metrics, "loss");
    renderChart("lr-chart", metrics, "learning_rate");
    renderPreviews(previews);
    renderDaemon(daemon);
    text("updated", "updated " + new Date().toLocaleTimeString());
  } catch (error) {
    text("updated", "dashboard server unreachable: " + error.message);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
