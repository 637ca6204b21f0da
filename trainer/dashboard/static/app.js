// The dashboard page: polls the read-only JSON routes and renders them. No libraries, no CDN:
// the page works offline, served by `python trainer/cli_main.py dashboard`.
//
// What is true comes from the server's snapshots: each has a `view` {state, text, tone} (failed,
// stale, completed, ... see trainer/dashboard/snapshot.py) that is shown as is. Numbers that are
// not finite arrive spelled "NaN" / "Infinity" / "-Infinity" and are shown as that text, never
// as 0. One route failing (a refused file, a 404) leaves the other panels working.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const NON_FINITE = new Set(["NaN", "Infinity", "-Infinity"]);
const TONES = ["active", "ok", "bad", "warn", "neutral"];
const $ = (id) => document.getElementById(id);

const isNum = (x) => typeof x === "number" && Number.isFinite(x);
// A number in `format`, a non-finite one by its name, anything else as null (shown "–").
const shown = (x, format) => (isNum(x) ? format(x) : NON_FINITE.has(x) ? x : null);
function text(id, value) { $(id).textContent = value === null || value === undefined || value === "" ? "–" : String(value); }
function tone(node, base, name) { node.className = base + " " + (TONES.includes(name) ? name : "neutral"); }
function duration(seconds) {
  if (!isNum(seconds)) return null;
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
}
function el(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children || []) node.append(child);
  return node;
}
function svg(tag, attrs, content) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (content !== undefined) node.textContent = content;
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
  const view = s.view || { state: "waiting", tone: "neutral", text: "waiting" };
  const waiting = s.waiting !== undefined;
  $("run-waiting").hidden = !waiting;
  $("run-body").hidden = waiting;
  if (waiting) { $("run-waiting").textContent = "waiting: " + s.waiting; return; }
  const running = view.state === "running";
  text("run-name", s.run_name);
  text("phase", s.phase ?? s.status);
  tone($("phase"), "badge", view.tone);
  $("stale").hidden = view.state !== "stale";
  $("stale").textContent = view.text;
  $("state-text").hidden = running || view.state === "stale";
  $("state-text").textContent = view.text;
  tone($("state-text"), "state", view.tone);
  text("model", [s.model_name, s.profile ? "profile " + s.profile : ""].filter(Boolean).join(" · "));
  // the bar takes the verdict's colour: red for a failed run, amber for a stale one
  $("progress").value = isNum(s.progress) ? Math.max(0, Math.min(1, s.progress)) : 0;
  tone($("progress"), "bar", view.tone);
  text("step", (s.current_step ?? 0) + " / " + (s.total_steps ?? 0));
  text("eta", running ? duration(s.eta_seconds) : null);
  text("loss", shown(s.loss, (x) => x.toFixed(4)));
  text("lr", shown(s.learning_rate, (x) => x.toExponential(2)));
  text("tps", shown(s.tokens_per_sec, (x) => x.toFixed(0)));
  text("format-pct", shown(s.format_ok_percent, (x) => x.toFixed(0) + "%"));
  text("accuracy", shown(s.accuracy_percent, (x) => x.toFixed(0) + "%"));
  const d = s.data || {};
  $("data").textContent = d.rows_total ? `data: ${d.rows_used} rows trained, ${d.rows_held_out} held out, ${d.rows_rejected} rejected, ${d.rows_truncated} truncated` : "";
  const failed = view.state === "failed" || Boolean(s.error_message || s.error_type);
  $("error").hidden = !failed;
  if (failed) {
    const what = `${s.error_type || "failed"}: ${s.error_message || "no error message was recorded"}`;
    $("error").textContent = s.error_traceback ? `${what}\n\n${s.error_traceback}` : what;
  }
}

// Round numbers between lo and hi for axis ticks (1, 2 or 5 times a power of ten apart; whole
// numbers only when `whole`, as steps are).
function niceTicks(lo, hi, count, whole) {
  if (!(hi > lo)) return [];
  const raw = (hi - lo) / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = Math.max(whole ? 1 : 0, [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw));
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(Math.round(t * 1e9) / 1e9);
  return ticks;
}

