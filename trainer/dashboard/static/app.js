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
// A method figure: four significant digits, exponent only for very large or small ones.
const figure = (x) => (Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-4) ? x.toExponential(3) : String(Number(x.toPrecision(4))));
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
  const method = typeof s.method === "string" ? s.method : "";
  $("method").hidden = !method;
  $("method").textContent = method;
  const staged = isNum(s.stage);
  $("stage-of").hidden = !staged;
  $("stage-of").textContent = staged ? `stage ${s.stage} of ${isNum(s.stage_count) ? s.stage_count : "?"}` : "";
  // in a curriculum the charts are the running stage's (its own run folder): say so by them
  chartScope = staged ? [$("stage-of").textContent, method].filter(Boolean).join(" · ") : "";
  for (const node of document.querySelectorAll(".scope")) node.textContent = chartScope;
  renderFigures(s);
  renderSamples(s);
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
  // the judge's win rate over the starting model, with the step it was measured at
  const points = Array.isArray(s.win_rates) ? s.win_rates : [];
  const latest = points.length ? points[points.length - 1] : null;
  $("win-rate-item").hidden = !latest;
  text("win-rate", latest ? `${shown(latest.win_rate, (x) => (100 * x).toFixed(0) + "%") ?? "–"} at step ${latest.step} ` +
    `(${latest.wins} won, ${latest.ties} tied, ${latest.losses} lost)` : null);
  const d = s.data || {};
  $("data").textContent = d.rows_total ? `data: ${d.rows_used} rows trained, ${d.rows_held_out} held out, ${d.rows_rejected} rejected, ${d.rows_truncated} truncated` : "";
  const failed = view.state === "failed" || Boolean(s.error_message || s.error_type);
  $("error").hidden = !failed;
  if (failed) {
    const what = `${s.error_type || "failed"}: ${s.error_message || "no error message was recorded"}`;
    $("error").textContent = s.error_traceback ? `${what}\n\n${s.error_traceback}` : what;
  }
}

// The method's own figures (status.method_metrics): name and latest value, in the order logged.
function renderFigures(s) {
  const figures = s.method_metrics && typeof s.method_metrics === "object" ? Object.entries(s.method_metrics) : [];
  $("figures-title").textContent = (typeof s.method === "string" && s.method ? s.method + " " : "") + "figures, latest";
  $("figures").tBodies[0].replaceChildren(...figures.map(([name, value]) => el("tr", {}, [
    el("td", { textContent: name }),
    el("td", { className: "num", textContent: shown(value, figure) ?? "–" }),
  ])));
  if (!figures.length) $("figures").tBodies[0].append(el("tr", {}, [el("td", { colSpan: 2, className: "muted", textContent: "none logged yet" })]));
}

