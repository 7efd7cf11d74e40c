// geocache dashboard: polls v1/dashboard once a second and redraws. No dependencies.
// Every value from the node is put in with textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const MAX_EVENTS = 200;
const TOKEN_KEY = "geocache-token";
let lastSeq = 0;
let startedMs = null;  // when the serving node started: a change means it restarted
let events = [];
let timer = null;

function takeTokenFromUrl() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (n === undefined || n === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function num(n, digits) {
  if (n === undefined || n === null) return "-";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
}

function pct(r) {
  return r === undefined || r === null ? "-" : (100 * r).toFixed(1) + "%";
}

function ms(n) {
  return n === undefined || n === null ? "-" : num(n) + " ms";
}

function renderRegions(regions) {
  const box = document.getElementById("regions");
  box.replaceChildren();
  for (const region of regions) {
    const up = region.nodes.filter((n) => n.state === "up").length;
    const keys = region.nodes.reduce((sum, n) => sum + (n.stale ? 0 : n.keys || 0), 0);
    const table = el("table", {},
      el("thead", {}, el("tr", {}, ...["node", "state", "keys", "memory", "ops/s", "hit ratio"]
        .map((h) => el("th", {}, h)))));
    const body = el("tbody");
    for (const n of region.nodes) {
      const name = el("td", { class: n.self ? "self" : "" }, n.node_id);
      body.append(el("tr", { "data-node": n.node_id, "data-state": n.state, class: n.stale ? "stale" : "" },
        name,
        el("td", { class: "state state-" + n.state }, n.state),
        el("td", { "data-field": "keys" }, num(n.keys)),
        el("td", { "data-field": "memory" }, bytes(n.used_bytes)),
        el("td", { "data-field": "ops" }, num(n.ops_per_s)),
        el("td", { "data-field": "hits" }, pct(n.hit_ratio))));
    }
    table.append(body);
    box.append(el("div", { class: "region", "data-region": region.name },
      el("h3", {}, region.name),
      el("div", { class: "summary" }, `${up}/${region.nodes.length} nodes up · ${num(keys)} keys held`),
      table));
  }
}

function renderLag(regions, lag) {
  const table = document.getElementById("lag");
  const names = regions.map((r) => r.name);
  table.replaceChildren();
  if (names.length < 2) {
    table.append(el("tbody", {}, el("tr", {}, el("td", {}, "One region: nothing to replicate to."))));
    return;
  }
  const byPair = new Map(lag.map((l) => [l.from + "\u0000" + l.to, l]));
  table.append(el("thead", {}, el("tr", {}, el("th", {}, "from \\ to"), ...names.map((n) => el("th", {}, n)))));
  const body = el("tbody");
  for (const source of names) {
    const row = el("tr", {}, el("th", {}, source));
    for (const target of names) {
      if (source === target) { row.append(el("td", { class: "same" }, "·")); continue; }
      const l = byPair.get(source + "\u0000" + target) || {};
      const cell = el("td", {
        class: "lag" + (l.resync ? " resync" : ""),
        "data-from": source, "data-to": target, "data-lag": l.lag_ms,
      }, l.resync ? "resync" : ms(l.lag_ms));
      cell.append(el("small", {}, `p50 ${ms(l.lag_p50_ms)} · p99 ${ms(l.lag_p99_ms)}`));
      cell.append(el("small", {}, `rtt ${ms(l.rtt_ms)} · queued ${num(l.queued)}`));
      row.append(cell);
    }
    body.append(row);
  }
  table.append(body);
}

function renderOrigin(regions) {
  const box = document.getElementById("origin");
  const nodes = regions.flatMap((r) => r.nodes).filter((n) => n.origin);
  box.replaceChildren();
  if (!nodes.length) { box.append(el("p", { class: "hint" }, "No origin configured.")); return; }
  const body = el("tbody");
  for (const n of nodes) {
    const o = n.origin;
    body.append(el("tr", { "data-node": n.node_id },
      el("td", {}, n.node_id), el("td", {}, o.origin),
      el("td", { class: "breaker-" + o.breaker }, o.breaker),
      el("td", {}, num(o.loads)), el("td", {}, num(o.errors)), el("td", {}, num(o.stale_served))));
  }
  box.append(el("table", {}, el("thead", {}, el("tr", {},
    ...["node", "origin", "breaker", "loads", "errors", "stale served"].map((h) => el("th", {}, h)))), body));
}

function renderEvents(fresh) {
  // Newest first by time: other nodes' events arrive a refresh after they happened.
  events = fresh.concat(events)
    .sort((a, b) => b.at_ms - a.at_ms || b.seq - a.seq)
    .slice(0, MAX_EVENTS);
  const list = document.getElementById("events");
  list.replaceChildren();
  if (!events.length) { list.append(el("li", { class: "hint" }, "Nothing yet.")); return; }
  for (const e of events) {
    const when = new Date(e.at_ms);
    const text = [e.subject, e.region && e.region !== e.subject ? `(${e.region})` : "", e.detail]
      .filter(Boolean).join(" ");
    list.append(el("li", { "data-kind": e.kind, "data-subject": e.subject, "data-reporter": e.reporter },
      el("time", { datetime: when.toISOString() }, when.toLocaleTimeString("en-GB")),
      el("span", { class: "kind kind-" + e.kind }, e.kind.replace("_", " ")),
      el("span", {}, text + (e.reporter ? ` · seen by ${e.reporter}` : ""))));
  }
}

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
}

async function poll() {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  let reply;
  try {
    reply = await fetch("v1/dashboard?since=" + lastSeq, { headers, cache: "no-store" });
  } catch (err) {
    setStatus("error", "node unreachable, retrying");
    return true;
  }
  if (reply.status === 401) {
    document.getElementById("login").hidden = false;
    document.getElementById("main").hidden = true;
    document.getElementById("login-error").textContent = token ? "wrong token" : "";
    setStatus("error", "needs a token");
    return false;
  }
  if (!reply.ok) { setStatus("error", "node answered " + reply.status); return true; }
  const data = await reply.json();
  document.getElementById("served-by").textContent =
    `through ${data.node_id} (${data.region})`;
  renderRegions(data.regions);
  renderLag(data.regions, data.lag);
  renderOrigin(data.regions);
  if (startedMs !== null && data.started_ms !== startedMs) {
    // The node restarted: its timeline is new, and this answer skipped its start (it
    // counted from our old number). Start over: the next poll asks for all of it.
    events = [];
    lastSeq = 0;
    renderEvents([]);
  } else {
    renderEvents(data.events);
    lastSeq = data.last_seq;
  }
  startedMs = data.started_ms;
  document.getElementById("updated").textContent =
    "updated " + new Date(data.at_ms).toLocaleTimeString("en-GB");
  setStatus("live", "live");
  return true;
}

async function loop() {
  timer = null;
  if (await poll()) timer = setTimeout(loop, POLL_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  if (timer === null) loop();
});

takeTokenFromUrl();
loop();
