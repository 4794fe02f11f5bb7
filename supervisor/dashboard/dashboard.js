// The YADTQ dashboard: one page, no framework, no network but this server's /api.
// Every value from the server (task ids, names, errors, results) is user data: it reaches the page
// only as text (el() appends strings as text nodes; attributes are set with setAttribute), never as HTML.
"use strict";

const POLL_MS = 1500;          // how often the page asks /api again
const CHART_SECONDS = 300;     // the tasks-per-second chart shows the last 5 minutes
const TOKEN_KEY = "yadtq-token";
const history = [];            // [{at, ended}] from successive /api/overview answers
let last = null;               // the last /api/overview answer
let clockSkew = 0;             // server time minus this browser's, in seconds
let current = null;            // the view shown: {name, arg, update}
let timer = null;
let generation = 0;            // of refresh(): only the newest one goes on polling

// --- building the page safely ---
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}
const $ = (id) => document.getElementById(id);
const serverNow = () => Date.now() / 1000 + clockSkew;
const taskLink = (id) => el("a", { href: "#/task/" + encodeURIComponent(id), class: "mono" }, id);
const statusCell = (s) => el("td", { class: "status status-" + (s || "none") }, s || "?");

function age(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 10) return s.toFixed(1) + "s";
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.floor(s / 60) + "m " + Math.round(s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}
const ago = (at) => (typeof at === "number" ? age(serverNow() - at) + " ago" : "–");
const clock = (at) => (typeof at === "number" ? new Date(at * 1000).toLocaleTimeString() : "–");
const bytes = (n) => (typeof n === "number" ? (n / 1048576).toFixed(1) + " MB" : "–");

function table(headers, rows, empty) {
  if (!rows.length) return el("div", { class: "empty" }, empty || "nothing here");
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

// --- talking to the server ---
async function api(path) {
  const r = await fetch("/api/" + path, { cache: "no-store" });
  if (!r.ok) throw new Error("/api/" + path + ": " + r.status + " " + (await r.text()).slice(0, 300));
  return r.json();
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = "banner " + (kind || "info");
}

// POST an action; the server's answer (a refusal's message, or each id's outcome) is shown.
async function act(path, body, button) {
  if (button) button.disabled = true;
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  try {
    const r = await fetch("/api/" + path, { method: "POST", headers, body: JSON.stringify(body) });
    const text = await r.text();
    if (!r.ok) {
      say("Refused (" + r.status + "): " + text.trim(), "error");
      return null;
    }
    const answer = JSON.parse(text);
    const lines = answer.outcomes.slice(0, 20).map((o) => o.id + ": " + o.result + (o.detail ? " (" + o.detail + ")" : ""));
    if (answer.outcomes.length > 20) lines.push("… and " + (answer.outcomes.length - 20) + " more");
    say(path + ": " + answer.done + " of " + answer.count + " done\n" + lines.join("\n"), answer.done ? "info" : "error");
    refresh();
    return answer;
  } catch (e) {
    say(path + " failed: " + e.message, "error");
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

function actionButton(label, path, body, confirmText) {
  const b = el("button", { class: "action", type: "button", "data-action": path }, label);
  b.addEventListener("click", () => {
    if (confirmText && !window.confirm(confirmText)) return;
    act(path, typeof body === "function" ? body() : body, b);
  });
  return b;
}

// --- the overview ---
function remember(o) {
  const ended = Object.values(o.totals || {}).reduce((a, b) => a + b, 0);
  if (o.totals) history.push({ at: o.at, ended });
  while (history.length && history[0].at < o.at - CHART_SECONDS - 5) history.shift();
}

function rates() {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i].at - history[i - 1].at;
    if (dt > 0) out.push({ at: history[i].at, rate: Math.max(0, history[i].ended - history[i - 1].ended) / dt });
  }
  return out;
}

// The smallest of 1, 2, 2.5, 5 (times a power of ten) at or above x: the chart's grid step.
function niceStep(x) {
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  return p * ([1, 2, 2.5, 5, 10].find((m) => m * p >= x) || 10);
}

function drawChart(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 180;
  canvas.width = w * ratio;
  canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const pad = { l: 40, r: 10, t: 10, b: 20 };
  const pts = rates();
  const top = 4 * niceStep(Math.max(1, ...pts.map((p) => p.rate)) * 1.1 / 4);
  const end = last ? last.at : serverNow(), start = end - CHART_SECONDS;
  const x = (at) => pad.l + ((at - start) / CHART_SECONDS) * (w - pad.l - pad.r);
  const y = (r) => h - pad.b - (r / top) * (h - pad.t - pad.b);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#6b7585";
  g.strokeStyle = "#e6ebf2";
  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i;
    g.beginPath(); g.moveTo(pad.l, y(v)); g.lineTo(w - pad.r, y(v)); g.stroke();
    g.fillText(Number.isInteger(v) ? v.toString() : v.toFixed(1), 4, y(v) + 4);
  }
  for (let m = 0; m <= CHART_SECONDS / 60; m++) g.fillText(m ? "-" + m + "m" : "now", x(end - m * 60) - (m ? 10 : 22), h - 5);
  if (pts.length < 1) { g.fillText("collecting…", pad.l + 10, pad.t + 14); return; }
  g.strokeStyle = "#2f6fde";
  g.fillStyle = "rgba(47,111,222,.12)";
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p.at), y(p.rate)) : g.moveTo(x(p.at), y(p.rate))));
  g.stroke();
  g.lineTo(x(pts[pts.length - 1].at), y(0)); g.lineTo(x(pts[0].at), y(0)); g.closePath(); g.fill();
}

