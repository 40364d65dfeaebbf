// The status page: live view, zone editor, health panel, events and review.
// Plain browser JavaScript, no library, nothing fetched from outside this device.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const cameras = JSON.parse(document.querySelector('meta[name="cameras"]').content);
const $ = (id) => document.getElementById(id);
const state = { camera: cameras[0], zones: [], lines: [], selected: null, drawing: null,
  drag: null, before: null };

function post(path, body) {
  return fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) el.className = cls;
  return el;
}

// -- live view: the next JPEG is asked for once the last one has loaded ---------------------

function nextFrame() {
  $("live").src = `/ui/live/${encodeURIComponent(state.camera)}.jpg?t=${Date.now()}`;
}

function setupLive() {
  const live = $("live");
  live.addEventListener("load", () => { resizeCanvas(); setTimeout(nextFrame, 250); });
  live.addEventListener("error", () => setTimeout(nextFrame, 1000));
  for (const name of cameras) {
    $("camera").append(new Option(name, name));
    $("filter-camera").append(new Option(name, name));
  }
  $("camera").addEventListener("change", (e) => {
    state.camera = e.target.value;
    loadZones();
    nextFrame();
  });
  nextFrame();
}

// -- zone editor ------------------------------------------------------------------------------

function resizeCanvas() {
  const live = $("live"), canvas = $("zones-canvas");
  if (canvas.width !== live.clientWidth || canvas.height !== live.clientHeight) {
    canvas.width = live.clientWidth;
    canvas.height = live.clientHeight;
    drawZones();
  }
}

async function loadZones() {
  const r = await fetch(`/ui/api/zones?camera=${encodeURIComponent(state.camera)}`,
    { credentials: "same-origin" });
  if (!r.ok) { $("zone-status").textContent = await r.text(); return; }
  const doc = await r.json();
  state.zones = doc.zones;
  state.lines = doc.lines;
  state.selected = null;
  drawZones();
}

function shapes() {
  const out = state.zones.map((z) => ({ kind: "zone", name: z.name, points: z.polygon }));
  for (const l of state.lines) out.push({ kind: "line", name: l.rule, points: l.line });
  if (state.drawing) out.push({ kind: "zone", name: state.drawing.name, points: state.drawing.polygon });
  return out;
}

function drawZones() {
  const canvas = $("zones-canvas"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const s of shapes()) {
    ctx.strokeStyle = s.kind === "line" ? "#e6c800" : (s.name === state.selected ? "#ff4d4d" : "#00a0e6");
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([x, y], i) => {
      const px = x * canvas.width, py = y * canvas.height;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    if (s.kind === "zone" && s !== undefined && s.points.length > 2) ctx.closePath();
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    for (const [x, y] of s.points) ctx.fillRect(x * canvas.width - 4, y * canvas.height - 4, 8, 8);
  }
  const list = $("zone-list");
  list.replaceChildren(...state.zones.map((z) => {
    const li = text("li", `${z.name}: ${z.polygon.length} points`);
    if (z.name === state.selected) li.className = "selected";
    li.addEventListener("click", () => { state.selected = z.name; drawZones(); });
    return li;
  }));
}

function eventPoint(e) {
  const rect = $("zones-canvas").getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((e.clientX - rect.left) / rect.width), clamp((e.clientY - rect.top) / rect.height)];
}

function nearestPoint(p) {
  const canvas = $("zones-canvas");
  let best = null, bestD = 12;  // pixels
  for (const s of shapes()) {
    s.points.forEach((q, i) => {
      const d = Math.hypot((q[0] - p[0]) * canvas.width, (q[1] - p[1]) * canvas.height);
      if (d < bestD) { bestD = d; best = { shape: s, index: i }; }
    });
  }
  return best;
}

function setupZones() {
  const canvas = $("zones-canvas");
  canvas.addEventListener("mousedown", (e) => {
    const p = eventPoint(e);
    const hit = nearestPoint(p);
    if (hit) { state.drag = hit; if (hit.shape.kind === "zone") state.selected = hit.shape.name; }
    else if (state.drawing) state.drawing.polygon.push(p);
    $("zone-finish").disabled = !(state.drawing && state.drawing.polygon.length >= 3);
    drawZones();
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!state.drag) return;
    state.drag.shape.points[state.drag.index] = eventPoint(e);
    drawZones();
  });
  window.addEventListener("mouseup", () => { state.drag = null; });
  $("zone-new").addEventListener("click", () => {
    state.drawing = { name: $("zone-name").value.trim() || "zone", polygon: [] };
    $("zone-status").textContent = "click on the picture to add points";
  });
  $("zone-finish").addEventListener("click", () => {
    if (!state.drawing || state.drawing.polygon.length < 3) return;
    state.zones = state.zones.filter((z) => z.name !== state.drawing.name);
    state.zones.push(state.drawing);
    state.selected = state.drawing.name;
    state.drawing = null;
    $("zone-finish").disabled = true;
    drawZones();
  });
  $("zone-delete").addEventListener("click", () => {
    state.zones = state.zones.filter((z) => z.name !== state.selected);
    state.selected = null;
    drawZones();
  });
  $("zone-save").addEventListener("click", saveZones);
}

async function saveZones() {
  const lines = {};
  for (const l of state.lines) lines[l.rule] = l.line;
  $("zone-status").textContent = "saving…";
  const r = await post("/ui/api/zones", { camera: state.camera, zones: state.zones, lines });
  const body = await r.text();
  let doc = null;
  try { doc = JSON.parse(body); } catch (err) { doc = null; }
  if (r.ok) $("zone-status").textContent = `applied (${doc.digest})`;
  else $("zone-status").textContent = doc && doc.errors ? `refused: ${doc.errors.join("; ")}` : body;
  if (r.ok) loadZones();
}