function renderChart(id, points, key, format) {
  const chart = $(id);
  // draw in CSS pixels, so that labels are never stretched
  const W = chart.clientWidth || 400, H = chart.clientHeight || 180;
  const M = { left: 62, right: 14, top: 10, bottom: 36 };
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  chart.replaceChildren();
  const stepped = points.filter((p) => isNum(p.step));
  const data = stepped.filter((p) => isNum(p[key]));
  const broken = stepped.filter((p) => NON_FINITE.has(p[key]));
  if (!data.length && !broken.length) {
    chart.append(svg("text", { x: 8, y: 20, class: "note" }, "waiting for the first logged step"));
    return;
  }
  const xs = stepped.filter((p) => isNum(p[key]) || NON_FINITE.has(p[key])).map((p) => p.step);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const ys = data.map((p) => p[key]);
  const y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  const left = M.left, right = W - M.right, top = M.top, bottom = H - M.bottom;
  const sx = (x) => (x1 === x0 ? (left + right) / 2 : left + ((x - x0) / (x1 - x0)) * (right - left));
  const sy = (y) => (y1 === y0 ? (top + bottom) / 2 : bottom - ((y - y0) / (y1 - y0)) * (bottom - top));

  // axes: x in steps (min, max and round steps between), y with its range labelled
  chart.append(svg("line", { x1: left, y1: bottom, x2: right, y2: bottom, class: "axis" }));
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: bottom, class: "axis" }));
  const minGap = 48; // px between step labels
  const xTicks = [x0, ...niceTicks(x0, x1, Math.max(1, Math.floor((right - left) / 90)), true)
    .filter((t) => Math.abs(sx(t) - sx(x0)) >= minGap && Math.abs(sx(x1) - sx(t)) >= minGap)];
  if (x1 !== x0) xTicks.push(x1);
  for (const t of xTicks) {
    chart.append(svg("line", { x1: sx(t), y1: bottom, x2: sx(t), y2: bottom + 4, class: "axis" }));
    chart.append(svg("text", { x: sx(t), y: bottom + 15, "text-anchor": "middle", class: "tick x-tick" }, String(t)));
  }
  chart.append(svg("text", { x: (left + right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, "step"));
  if (ys.length) {
    const yTicks = y1 === y0 ? [y0] : [y0, (y0 + y1) / 2, y1];
    for (const t of yTicks) {
      chart.append(svg("line", { x1: left, y1: sy(t), x2: right, y2: sy(t), class: "grid" }));
      chart.append(svg("text", { x: left - 5, y: sy(t) + 3.5, "text-anchor": "end", class: "tick y-tick" }, format(t)));
    }
  }
  for (const p of broken) { // a diverged step: marked where it happened, never drawn as a value
    chart.append(svg("line", { x1: sx(p.step), y1: top, x2: sx(p.step), y2: bottom, class: "nan" }));
  }
  if (broken.length) {
    const first = broken[0];
    chart.append(svg("text", { x: right - 4, y: top + 12, "text-anchor": "end", class: "nan-label" },
      `${first[key]} at step ${first.step}${broken.length > 1 ? ` (+${broken.length - 1} more)` : ""}`));
  }
  if (!data.length) {
    chart.append(svg("text", { x: left + 8, y: top + 28, class: "note" }, "no finite value logged"));
    return;
  }
  const line = svg("polyline", { points: data.map((p) => sx(p.step).toFixed(1) + "," + sy(p[key]).toFixed(1)).join(" ") });
  line.dataset.count = String(data.length);
  chart.append(line);
  if (data.length === 1) chart.append(svg("circle", { cx: sx(data[0].step), cy: sy(data[0][key]), r: 3, class: "dot" }));
}

function chartUnavailable(id, why) {
  $(id).replaceChildren(svg("text", { x: 8, y: 20, class: "note" }, "metrics not available: " + why));
}

function renderPreviews(previews) {
  const body = $("previews").tBodies[0];
  body.replaceChildren(...previews.slice(-8).reverse().map((p) =>
    el("tr", { className: "preview" }, [
      el("td", { textContent: String(p.step ?? "") }),
      el("td", {}, [el("pre", { className: "prompt", textContent: p.prompt ?? "" })]),
      el("td", {}, [el("pre", { className: "output", textContent: p.model_output ?? "" })]),
      el("td", {}, [el("pre", { className: "golden", textContent: p.golden ?? "" })]),
      el("td", {}, [mark(p.format_ok)]),
      el("td", {}, [mark(p.matches)]),
    ])));
  if (!previews.length) body.append(el("tr", {}, [el("td", { colSpan: 6, className: "muted", textContent: "no preview yet" })]));
}

function previewsUnavailable(why) {
  $("previews").tBodies[0].replaceChildren(el("tr", {}, [el("td", { colSpan: 6, className: "muted", textContent: "previews not available: " + why })]));
}

function jobLine(d, running) {
  const job = running ? d.current_job : null, last = d.last_job;
  if (job) return `running ${job.name} (attempt ${job.attempt}), ${job.phase || "starting"} ${job.current_step ?? 0}/${job.total_steps ?? 0}`;
  if (last) return `no job in progress · last reported: ${last.name} (attempt ${last.attempt}), ${last.phase || "starting"} ${last.current_step ?? 0}/${last.total_steps ?? 0}`;
  return "no job running";
}

function renderDaemon(d) {
  const view = d.view || { state: "waiting", tone: "neutral", text: "waiting" };
  const waiting = d.waiting !== undefined;
  const running = view.state === "running";
  text("daemon-state", running ? d.state : view.text);
  tone($("daemon-state"), "badge", view.tone);
  $("daemon-waiting").hidden = !waiting;
  $("daemon-body").hidden = waiting;
  if (waiting) {
    $("daemon-waiting").textContent = `${view.text}: ${d.waiting}`;
    tone($("daemon-waiting"), "waiting", view.state === "not running" ? "neutral" : "warn");
    return;
  }
  $("daemon-job").textContent = jobLine(d, running);
  $("daemon-job").className = running && d.current_job ? "" : "muted";
  $("queue-title").textContent = running ? "Queue" : "Queue (as last reported)";
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

// Each panel from its own route: one failing route (or one odd value) costs only its panel.
const PANELS = [
  ["/api/training", renderTraining, (why) => renderTraining({ waiting: "cannot read the status: " + why })],
  ["/api/metrics", (m) => {
    renderChart("loss-chart", m, "loss", (y) => y.toFixed(3));
    renderChart("lr-chart", m, "learning_rate", (y) => y.toExponential(1));
  }, (why) => { chartUnavailable("loss-chart", why); chartUnavailable("lr-chart", why); }],
  ["/api/previews", renderPreviews, previewsUnavailable],
  ["/api/daemon", renderDaemon, (why) => renderDaemon({ waiting: "cannot read the daemon status: " + why })],
];

async function refresh() {
  const results = await Promise.allSettled(PANELS.map(([path]) => getJSON(path)));
  const problems = [];
  results.forEach((result, i) => {
    const [path, render, unavailable] = PANELS[i];
    try {
      if (result.status === "fulfilled") render(result.value);
      else { problems.push(result.reason.message); unavailable(result.reason.message); }
    } catch (error) {
      problems.push(path + ": " + error.message);
      console.error(error);
    }
  });
  if (problems.length === PANELS.length) text("updated", "dashboard server unreachable: " + problems[0]);
  else text("updated", "updated " + new Date().toLocaleTimeString() + (problems.length ? " · " + problems.join("; ") : ""));
}

refresh();
setInterval(refresh, REFRESH_MS);