function card(id, label, value, sub) {
  return el("div", { class: "card", id }, el("div", { class: "label" }, label),
            el("div", { class: "value" }, value), el("div", { class: "sub" }, sub || ""));
}

const overview = {
  setup(root) {
    root.append(el("h2", {}, "Overview"), el("div", { id: "health" }), el("div", { class: "cards", id: "cards" }),
      el("div", { class: "row2" },
        el("div", { class: "panel" }, el("h3", {}, "Tasks ended per second, last 5 minutes"),
           el("canvas", { id: "chart" }), el("div", { class: "sub", id: "rate" })),
        el("div", { class: "panel" }, el("h3", {}, "Load per worker"), el("div", { id: "loads" }))),
      el("div", { class: "panel" }, el("h3", {}, "Backlog per topic"), el("div", { id: "backlog" })));
  },
  async update() {
    const o = last;
    if (!o) return;
    const ws = (o.workers || []).filter((w) => w.id !== "scheduler");
    const sched = (o.workers || []).find((w) => w.id === "scheduler");
    const t = o.totals || {};
    const backlog = o.backlog ? Object.values(o.backlog).reduce((a, b) => a + b, 0) : null;
    const restarts = (o.workers || []).reduce((a, w) => a + (w.restarts || 0), 0);
    const health = o.health || [];
    $("health").replaceChildren(el("div", { class: "banner " + (health.length ? "error" : "info"), id: "health-text" },
      health.length ? "Unhealthy: " + health.join("; ") : "Healthy: scheduler up, workers live, Kafka and Redis answer"));
    const r = rates();
    $("cards").replaceChildren(
      card("workers-live", "Workers live", ws.filter((w) => w.up).length + " / " + ws.length,
           "scheduler " + (sched && sched.up ? "up" : "down")),
      card("backlog-total", "Backlog", backlog === null ? "–" : backlog, "unread messages"),
      card("oldest", "Oldest waiting", o.oldest_unstarted_age ? age(o.oldest_unstarted_age) : "none", "since submitted"),
      card("done", "Done", t.success || 0, "succeeded"),
      card("failed", "Failed", t.failed || 0, "cancelled " + (t.cancelled || 0)),
      card("retries", "Retries waiting", o.retries_waiting ?? "–", ""),
      card("dead", "Dead letters", o.dead_letters ? o.dead_letters.kept : "–",
           o.dead_letters ? o.dead_letters.total + " ever" : ""),
      card("restarts", "Restarts", restarts, "processes restarted"));
    const maxLoad = Math.max(1, ...ws.map((w) => w.load || 0));
    $("loads").replaceChildren(...ws.map((w) => {
      const fill = el("div", {});
      fill.style.width = ((100 * (w.load || 0)) / maxLoad).toFixed(0) + "%";
      return el("div", { class: "loadrow", "data-worker": w.id },
        el("span", { class: w.up ? "up" : "down" }, w.id), el("div", { class: "bar" }, fill), el("span", { class: "n" }, w.load || 0));
    }));
    $("backlog").replaceChildren(o.backlog ? table(["topic", "messages"],
      Object.entries(o.backlog).map(([k, v]) => el("tr", {}, el("td", { class: "mono" }, k), el("td", {}, v))))
      : el("div", { class: "empty" }, (o.errors && o.errors.backlog) || "Kafka does not answer"));
    $("rate").textContent = r.length ? "now " + r[r.length - 1].rate.toFixed(1) + " tasks/s" : "";
    drawChart($("chart"));
  },
};