// An RL method's latest sampled completions (status.rl_samples), verbatim, with their rewards.
function renderSamples(s) {
  const samples = Array.isArray(s.rl_samples) ? s.rl_samples : [];
  $("samples").hidden = !samples.length;
  $("samples").tBodies[0].replaceChildren(...samples.map((x) => el("tr", {}, [
    el("td", { textContent: String(x.prompt ?? "") }),
    el("td", { className: "verbatim", textContent: String(x.completion ?? "") }),
    el("td", { className: "num", textContent: shown(x.reward, figure) ?? "–" }),
  ])));
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

// A chart of one or more lines over the same step axis. `series` is a key of `points` (with
// `format` for its y ticks), or a list of {key, label, format, right, range, points, n}: `label`
// names the line in the legend, `right` puts it on a second y axis at the right, `range` is a y
// range the axis always shows (accuracies: [0, 1]), `points` the line's own points (runs compared
// side by side), `n` its colour. `bounds` ({step, label, n}) are marked as dashed vertical lines (a
// curriculum's stage starts). Non-finite values are marked at their step, never drawn. Hovering
// shows each line's value at the nearest logged step.
function renderChart(id, points, series, format, bounds) {
  if (typeof series === "string") series = [{ key: series, format }];
  const chart = $(id);
  // draw in CSS pixels, so that labels are never stretched
  const W = chart.clientWidth || 400, H = chart.clientHeight || 180;
  const legend = series.some((s) => s.label);
  const M = { left: 62, right: series.some((s) => s.right) ? 50 : 14, top: legend ? 28 : 10, bottom: 36 };
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  chart.replaceChildren();
  const stepped = points.filter((p) => isNum(p.step));
  const lines = series.map((s, n) => {
    const own = s.points ? s.points.filter((p) => isNum(p.step)) : stepped;
    return { ...s, n: s.n ?? n, data: own.filter((p) => isNum(p[s.key])), broken: own.filter((p) => NON_FINITE.has(p[s.key])) };
  });
  if (lines.every((s) => !s.data.length && !s.broken.length)) {
    chart.append(svg("text", { x: 8, y: 20, class: "note" }, "waiting for the first logged step"));
    return;
  }
  const xs = lines.flatMap((s) => [...s.data, ...s.broken].map((p) => p.step));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const left = M.left, right = W - M.right, top = M.top, bottom = H - M.bottom;
  const sx = (x) => (x1 === x0 ? (left + right) / 2 : left + ((x - x0) / (x1 - x0)) * (right - left));
  // one y scale per side, over its finite values (and the range its series always show)
  const scale = (onRight) => {
    const mine = lines.filter((s) => Boolean(s.right) === onRight);
    const ys = mine.flatMap((s) => s.data.map((p) => p[s.key]));
    if (!ys.length) return null;
    const all = [...ys, ...mine.flatMap((s) => s.range || [])];
    const y0 = Math.min(...all), y1 = Math.max(...all);
    const sy = (y) => (y1 === y0 ? (top + bottom) / 2 : bottom - ((y - y0) / (y1 - y0)) * (bottom - top));
    return { y0, y1, sy, format: mine[0].format || autoFormat(y0, y1) };
  };
  const scales = { left: scale(false), right: scale(true) };

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
  const yTicks = (s) => (s.y1 === s.y0 ? [s.y0] : [s.y0, (s.y0 + s.y1) / 2, s.y1]);
  if (scales.left) {
    for (const t of yTicks(scales.left)) {
      chart.append(svg("line", { x1: left, y1: scales.left.sy(t), x2: right, y2: scales.left.sy(t), class: "grid" }));
      chart.append(svg("text", { x: left - 5, y: scales.left.sy(t) + 3.5, "text-anchor": "end", class: "tick y-tick" }, scales.left.format(t)));
    }
  }
  if (scales.right) {
    chart.append(svg("line", { x1: right, y1: top, x2: right, y2: bottom, class: "axis" }));
    for (const t of yTicks(scales.right)) {
      chart.append(svg("line", { x1: right, y1: scales.right.sy(t), x2: right + 4, y2: scales.right.sy(t), class: "axis" }));
      chart.append(svg("text", { x: right + 6, y: scales.right.sy(t) + 3.5, "text-anchor": "start", class: "tick y2-tick" }, scales.right.format(t)));
    }
  }
  // a diverged step: marked where it happened, never drawn as a value
  lines.filter((s) => s.broken.length).forEach((s, row) => {
    for (const p of s.broken) chart.append(svg("line", { x1: sx(p.step), y1: top, x2: sx(p.step), y2: bottom, class: "nan" }));
    const first = s.broken[0];
    chart.append(svg("text", { x: right - 4, y: top + 12 + 13 * row, "text-anchor": "end", class: "nan-label" },
      `${s.label ? s.label + " " : ""}${first[s.key]} at step ${first.step}${s.broken.length > 1 ? ` (+${s.broken.length - 1} more)` : ""}`));
  });
  if (legend) drawLegend(chart, lines, left, top - 12);
  if (lines.every((s) => !s.data.length)) {
    chart.append(svg("text", { x: left + 8, y: top + 28, class: "note" }, "no finite value logged"));
    return;
  }
  for (const s of lines.filter((s) => s.data.length)) {
    const sy = (s.right ? scales.right : scales.left).sy;
    const line = svg("polyline", { class: "s" + s.n, points: s.data.map((p) => sx(p.step).toFixed(1) + "," + sy(p[s.key]).toFixed(1)).join(" ") });
    line.dataset.count = String(s.data.length);
    line.dataset.key = s.key;
    if (s.label) line.dataset.label = s.label;
    chart.append(line);
    if (s.data.length === 1) chart.append(svg("circle", { cx: sx(s.data[0].step), cy: sy(s.data[0][s.key]), r: 3, class: "dot s" + s.n }));
  }
  for (const b of (bounds || []).filter((b) => isNum(b.step) && b.step >= x0 && b.step <= x1)) {
    const bound = svg("line", { x1: sx(b.step), y1: top, x2: sx(b.step), y2: bottom, class: "bound" });
    bound.dataset.step = String(b.step);
    chart.append(bound, svg("text", { x: sx(b.step) + 3, y: bottom - 4 - 11 * (b.row || 0), class: "bound-label" }, b.label));
  }
  // values under the pointer: a guide at the nearest logged step, each line's value there
  const drawn = lines.filter((s) => s.data.length);
  const steps = [...new Set(drawn.flatMap((s) => s.data.map((p) => p.step)))].sort((a, b) => a - b);
  const area = svg("rect", { x: left, y: top, width: Math.max(0, right - left), height: Math.max(0, bottom - top), class: "hover-area" });
  chart.append(area);
  const show = (step) => {
    chart.querySelector(".hover")?.remove();
    if (!isNum(step)) return;
    const group = svg("g", { class: "hover" });
    group.dataset.step = String(step);
    const rows = [`step ${step}`];
    for (const s of drawn) {
      const near = s.data.reduce((a, p) => (Math.abs(p.step - step) < Math.abs(a.step - step) ? p : a));
      rows.push(`${s.label || s.key}: ${figure(near[s.key])}${near.step !== step ? ` (step ${near.step})` : ""}`);
    }
    const wide = Math.max(...rows.map((r) => r.length)) * 6.4 + 12, high = rows.length * 14 + 8;
    const bx = sx(step) + 8 + wide > right ? sx(step) - 8 - wide : sx(step) + 8;
    group.append(svg("line", { x1: sx(step), y1: top, x2: sx(step), y2: bottom, class: "hover-line" }),
      svg("rect", { x: bx, y: top + 4, width: wide, height: high, rx: 4, class: "hover-box" }));
    rows.forEach((r, i) => group.append(svg("text", { x: bx + 6, y: top + 18 + 14 * i, class: "hover-text" }, r)));
    chart.append(group);
  };
  area.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect(), x = x0 + ((event.clientX - box.left - left) / Math.max(1, right - left)) * (x1 - x0);
    const step = steps.reduce((a, t) => (Math.abs(t - x) < Math.abs(a - x) ? t : a), steps[0]);
    hoverAt.set(id, step);
    show(step);
  });
  area.addEventListener("mouseleave", () => { hoverAt.delete(id); show(null); });
  if (hoverAt.has(id)) show(hoverAt.get(id)); // a refresh redraws: the values stay where the pointer is
}
const hoverAt = new Map(); // chart id -> the step the pointer is at

