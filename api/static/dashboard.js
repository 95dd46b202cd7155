// evalstream dashboard: panels over the /v1 API. The filters live in the URL (a link shares the view).
// Adding a panel: one panel({id, title, wide, load(f), render(el, data, f)}) call; load returns null when
// there is nothing to show yet. Each drawn panel sets data-points (how many data points it drew).
"use strict";

const PANELS = [];
const RANGES = { "15m": 9e5, "30m": 18e5, "1h": 36e5, "6h": 216e5, "24h": 864e5, "7d": 6048e5, "30d": 2592e6 };
const form = document.getElementById("filters");
const main = document.getElementById("panels");
let timer = null;

function panel(def) { PANELS.push(def); }

// ---- filters <-> URL ----
function filters() {
  const data = new FormData(form);
  const f = Object.fromEntries([...data.entries()].map(([k, v]) => [k, String(v).trim()]));
  f.refresh = form.elements.refresh.checked;
  const until = f.until ? new Date(f.until.endsWith("Z") || f.until.includes("+") ? f.until : f.until + "Z")
                        : new Date(Math.floor(Date.now() / 60000) * 60000);
  f.untilIso = until.toISOString().replace(".000Z", "Z");
  f.sinceIso = new Date(until.getTime() - (RANGES[f.range] || RANGES["1h"])).toISOString().replace(".000Z", "Z");
  return f;
}
function loadUrl() {
  const params = new URLSearchParams(location.search);
  for (const el of form.elements) {
    if (!el.name || !params.has(el.name)) continue;
    if (el.type === "checkbox") el.checked = params.get(el.name) !== "0"; else el.value = params.get(el.name);
  }
}
function saveUrl() {
  const params = new URLSearchParams();
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") { if (!el.checked) params.set(el.name, "0"); } else if (el.value) params.set(el.name, el.value);
  }
  history.replaceState(null, "", "?" + params.toString());
}
function scope(f, extra = {}) {  // the common query parameters
  const p = { since: f.sinceIso, until: f.untilIso, ...extra };
  if (f.app) p.app = f.app;
  if (f.route) p.route = f.route;
  return p;
}

// ---- the API, with a key when it needs one ----
let keyWaiters = null;
function askKey() {
  if (!keyWaiters) {
    keyWaiters = [];
    const dialog = document.getElementById("login");
    dialog.showModal();
    document.getElementById("login-form").onsubmit = (ev) => {
      ev.preventDefault();
      localStorage.setItem("evalstream-key", ev.target.elements.key.value.trim());
      dialog.close();
      const waiting = keyWaiters; keyWaiters = null; waiting.forEach((resolve) => resolve());
    };
  }
  return new Promise((resolve) => keyWaiters.push(resolve));
}
async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ""));
  for (;;) {
    const key = localStorage.getItem("evalstream-key");
    const resp = await fetch(path + (query.toString() ? "?" + query : ""),
                             { headers: key ? { Authorization: "Bearer " + key } : {} });
    if (resp.status === 401) { await askKey(); continue; }
    if (resp.status === 404) return null;
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : resp.statusText);
    return body;
  }
}