// --- workers ---
const workers = {
  setup(root) { root.append(el("h2", {}, "Workers"), el("div", { id: "workers" })); },
  async update() {
    const [ws, running] = await Promise.all([api("workers"), api("running")]);
    const on = {};
    for (const t of running) (on[t.placed_on || t.worker] ||= []).push(t.id);
    $("workers").replaceChildren(table(["process", "state", "pid", "heartbeat", "RSS", "CPU", "load", "running", "restarts", "deaths"],
      ws.map((w) => el("tr", { "data-worker": w.id },
        el("td", {}, w.id), el("td", { class: w.up ? "up" : "down" }, w.up ? "up" : w.alive ? "silent" : "down"),
        el("td", {}, w.pid ?? "–"), el("td", {}, w.heartbeat_age === null ? "–" : age(w.heartbeat_age) + " ago"),
        el("td", {}, bytes(w.rss)), el("td", {}, typeof w.cpu === "number" ? w.cpu.toFixed(0) + "%" : "–"),
        el("td", {}, w.load ?? "–"), el("td", {}, (on[w.id] || []).map((id) => el("div", {}, taskLink(id)))),
        el("td", {}, w.restarts), el("td", {}, w.deaths)))));
  },
};

// --- tasks ---
const STATUSES = ["", "queued", "processing", "success", "failed", "cancelled"];
const tasks = {
  setup(root, arg) {
    const q = new URLSearchParams(arg || "");
    const status = el("select", { id: "filter-status" }, STATUSES.map((s) => el("option", { value: s }, s || "any status")));
    status.value = q.get("status") || "";
    const name = el("input", { id: "filter-name", placeholder: "task name", value: q.get("name") || "" });
    const find = el("input", { id: "find-id", placeholder: "task id", size: 38 });
    const go = () => { location.hash = "#/tasks?" + new URLSearchParams({ status: status.value, name: name.value.trim() }); };
    status.addEventListener("change", go);
    name.addEventListener("change", go);
    root.append(el("h2", {}, "Tasks"),
      el("div", { class: "filters" }, status, name,
        el("form", { id: "find-form", onsubmit: (e) => { e.preventDefault(); if (find.value.trim()) location.hash = "#/task/" + encodeURIComponent(find.value.trim()); } },
          find, el("button", { type: "submit" }, "Find"))),
      el("div", { id: "tasks" }));
    this.query = new URLSearchParams();
    if (status.value) this.query.set("status", status.value);
    if (name.value.trim()) this.query.set("name", name.value.trim());
    this.query.set("limit", "100");
  },
  async update() {
    const list = await api("tasks?" + this.query);
    $("tasks").replaceChildren(table(["id", "task", "status", "worker", "attempt", "submitted", "error"],
      list.map((t) => el("tr", { "data-id": t.id }, el("td", {}, taskLink(t.id)), el("td", {}, t.task || ""),
        statusCell(t.status), el("td", {}, t.worker || ""), el("td", {}, t.attempt ?? ""), el("td", {}, ago(t.submitted_at)),
        el("td", { class: "mono" }, t.error || ""))), "no task matches"));
  },
};

// --- one task ---
const EVENTS = [["submitted_at", "submitted"], ["first_started_at", "first started"], ["started_at", "last started"],
  ["failed_at", "last raised"], ["retry_at", "retry due"], ["cancelled_at", "cancelled"], ["reopened_at", "retried by operator"],
  ["finished_at", "finished"]];

// A time axis of events [{k, label, at}]: one line each, its dot placed between the first and the last.
function timeline(evs) {
  evs.sort((a, b) => a.at - b.at);
  if (!evs.length) return el("div", { class: "empty" }, "no timestamps yet");
  const t0 = evs[0].at, span = Math.max(1e-3, evs[evs.length - 1].at - t0);
  return el("div", { class: "timeline" }, evs.map((e) => {
    const dot = el("div", { class: "dot ev-" + e.k });
    dot.style.left = ((100 * (e.at - t0)) / span).toFixed(1) + "%";
    return el("div", { class: "event" }, el("span", { title: e.label }, e.label), el("span", { class: "mono" }, "+" + (e.at - t0).toFixed(3) + "s"),
      el("div", { class: "track", title: clock(e.at) }, dot));
  }));
}

// The record's own timestamps, for a task whose history is empty (written before histories were kept).
const recordEvents = (record) => EVENTS.filter(([k]) => isFinite(parseFloat(record[k])))
  .map(([k, label]) => ({ k, label, at: parseFloat(record[k]) }));