// Legend above the plot: a swatch in the line's colour and dash, then its name.
function drawLegend(chart, lines, x, y) {
  const group = svg("g", { class: "legend" });
  chart.append(group);
  for (const s of lines) {
    group.append(svg("line", { x1: x, y1: y, x2: x + 18, y2: y, class: "swatch s" + s.n }));
    const name = s.label + (s.right ? " (right axis)" : "") + (s.data.length || s.broken.length ? "" : " (no value)");
    const label = svg("text", { x: x + 23, y: y + 3.5, class: "legend-label" }, name);
    label.dataset.key = s.key;
    group.append(label);
    x += 23 + (label.getComputedTextLength() || 6.5 * name.length) + 16;
  }
}

// Tick labels for a figure of any scale: enough decimals to tell the ticks apart.
function autoFormat(lo, hi) {
  const big = Math.max(Math.abs(lo), Math.abs(hi));
  if (big >= 1e5 || (big > 0 && big < 1e-3)) return (y) => y.toExponential(1);
  const span = hi - lo || big || 1;
  const decimals = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(span))));
  return (y) => y.toFixed(decimals);
}

// The method's figures in metrics.jsonl, charted by group: chosen beside rejected, margins with
// accuracies (0..1, right axis), an RL method's reward with its components and its KL beside
// entropy, then each other figure alone, at most MAX_METHOD_CHARTS charts.
// A chart exists only while the metrics have one of its keys: an SFT run shows no DPO charts.
const NOT_METHOD_KEYS = new Set(["step", "loss", "learning_rate", "grad_norm", "epoch", "num_tokens", "time",
  "tokens_per_sec", "stage", "stage_count", "method", "nonfinite"]);