// -- health and delivery ----------------------------------------------------------------------

async function refreshHealth() {
  try {
    const [h, s] = await Promise.all([
      fetch("/healthz", { credentials: "same-origin" }).then((r) => r.json()),
      fetch("/ui/api/state", { credentials: "same-origin" }).then((r) => r.json()),
    ]);
    const badge = $("health-state");
    badge.textContent = h.state;
    badge.className = `badge ${h.state}`;
    const lanes = Object.entries(s.lanes).map(([k, v]) => `${k}: ${v.rows}`).join(", ") || "none";
    const rows = [
      ["health", h.state],
      ["uplink", s.uplink_connected ? "connected" : "disconnected"],
      ["outbox depth", s.outbox.depth],
      ["oldest undelivered", s.outbox.oldest_age_s === null ? "-" : `${s.outbox.oldest_age_s} s`],
      ["dead letters", s.outbox.dead_letters],
      ["dropped", s.outbox.dropped_total],
      ["batches sent", s.batches_sent],
      ["lanes", lanes],
      ["config", `v${s.config.version} (${s.config.source}), ${s.config.digest}`],
      ["model", `${s.model.name} sha256 ${s.model_sha256}`],
    ];
    $("health").replaceChildren(...rows.flatMap(([k, v]) => [text("dt", k), text("dd", v)]));
    $("health").dataset.uplink = s.uplink_connected ? "up" : "down";
    $("reasons").replaceChildren(...h.reasons.map((r) => text("li", r)));
  } catch (err) {
    $("health-state").textContent = "unreachable";
    $("health-state").className = "badge failing";
  }
}

// -- events and review ------------------------------------------------------------------------

function eventsQuery(before) {
  const q = new URLSearchParams({ limit: "20" });
  if ($("filter-camera").value) q.set("camera", $("filter-camera").value);
  if ($("filter-rule").value.trim()) q.set("rule", $("filter-rule").value.trim());
  if ($("filter-review").checked) q.set("review", "pending");
  if (before !== null) q.set("before", before);
  return `/ui/api/events?${q}`;
}

function reviewCell(item) {
  const td = document.createElement("td");
  const ev = item.event;
  if (ev.rule === "review") { td.textContent = `${ev.verdict} of ${ev.review_of.slice(-6)}`; return td; }
  if (item.verdict) {
    td.append(text("span", `${item.verdict.verdict}: ${item.verdict.label}`, "verdict"));
    return td;
  }
  if (!ev.snapshot) return td;  // config, health, tamper ends: nothing a person can box
  if (ev.review) td.append(text("div", "needs review", "error"));
  const label = document.createElement("input");
  label.size = 8;
  label.placeholder = ev.label;
  label.className = "relabel";
  const send = async (verdict) => {
    const body = { event_id: ev.id, verdict };
    if (verdict === "relabelled") body.label = label.value.trim();
    const r = await post("/ui/api/review", body);
    if (!r.ok) { td.append(text("div", await r.text(), "error")); return; }
    loadEvents(true);
  };
  for (const [name, verdict] of [["Confirm", "confirmed"], ["Reject", "rejected"], ["Relabel", "relabelled"]]) {
    const b = text("button", name);
    b.type = "button";
    b.className = `review-${verdict}`;
    b.addEventListener("click", () => send(verdict));
    td.append(b);
  }
  td.append(label);
  return td;
}

function eventRow(item) {
  const ev = item.event;
  const tr = document.createElement("tr");
  tr.dataset.id = ev.id;
  tr.dataset.rule = ev.rule;
  const snap = document.createElement("td");
  if (ev.snapshot) {
    const a = document.createElement("a");
    a.href = `/ui/snapshot/${ev.id}.jpg`;
    const img = document.createElement("img");
    img.src = `/ui/snapshot/${ev.id}.jpg`;
    img.alt = `snapshot of ${ev.label}`;
    img.className = "thumb";
    a.append(img);
    snap.append(a);
  }
  tr.append(snap, text("td", ev.ts), text("td", ev.camera), text("td", ev.rule),
    text("td", ev.severity), text("td", `${ev.label} ${ev.score}`),
    text("td", ev.model ? `${ev.model.name} ${ev.model.sha256}` : ""),
    text("td", item.delivery, `delivery delivery-${item.delivery}`));
  const clip = document.createElement("td");
  if (ev.clip) {
    const a = text("a", "clip");
    a.href = `/ui/clip/${ev.id}.mp4`;
    clip.append(a);
  }
  tr.append(clip, reviewCell(item));
  return tr;
}

async function loadEvents(fresh) {
  if (fresh) state.before = null;
  const r = await fetch(eventsQuery(state.before), { credentials: "same-origin" });
  if (!r.ok) return;
  const doc = await r.json();
  const body = $("events").tBodies[0];
  const rows = doc.events.map(eventRow);
  if (fresh) body.replaceChildren(...rows); else body.append(...rows);
  state.before = doc.next_before;
  $("older").hidden = doc.next_before === null;
}

function setupEvents() {
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadEvents(true); });
  $("older").addEventListener("click", () => loadEvents(false));
}

setupLive();
setupZones();
setupEvents();
loadZones();
refreshHealth();
loadEvents(true);
setInterval(refreshHealth, 2000);
// new events appear on their own, unless the user is paging back
setInterval(() => {
  const typing = document.activeElement && document.activeElement.classList.contains("relabel");
  if (!typing && (state.before === null || $("events").tBodies[0].rows.length <= 20)) loadEvents(true);
}, 3000);