// What one history entry (client/lua/common.lua note()) says, in a few words.
function said(e) {
  const text = (v) => (v === undefined || v === null ? "" : String(v));
  switch (e.event) {
    case "assigned": return "placed on " + text(e.worker);
    case "moved": return "moved from " + text(e.from) + " to " + text(e.to);
    case "started": return "started on " + text(e.worker) + " (pid " + text(e.pid) + ")";
    case "raised": return "raised " + text(e.error) + "; retry at " + clock(e.retry_at);
    case "died": return "its worker " + text(e.worker) + " died (pid " + text(e.pid) + ")";
    case "ended": return "ended " + text(e.status) + (e.error ? ": " + text(e.error) : "");
    case "released": return "handed back (its worker stopped)";
    case "cancelled": return "cancelled by " + text(e.by);
    case "reopened": return "retried by " + text(e.by) + " (it was " + text(e.was) + ")";
    default: return text(e.event) + (e.error ? ": " + text(e.error) : "");
  }
}

const ENDS = new Set(["ended", "raised", "died", "released", "cancelled", "unreadable", "rejected", "quarantined", "reopened"]);

// The history as runs: a row from a placement or a start to what ended it.
function runs(entries) {
  const rows = [];
  let cur = null;
  for (const e of entries) {
    const placed = e.event === "assigned" || e.event === "moved";
    if (placed || (e.event === "started" && !(cur && cur.attempt === e.attempt && !cur.started && !cur.end))) {
      cur = { attempt: e.attempt, worker: e.worker ?? e.to, placed: e };
      rows.push(cur);
    }
    if (e.event === "started") Object.assign(cur, { started: e, worker: e.worker });
    else if (ENDS.has(e.event)) {
      if (!cur || cur.end) { cur = { attempt: e.attempt }; rows.push(cur); }
      cur.end = e;
    }
  }
  return rows;
}

function attemptsTable(entries) {
  return table(["attempt", "worker", "started", "ended how", "ran for"], runs(entries).map((r) => {
    const ran = r.started ? (r.end ? r.end.at : serverNow()) - r.started.at : null;
    const how = r.end ? said(r.end) : r.started ? "running" : "waiting to start";
    return el("tr", { class: "run" }, el("td", {}, r.attempt ?? ""), el("td", {}, r.worker ?? ""),
      el("td", {}, r.started ? clock(r.started.at) : "–"),
      el("td", { class: "mono" + (r.end ? " ev-" + r.end.event + " st-" + (r.end.status || "") : "") }, how),
      el("td", {}, ran === null ? "–" : age(ran)));
  }), "no attempt yet");
}

const task = {
  setup(root, arg) {
    this.id = arg;
    root.append(el("h2", {}, "Task ", el("span", { class: "mono" }, arg)),
      el("div", { class: "actions" },
        actionButton("Retry", "retry", { ids: [arg] }), actionButton("Cancel", "cancel", { ids: [arg] }, "Cancel this task?")),
      el("div", { id: "task" }));
  },
  async update() {
    const r = await fetch("/api/tasks/" + encodeURIComponent(this.id), { cache: "no-store" });
    if (r.status === 404) { $("task").replaceChildren(el("div", { class: "empty" }, "no such task (never placed, or expired)")); return; }
    if (!r.ok) throw new Error("/api/tasks: " + r.status);
    const t = await r.json(), rec = t.record;
    const tb = rec.traceback || "";
    $("task").replaceChildren(
      el("div", { class: "row2" },
        el("div", { class: "panel" }, el("h3", {}, "Record"),
          el("dl", { class: "record", id: "record" }, Object.keys(rec).sort().filter((k) => k !== "traceback").map((k) =>
            [el("dt", {}, k), el("dd", { "data-field": k, class: k === "status" ? "status status-" + rec[k] : "" }, rec[k])]))),
        el("div", { class: "panel" }, el("h3", {}, "Attempts"),
          el("div", {}, "attempt " + t.attempts.attempt + " · retries " + t.attempts.retries + " · worker deaths " + t.attempts.worker_deaths),
          t.placement ? el("div", {}, "placed on " + t.placement.worker + " (attempt " + t.placement.attempt + ")") : "",
          t.retry_due ? el("div", {}, "retry due at " + clock(t.retry_due)) : "",
          el("h3", {}, "Timeline"),
          timeline(t.history && t.history.length ? t.history.map((e) => ({ k: e.event + (e.status ? " st-" + e.status : ""), label: said(e), at: e.at })) : recordEvents(rec)))),
      t.history && t.history.length ? el("div", { class: "panel", id: "runs" }, el("h3", {}, "Runs"), attemptsTable(t.history)) : "",
      tb ? el("div", { class: "panel" }, el("h3", {}, "Traceback"), el("pre", { id: "traceback" }, tb)) : "");
  },
};