const MAX_METHOD_CHARTS = 6;
const GROUPS = [
  { id: "rewards-chart", title: "Rewards", series: [{ key: "rewards/chosen", label: "rewards/chosen" }, { key: "rewards/rejected", label: "rewards/rejected" }] },
  { id: "margins-chart", title: "Margins / accuracies", series: [
    { key: "rewards/margins", label: "rewards/margins" },
    { key: "rewards/accuracies", label: "rewards/accuracies", right: true, range: [0, 1], format: (y) => y.toFixed(2) }] },
  { id: "logps-chart", title: "Log-probs", series: [{ key: "logps/chosen", label: "logps/chosen" }, { key: "logps/rejected", label: "logps/rejected" }] },
];
let chartScope = "";

function methodKeys(points) {
  const keys = new Set();
  for (const p of points) {
    for (const [k, v] of Object.entries(p)) {
      if (!NOT_METHOD_KEYS.has(k) && (isNum(v) || NON_FINITE.has(v) || v === null)) keys.add(k);
    }
  }
  return [...keys];
}

function methodChartGroups(points) {
  const keys = methodKeys(points), present = new Set(keys), used = new Set();
  const groups = [];
  const add = (group) => {
    const series = group.series.filter((s) => present.has(s.key));
    if (!series.length) return;
    series.forEach((s) => used.add(s.key));
    if (series.length === 1) series[0] = { ...series[0], right: false }; // alone, it takes the left axis
    groups.push({ ...group, series });
  };
  // RL: the total reward beside each component's mean (their std stays in the figures table)
  const components = keys.filter((k) => /^rewards\/.+\/mean$/.test(k));
  add({ id: "rl-reward-chart", title: "Reward", series: ["reward", ...components].map((key) => ({ key, label: key })) });
  keys.filter((k) => /^rewards\/.+\/std$/.test(k) || k === "reward_std").forEach((k) => used.add(k));
  if (present.has("kl")) { // an SFT run logs entropy alone: that chart stays its own
    add({ id: "rl-kl-chart", title: "KL / entropy", series: [{ key: "kl", label: "kl" }, { key: "entropy", label: "entropy", right: true }] });
  }
  GROUPS.forEach(add);
  const pair = /^(.+)\/(chosen|rejected)$/;
  for (const key of keys) { // each other figure alone ...
    if (!used.has(key) && !pair.test(key)) add({ id: "figure-chart-" + slug(key), title: key, series: [{ key }] });
  }
  for (const key of keys) { // ... then the other chosen / rejected pairs (logits/chosen, ...)
    const m = key.match(pair);
    if (m && !used.has(key)) {
      const both = ["chosen", "rejected"].map((side) => ({ key: `${m[1]}/${side}`, label: `${m[1]}/${side}` }));
      add({ id: "figure-chart-" + slug(m[1]), title: m[1], series: both });
    }
  }
  return { shown: groups.slice(0, MAX_METHOD_CHARTS), left: groups.slice(MAX_METHOD_CHARTS) };
}