// ---- drawing helpers ----
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const num = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumFractionDigits: d }));
const time = (iso) => (iso ? iso.replace("T", " ").replace(/(:\d\d)(\.\d+)?Z$/, "$1") : "–");
const LAYOUT = { margin: { l: 48, r: 12, t: 8, b: 36 }, legend: { orientation: "h", y: -0.2 }, font: { size: 11 },
                 paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" };
function chart(el, traces, layout = {}) {
  const div = document.createElement("div");
  div.className = "chart";
  if (layout.height) div.style.height = `${layout.height}px`;
  el.appendChild(div);
  Plotly.newPlot(div, traces, { ...LAYOUT, ...layout }, { displaylogo: false, responsive: true });
  return traces.reduce((n, t) => n + (t.x || t.y || []).length, 0);
}
function table(el, headers, rows) {
  el.insertAdjacentHTML("beforeend", `<table><thead><tr>${headers.map((h) => `<th>${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.join("")}</tbody></table>`);
  return rows.length;
}
function groupBy(points, key) {
  const groups = new Map();
  for (const p of points) { const k = p[key] ?? "(all)"; if (!groups.has(k)) groups.set(k, []); groups.get(k).push(p); }
  return groups;
}

// ---- panels ----
panel({
  id: "primary", title: (f) => `${f.metric} by ${f.split}`, wide: true,
  load: async (f) => {
    const data = (await api("/v1/metrics/timeseries", scope(f, { metric: f.metric, window: f.window, group_by: f.split }))).data;
    return data.length ? data : null;
  },
  render: (el, data) => chart(el, [...groupBy(data, "group")].map(([g, pts]) => ({
    name: String(g), x: pts.map((p) => p.bucket), y: pts.map((p) => p.mean), mode: "lines+markers", type: "scatter",
    text: pts.map((p) => `n=${p.count} p95=${num(p.p95)}`),
  })), { yaxis: { title: "mean" } }),
});

const SUPPORTING = [["latency_ms", "p95", "latency p95 (ms)"], ["error", "mean", "error rate"],
                    ["edit_ratio", "mean", "edit ratio"]];
panel({
  id: "supporting", title: (f) => `Supporting indicators by ${f.split}`,
  load: async (f) => {
    const all = await Promise.all(SUPPORTING.map(([metric]) =>
      api("/v1/metrics/timeseries", scope(f, { metric, window: f.window, group_by: f.split }))));
    const found = all.map((body, i) => [SUPPORTING[i], body.data]).filter(([, data]) => data.length);
    return found.length ? found : null;
  },
  render: (el, found) => found.reduce((n, [[metric, stat, label], data]) => n + chart(el,
    [...groupBy(data, "group")].map(([g, pts]) => ({ name: String(g), x: pts.map((p) => p.bucket),
      y: pts.map((p) => p[stat]), mode: "lines", type: "scatter", showlegend: false })),
    { height: 150, yaxis: { title: { text: label, font: { size: 10 } } }, margin: { l: 48, r: 8, t: 4, b: 24 } }), 0),
});

panel({
  id: "compare", title: (f) => `A/B by ${f.split}`,
  load: async (f) => {
    const ts = (await api("/v1/metrics/timeseries", scope(f, { metric: f.metric, window: "1d", group_by: f.split }))).data;
    const sizes = [...groupBy(ts, "group")].map(([g, pts]) => [g, pts.reduce((n, p) => n + p.count, 0)])
      .filter(([g]) => g !== "(all)" && g !== "null").sort((x, y) => y[1] - x[1]);
    if (sizes.length < 2) return null;
    const [a, b] = [sizes[1][0], sizes[0][0]].sort();
    const metrics = [...new Set([f.metric, "thumbs_up", "latency_ms", "regenerated"])].join(",");
    return api("/v1/compare", scope(f, { dimension: f.split, a, b, metrics }));
  },
  render: (el, cmp) => {
    const rows = cmp.data.map((c) => `<tr><td>${esc(c.metric)}</td><td class="num">${num(c.a.value ?? c.a.mean ?? c.a.rate)}</td>` +
      `<td class="num">${num(c.b.value ?? c.b.mean ?? c.b.rate)}</td><td class="num">${num(c.difference)} ` +
      `[${num(c.difference_ci_low)}, ${num(c.difference_ci_high)}]</td><td class="num">${num(c.p_value, 4)}</td>` +
      `<td class="${c.significant ? "sig" : "nosig"}">${c.significant ? "significant" : esc(c.warning || "not significant")}</td></tr>`);
    el.insertAdjacentHTML("beforeend", `<p>a = <b>${esc(cmp.a)}</b>, b = <b>${esc(cmp.b)}</b>; difference b − a, 95% interval</p>`);
    const n = table(el, ["metric", "a", "b", "b − a", "p", ""], rows);
    // relative to a, so that rates and milliseconds share one axis
    const rel = cmp.data.filter((c) => c.difference !== null && c.a.value);
    const pct = (x, c) => (100 * x) / Math.abs(c.a.value);
    chart(el, [{ type: "bar", orientation: "h", y: rel.map((c) => c.metric), x: rel.map((c) => pct(c.difference, c)),
      marker: { color: rel.map((c) => (c.significant ? "#067647" : "#98a2b3")) },
      error_x: { type: "data", symmetric: false, array: rel.map((c) => pct((c.difference_ci_high ?? c.difference) - c.difference, c)),
                 arrayminus: rel.map((c) => pct(c.difference - (c.difference_ci_low ?? c.difference), c)) } }],
      { margin: { l: 110, r: 12, t: 8, b: 36 }, height: 200, xaxis: { title: "b − a, % of a", zeroline: true } });
    return n;
  },
});

panel({
  id: "drift", title: (f) => `Drift of outputs and inputs against ${f.reference === "before" ? "the period before" : "the range's first third"}`,
  load: async (f) => {
    const since = new Date(f.sinceIso), until = new Date(f.untilIso), span = until - since;
    const iso = (d) => d.toISOString().replace(".000Z", "Z");
    const [refSince, refUntil, curSince] = f.reference === "before"
      ? [iso(new Date(since - span)), f.sinceIso, f.sinceIso]
      : [f.sinceIso, iso(new Date(since.getTime() + span / 3)), iso(new Date(since.getTime() + span / 3))];
    const found = await Promise.all(["output_embedding", "input_embedding"].map(async (signal) => {
      const params = scope(f, { signal, reference_since: refSince, reference_until: refUntil, current_since: curSince,
                                current_until: f.untilIso, window: f.window === "1m" ? "5m" : f.window });
      delete params.since; delete params.until;
      return [signal, (await api("/v1/drift", params)).data.filter((d) => !d.insufficient_data)];
    }));
    return found.some(([, data]) => data.length) ? found : null;
  },
  render: (el, found) => chart(el, [...found.map(([signal, data]) => ({
    name: signal.replace("_embedding", "s"), x: data.map((d) => d.bucket), y: data.map((d) => d.statistic),
    mode: "lines+markers", type: "scatter", marker: { size: data.map((d) => (d.drifted ? 11 : 6)),
      line: { width: data.map((d) => (d.drifted ? 2 : 0)), color: "#c4320a" } },
    text: data.map((d) => `p=${num(d.p_value, 4)}${d.drifted ? " drifted" : ""}`),
  })), ...found.slice(0, 1).filter(([, d]) => d.length).map(([, data]) => ({ name: "threshold", mode: "lines",
    x: data.map((d) => d.bucket), y: data.map((d) => d.threshold), line: { dash: "dot", color: "#98a2b3" } }))],
    { yaxis: { title: "MMD²" } }),
});

function sparkline(times, since, until, buckets = 12) {  // failures over the range, as a small inline SVG
  const counts = new Array(buckets).fill(0), span = until - since;
  for (const t of times) { const i = Math.floor(((new Date(t) - since) / span) * buckets); if (i >= 0 && i < buckets) counts[i] += 1; }
  const top = Math.max(1, ...counts);
  const pts = counts.map((c, i) => `${(i * 80) / (buckets - 1)},${18 - (c / top) * 16}`).join(" ");
  return `<svg width="80" height="20" aria-label="failures over time"><polyline points="${pts}" fill="none" stroke="#c4320a" stroke-width="1.5"/></svg>`;
}

panel({
  id: "clusters", title: () => "Failure clusters", wide: true,
  load: async (f) => {
    const body = await api("/v1/clusters", scope(f));
    if (!body || !body.data.length) return null;
    const top = body.data.slice(0, 8);
    await Promise.all(top.slice(0, 5).map(async (c) => {  // the trend: when its failures happened
      const detail = await api(`/v1/clusters/${encodeURIComponent(c.cluster_id)}`, { failed_only: true, limit: 2000 });
      c.trend = detail ? detail.members.map((m) => m.ts).filter(Boolean) : [];
    }));
    return top;
  },
  render: (el, data, f) => table(el, ["#", "label", "lift", "failures / size", "failure rate", "trend", "example"],
    data.map((c) => {
      const ex = c.examples[0] || {};
      const link = ex.trace_id ? ` <a data-trace="${esc(ex.trace_id)}">trace</a>` : "";
      const trend = c.trend ? sparkline(c.trend, new Date(f.sinceIso), new Date(f.untilIso)) : "";
      return `<tr><td>${c.rank}</td><td>${esc(c.label)}</td><td class="num">${num(c.lift, 2)}</td>` +
        `<td class="num">${c.failures} / ${c.size}</td><td class="num">${num(c.failure_rate, 2)}</td>` +
        `<td title="${time(c.first_seen)} → ${time(c.last_seen)}">${trend}</td><td class="example">${esc(ex.input)}${link}</td></tr>`;
    })),
});

panel({
  id: "alerts", title: () => "Alerts",
  load: async (f) => {
    const body = await api("/v1/alerts", scope(f, { limit: 50 }));
    return body.data.length ? body.data : null;
  },
  render: (el, data) => table(el, ["state", "rule", "group", "value", "fired", "resolved"], data.map((a) =>
    `<tr><td><span class="badge ${a.state}">${a.state}</span> <span class="badge ${esc(a.severity)}">${esc(a.severity)}</span></td>` +
    `<td><a data-alert="${esc(a.alert_id)}">${esc(a.rule)}</a></td>` +
    `<td>${esc(Object.entries(a.group).filter(([k]) => k !== "app").map(([k, v]) => `${k}=${v}`).join(" "))}</td>` +
    `<td class="num">${num(a.value)} ${esc(a.comparator)} ${num(a.threshold)}</td><td>${time(a.fired_at)}</td>` +
    `<td>${time(a.resolved_at)}</td></tr>`)),
});

panel({
  id: "components", title: () => "Components: latency and errors",
  load: async (f) => {
    const params = scope(f); delete params.route;
    const body = await api("/v1/components", params);
    return body.data.length ? body.data : null;
  },
  render: (el, data) => {
    const names = data.map((c) => c.component);
    const n = chart(el, [{ name: "p50 ms", type: "bar", x: names, y: data.map((c) => c.p50_ms) },
      { name: "p95 ms", type: "bar", x: names, y: data.map((c) => c.p95_ms) },
      { name: "usual p95 ms", type: "scatter", mode: "markers", x: names, y: data.map((c) => c.usual_p95_ms) }],
      { barmode: "group" });
    table(el, ["component", "spans", "error rate", "in failed generations"], data.map((c) =>
      `<tr><td>${esc(c.component)}</td><td class="num">${c.spans}</td><td class="num">${num(c.error_rate, 3)}</td>` +
      `<td class="num">${num(c.implicated_share_in_failed, 2)} (ok: ${num(c.implicated_share_in_ok, 2)})</td></tr>`));
    return n;
  },
});

panel({
  id: "pipeline", title: () => "Pipeline health",
  load: async () => api("/v1/pipeline"),
  render: (el, p) => {
    const lag = Object.entries(p.lag || {});
    const running = (p.workers || []).map((w) => `${w.worker_id} (${w.state})`).join(", ") || "no worker has reported";
    const stats = [["events/s", num(p.events_per_s, 1)], ["consumer lag", num(p.total_lag, 0)],
      ["dead letters", num(p.dlq?.count, 0)], ["late events", num(p.late_events, 0)], ["last batch", time(p.last_batch_at)]];
    el.insertAdjacentHTML("beforeend", `<div class="stats">${stats.map(([k, v]) => `<div><span>${k}</span><b>${v}</b></div>`).join("")}</div>` +
      `<p>workers: ${esc(running)}</p>`);
    let n = stats.length;
    if (lag.length) n += chart(el, [{ type: "bar", x: lag.map(([k]) => `partition ${k}`), y: lag.map(([, v]) => v), name: "lag" }],
                              { height: 160 });
    const latest = p.dlq?.latest || [];
    if (latest.length) table(el, ["dead letter", "reason", "source"], latest.map((r) =>
      `<tr><td>${time(r.received_at)}</td><td>${esc(r.reason)}</td><td>${esc(r.source)}</td></tr>`));
    return n;
  },
});

// ---- details: a trace, an alert ----
async function showDetail(html) {
  document.getElementById("detail-body").innerHTML = html;
  document.getElementById("detail").showModal();
}
main.addEventListener("click", async (ev) => {
  const trace = ev.target.dataset.trace, alertId = ev.target.dataset.alert;
  if (trace) {
    const t = await api(`/v1/traces/${encodeURIComponent(trace)}`);
    if (!t) return showDetail(`<p>trace ${esc(trace)} has no spans stored</p>`);
    const flat = [];
    const walk = (s, depth) => { flat.push([s, depth]); (s.children || []).forEach((c) => walk(c, depth + 1)); };
    t.spans.forEach((s) => walk(s, 0));
    await showDetail(`<h3>trace ${esc(trace)}</h3><div id="trace-chart"></div><pre>${esc(JSON.stringify(t.generations, null, 1))}</pre>`);
    Plotly.newPlot("trace-chart", [{ type: "bar", orientation: "h", base: flat.map(([s]) => s.start),
      x: flat.map(([s]) => s.duration_ms), y: flat.map(([s, d]) => "· ".repeat(d) + s.component + " " + s.name),
      marker: { color: flat.map(([s]) => (s.status === "ok" ? "#1570ef" : "#c4320a")) } }],
      { ...LAYOUT, margin: { l: 180, r: 12, t: 8, b: 30 }, xaxis: { type: "date" }, yaxis: { autorange: "reversed" } },
      { displaylogo: false });
  } else if (alertId) {
    const a = await api(`/v1/alerts/${encodeURIComponent(alertId)}`);
    if (!a) return;
    const links = Object.entries(a.links).map(([k, v]) => `<a href="${esc(v)}" target="_blank">${k}</a>`).join(" · ");
    const deliveries = a.deliveries.map((d) => `<tr><td>${time(d.attempted_at)}</td><td>${esc(d.receiver)}</td>` +
      `<td>${d.attempt}</td><td>${d.status_code ?? esc(d.error)}</td><td>${d.delivered ? "delivered" : ""}</td></tr>`).join("");
    await showDetail(`<h3>${esc(a.rule)} <span class="badge ${a.state}">${a.state}</span></h3><p>${esc(a.description)}</p>` +
      `<p>${links}</p><h4>webhook deliveries</h4><table><tr><th>at</th><th>receiver</th><th>attempt</th><th>status</th><th></th></tr>` +
      `${deliveries}</table><pre>${esc(JSON.stringify(a.fired_windows, null, 1))}</pre>`);
  }
});

// ---- the page ----
function skeleton(f) {
  main.innerHTML = "";
  for (const p of PANELS) {
    const el = document.createElement("section");
    el.className = "panel" + (p.wide ? " wide" : "");
    el.id = `panel-${p.id}`;
    el.innerHTML = `<h2>${esc(p.title(f))}<small></small></h2><div class="body"><div class="empty">loading…</div></div>`;
    main.appendChild(el);
  }
}
async function draw(f) {
  await Promise.all(PANELS.map(async (p) => {
    const el = document.getElementById(`panel-${p.id}`);
    const body = el.querySelector(".body");
    try {
      const data = await p.load(f);
      body.innerHTML = "";
      if (!data) { body.innerHTML = '<div class="empty">no data in this range yet</div>'; el.dataset.points = "0"; return; }
      el.dataset.points = String(p.render(body, data, f) || 0);
    } catch (err) {
      body.innerHTML = `<div class="error">${esc(err.message)}</div>`;
      el.dataset.points = "0";
    }
    el.dataset.loaded = "1";
  }));
}
async function options() {  // app and route suggestions from the last 30 days
  const f = filters();
  const until = new Date(f.untilIso);
  const body = await api("/v1/metrics/timeseries", { metric: f.metric, window: "1d", group_by: "route",
    since: new Date(until.getTime() - RANGES["30d"]).toISOString(), until: f.untilIso });
  const routes = new Set((body?.data || []).map((p) => p.group).filter(Boolean));
  document.getElementById("routes").innerHTML = [...routes].map((r) => `<option value="${esc(r)}">`).join("");
}
async function refresh() {
  const f = filters();
  saveUrl();
  skeleton(f);
  document.getElementById("status").textContent = `${time(f.sinceIso)} → ${time(f.untilIso)} UTC`;
  await draw(f);
  document.body.dataset.ready = "1";
  clearTimeout(timer);
  if (f.refresh) timer = setTimeout(refresh, 30000);
}
form.addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
form.addEventListener("change", (ev) => { if (ev.target.tagName === "SELECT" || ev.target.type === "checkbox") refresh(); });
loadUrl();
refresh().then(options).catch((err) => { document.getElementById("status").textContent = err.message; });