// --- failed tasks, by error type ---
const failed = {
  setup(root) { root.append(el("h2", {}, "Failed tasks by error type"), el("div", { id: "groups" })); },
  async update() {
    const groups = await api("failed-groups");
    $("groups").replaceChildren(table(["error type", "tasks", "newest", ""],
      groups.map((g) => el("tr", { "data-error-type": g.error_type }, el("td", { class: "mono" }, g.error_type), el("td", {}, g.count),
        el("td", {}, g.ids.slice(0, 5).map((id) => el("div", {}, taskLink(id))), g.ids.length > 5 ? "…" : ""),
        el("td", {}, actionButton("Retry all " + g.count, "retry", { ids: g.ids }, "Retry " + g.count + " failed task(s)?")))),
      "no failed task among the last 10000"));
  },
};

// --- the retry schedule ---
const retries = {
  setup(root) { root.append(el("h2", {}, "Retry schedule"), el("div", { id: "schedule" })); },
  async update() {
    const list = await api("retries?limit=200");
    $("schedule").replaceChildren(table(["id", "task", "retries", "due in", "last error"],
      list.map((t) => el("tr", { "data-id": t.id }, el("td", {}, taskLink(t.id)), el("td", {}, t.task || ""), el("td", {}, t.retries ?? ""),
        el("td", {}, age(t.due - serverNow())), el("td", { class: "mono" }, t.error || ""))), "no task waits for a retry"));
  },
};

// --- dead letters ---
const dead = {
  setup(root) {
    root.append(el("h2", {}, "Dead letters"),
      el("div", { class: "actions" }, actionButton("Replay all", "dead-letters/replay", { all: true }, "Replay every dead letter?")),
      el("div", { id: "letters" }));
  },
  async update() {
    const list = await api("dead-letters?limit=200");
    $("letters").replaceChildren(table(["letter", "when", "from", "task", "error", "message", ""],
      list.map((d) => el("tr", { "data-letter": d.letter }, el("td", { class: "mono" }, d.letter), el("td", {}, ago(d.at)),
        el("td", {}, d.from || ""), el("td", {}, d.id ? taskLink(d.id) : ""), el("td", { class: "mono" }, d.error),
        el("td", { class: "mono" }, d.message), el("td", {}, actionButton("Replay", "dead-letters/replay", { ids: [d.letter] })))),
      "no dead letters"));
  },
};

// --- routing and the live loop ---
const VIEWS = { "": overview, workers, tasks, task, failed, retries, dead };
const NAV = { "": "overview", task: "tasks" };

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const slash = hash.indexOf("/"), qmark = hash.indexOf("?");
  let name = hash, arg = "";
  if (slash >= 0 && (qmark < 0 || slash < qmark)) { name = hash.slice(0, slash); arg = decodeURIComponent(hash.slice(slash + 1)); }
  else if (qmark >= 0) { name = hash.slice(0, qmark); arg = hash.slice(qmark + 1); }
  const view = VIEWS[name] || overview;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === (NAV[name] ?? name) || (!VIEWS[name] && a.dataset.view === "overview"));
  const root = $("view");
  root.replaceChildren();
  root.dataset.view = VIEWS[name] ? name || "overview" : "overview";
  current = view;
  view.setup(root, arg);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const view = current, mine = ++generation;
  try {
    last = await api("overview");
    clockSkew = last.at - Date.now() / 1000;
    remember(last);
    if (view === current && mine === generation) await view.update();
    $("connection").className = "banner hidden";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    const c = $("connection");
    c.textContent = "Cannot read the cluster: " + e.message;
    c.className = "banner error";
  }
  if (mine === generation) timer = setTimeout(refresh, POLL_MS);
}

function showMode() {
  const on = Boolean(token());
  $("mode").textContent = on ? "actions on" : "read-only";
  $("mode").className = "badge" + (on ? " on" : "");
  $("token").value = "";
  $("token").placeholder = on ? "token set" : "read-only";
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    showMode();
  });
  $("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showMode(); });
  window.addEventListener("hashchange", () => { $("message").className = "banner hidden"; route(); });
  window.addEventListener("resize", () => current === overview && drawChart($("chart")));
  showMode();
  route();
});