const slug = (key) => key.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase() || "figure";

const methodCards = new Map(); // chart id -> its card, kept between refreshes
function renderMethodCharts(points) {
  const { shown, left } = methodChartGroups(points);
  const cards = shown.map((group) => {
    let card = methodCards.get(group.id);
    if (!card) {
      card = el("section", { className: "card method-chart" }, [el("h2", { textContent: group.title + " " }, [el("span", { className: "muted scope" })])]);
      const chart = svg("svg", { id: group.id, class: "chart", role: "img", "aria-label": group.title + " by step" });
      card.append(chart);
      methodCards.set(group.id, card);
    }
    card.querySelector(".scope").textContent = chartScope;
    return [card, group];
  });
  $("method-charts").replaceChildren(...cards.map(([card]) => card));
  for (const [card, group] of cards) renderChart(group.id, points, group.series);
  const names = left.flatMap((g) => g.series.map((s) => s.key));
  $("charts-left-out").hidden = !names.length;
  $("charts-left-out").textContent = names.length ? `not charted (${MAX_METHOD_CHARTS} charts at most; latest values in the figures table): ${names.join(", ")}` : "";
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

// --- the runs under the output folder, and a comparison of those ticked -----------------------
// The selection lives in the address (#compare=a,b), so a comparison can be reloaded or shared.
const MAX_COMPARED = 6, MAX_COMPARE_CHARTS = 8;
const COMPARE_FIRST = ["reward", "kl", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
  "distill/divergence", "heldout_reward"];
const FIGURE_KEYS = ["heldout_reward", "heldout_accuracy", "win_rate", "rewards/accuracies", "rewards/margins",
  "distill/divergence", "reward", "kl"];
// each name is encoded on its own, so a comma in a run's name stays in it; a malformed address
// selects nothing rather than stopping the page
const decoded = (part) => { try { return decodeURIComponent(part); } catch { return ""; } };
const selected = new Set(((location.hash.match(/compare=([^&]*)/) || [])[1] || "").split(",").map(decoded).filter(Boolean));

function saveSelection() {
  history.replaceState(null, "", selected.size ? "#compare=" + [...selected].map(encodeURIComponent).join(",") : location.pathname);
}

function renderRuns(runs) {
  const body = $("runs").tBodies[0];
  const known = new Set(runs.map((r) => r.name));
  body.replaceChildren(...runs.map((r) => {
    const tick = el("input", { type: "checkbox", checked: selected.has(r.name), title: "compare" });
    tick.dataset.run = r.name;
    tick.addEventListener("change", () => {
      if (tick.checked) selected.add(r.name); else selected.delete(r.name);
      saveSelection();
      refreshCompare(known);
    });
    const f = r.final || {};
    const steps = r.stages.length ? r.stages.reduce((a, s) => a + (s.steps || 0), 0) : f.steps;
    const pct = (a, b) => (isNum(a) && isNum(b) && b > 0 ? `${a}/${b}` : null);
    const figures = FIGURE_KEYS.filter((k) => f[k] !== undefined).slice(0, 3).map((k) => `${k} ${shown(f[k], figure) ?? f[k]}`);
    const row = el("tr", { className: "run-row" }, [
      el("td", {}, [tick]),
      el("td", { textContent: r.name }),
      el("td", { textContent: r.method + (r.stages.length ? ` (${r.stages.length} stages)` : "") }),
      el("td", { textContent: r.profile ?? "–" }),
      el("td", {}, [el("span", { className: "badge " + (TONES.includes(r.tone) ? r.tone : "neutral"), textContent: r.status })]),
      el("td", { className: "when", textContent: r.started ? new Date(r.started).toLocaleString() : "–" }),
      el("td", { className: "num", textContent: steps ?? "–" }),
      el("td", { className: "num", textContent: shown(f.loss_end, (x) => x.toFixed(3)) ?? "–" }),
      el("td", { className: "num", textContent: pct(f.probes_format_ok, f.probes) ?? "–" }),
      el("td", { className: "num", textContent: pct(f.probes_correct, f.probes) ?? "–" }),
      el("td", { textContent: figures.join(" · ") || "–" }),
    ]);
    row.dataset.run = r.name;
    return row;
  }));
  if (!runs.length) body.append(el("tr", {}, [el("td", { colSpan: 11, className: "muted", textContent: "no run under the output folder yet" })]));
  return known;
}

// One chart per figure, each run a line of its own colour; loss and learning rate first, then
// the methods' own figures (rewards and KL for RL, margins and accuracies for preference methods).
function renderCompare(runs) {
  $("compare").hidden = !runs.length;
  if (!runs.length) return;
  $("compare-names").textContent = runs.map((r) => r.name).join(" · ");
  // the figures that say most about each method first: RL's reward and KL, preference margins and accuracies
  const found = new Set(runs.flatMap((r) => methodKeys(r.points)));
  const keys = [...new Set(["loss", "learning_rate", ...COMPARE_FIRST.filter((k) => found.has(k)), ...found])];
  const charted = keys.filter((k) => runs.some((r) => r.points.some((p) => isNum(p[k]) || NON_FINITE.has(p[k]))));
  const shownKeys = charted.slice(0, MAX_COMPARE_CHARTS);
  const bounds = runs.flatMap((r, n) => (r.stages || []).filter((b) => b.step > 0).map((b) => ({ ...b, label: `${r.name}: ${b.label}`, row: n })));
  const cards = shownKeys.map((key) => {
    const id = "compare-" + slug(key);
    const card = el("section", { className: "compare-chart" }, [el("h3", { textContent: key })]);
    card.append(svg("svg", { id, class: "chart", role: "img", "aria-label": key + " by step, runs compared" }));
    return [card, id, key];
  });
  $("compare-charts").replaceChildren(...cards.map(([card]) => card));
  for (const [, id, key] of cards) {
    renderChart(id, [], runs.map((r, n) => ({ key, label: r.name, points: r.points, n })), undefined, bounds);
  }
  const left = charted.slice(MAX_COMPARE_CHARTS);
  $("compare-note").textContent = (selected.size > MAX_COMPARED ? `only the first ${MAX_COMPARED} ticked runs are drawn. ` : "") +
    (left.length ? `not charted (${MAX_COMPARE_CHARTS} charts at most): ${left.join(", ")}` : "");
}

async function refreshCompare(known) {
  const names = [...selected].filter((n) => known.has(n)).slice(0, MAX_COMPARED);
  const results = await Promise.allSettled(names.map((n) => getJSON("/api/run-metrics?name=" + encodeURIComponent(n))));
  renderCompare(results.filter((r) => r.status === "fulfilled").map((r) => r.value));
}

// Each panel from its own route: one failing route (or one odd value) costs only its panel.
const PANELS = [
  ["/api/training", renderTraining, (why) => renderTraining({ waiting: "cannot read the status: " + why })],
  ["/api/metrics", (m) => {
    renderChart("loss-chart", m, "loss", (y) => y.toFixed(3));
    renderChart("lr-chart", m, "learning_rate", (y) => y.toExponential(1));
    renderMethodCharts(m);
  }, (why) => {
    chartUnavailable("loss-chart", why); chartUnavailable("lr-chart", why);
    $("method-charts").replaceChildren(); // which figures there are is not known now
    $("charts-left-out").hidden = true;
  }],
  ["/api/previews", renderPreviews, previewsUnavailable],
  ["/api/daemon", renderDaemon, (why) => renderDaemon({ waiting: "cannot read the daemon status: " + why })],
  ["/api/runs", (runs) => refreshCompare(renderRuns(runs)), (why) => {
    $("runs").tBodies[0].replaceChildren(el("tr", {}, [el("td", { colSpan: 11, className: "muted", textContent: "runs not available: " + why })]));
  }],
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
