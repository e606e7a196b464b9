// itmstream browser demo: job upload/progress/download and a live WebSocket stream (docs/PROTOCOL.md v1).
// Plain ES2020, no build step, no third-party code. State is exposed on window.itmDemo for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const demo = { job: null, live: { sent: 0, results: 0, drops: 0, fps: 0, latencyMs: null, closed: null } };
window.itmDemo = demo;

function apiKey() { return $("api-key").value.trim(); }
function authHeaders() { return apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {}; }

async function problemText(response) {
  try {
    const p = await response.json();
    return `${response.status} ${p.title || ""}: ${p.detail || ""}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) throw new Error(await problemText(response));
  return response.status === 204 ? null : response.json();
}

function formatBytes(n) {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// -- operators ------------------------------------------------------------------------------------

async function loadOperators() {
  try {
    const operators = await api("/v1/operators");
    const select = $("operator");
    select.replaceChildren(...operators.map((op) => {
      const option = new Option(op.name, op.name);
      option.title = op.summary;
      return option;
    }));
    if (operators.some((op) => op.name === "bt2446a")) select.value = "bt2446a";
  } catch (err) {
    setStatus("convert-status", `cannot list operators: ${err.message}`, true);
  }
}

// -- conversion jobs ------------------------------------------------------------------------------

function upload(file, params) {
  // XMLHttpRequest rather than fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/jobs?${new URLSearchParams(params)}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-Filename", file.name.replace(/[^\x20-\x7e]/g, "_"));
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      $("upload-progress").value = e.loaded / e.total;
      $("upload-text").textContent = `${formatBytes(e.loaded)} / ${formatBytes(e.total)}`;
    };
    xhr.onload = () => {
      if (xhr.status === 202) resolve(xhr.response);
      else {
        const p = xhr.response || {};
        reject(new Error(`${xhr.status} ${p.title || ""}: ${p.detail || xhr.statusText}`));
      }
    };
    xhr.onerror = () => reject(new Error("upload failed (network)"));
    xhr.send(file);
  });
}

function showJob(job) {
  demo.job = job;
  const p = job.progress;
  $("job-progress").value = p.frames_total ? Math.min(1, p.frames_done / p.frames_total) : (job.state === "succeeded" ? 1 : 0);
  const eta = p.eta_s != null ? `, ETA ${p.eta_s.toFixed(0)} s` : "";
  $("job-text").textContent = `${job.state} ${p.frames_done}/${p.frames_total || "?"} @ ${p.fps.toFixed(1)} fps${eta}`;
}

async function offerDownload(job) {
  const link = $("download");
  const name = `${job.filename.replace(/\.[^.]+$/, "") || "output"}_hdr10.${job.options.container || "mp4"}`;
  if (apiKey()) {
    // A plain link cannot carry the Authorization header: fetch the file and link to a blob instead.
    const response = await fetch(job.result_url, { headers: authHeaders() });
    if (!response.ok) throw new Error(await problemText(response));
    link.href = URL.createObjectURL(await response.blob());
  } else {
    link.href = job.result_url;
  }
  link.download = name;
  link.textContent = `Download ${name} (${formatBytes(job.result_bytes)})`;
  link.hidden = false;
}

async function waitForJob(id) {
  for (;;) {
    const job = await api(`/v1/jobs/${id}`);
    showJob(job);
    if (job.state === "succeeded") return job;
    if (job.state === "failed" || job.state === "cancelled") throw new Error(`job ${job.state}: ${job.error || ""}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function onConvert(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  $("convert-button").disabled = true;
  $("download").hidden = true;
  $("upload-progress").value = 0;
  $("job-progress").value = 0;
  setStatus("convert-status", "uploading…");
  try {
    const params = { operator: $("operator").value, peak_nits: $("peak").value, codec: $("codec").value };
    const job = await upload(file, params);
    setStatus("convert-status", `job ${job.id} accepted`);
    refreshJobs();
    const done = await waitForJob(job.id);
    await offerDownload(done);
    setStatus("convert-status", `job ${done.id} succeeded`);
  } catch (err) {
    setStatus("convert-status", err.message, true);
  } finally {
    $("convert-button").disabled = false;
    refreshJobs();
  }
}

async function refreshJobs() {
  try {
    const page = await api("/v1/jobs?limit=10");
    const rows = page.items.map((job) => {
      const tr = document.createElement("tr");
      tr.dataset.state = job.state;
      for (const text of [job.filename, job.state, `${job.progress.frames_done}/${job.progress.frames_total || "?"}`]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.className = "small";
      button.type = "button";
      button.textContent = job.state === "queued" || job.state === "running" ? "Cancel" : "Delete";
      button.onclick = async () => {
        try { await api(`/v1/jobs/${job.id}`, { method: "DELETE" }); } catch (err) { setStatus("convert-status", err.message, true); }
        refreshJobs();
      };
      td.append(button);
      tr.append(td);
      return tr;
    });
    $("jobs").tBodies[0].replaceChildren(...rows);
  } catch (_) {
    // Listing needs the key when auth is on; the status line already tells about failures that matter.
  }
}

// -- live stream ----------------------------------------------------------------------------------

const live = { ws: null, ready: null, timer: null, seq: 0, capture: null, latencies: [], resultsAtTick: 0, tick: 0 };

function nowUs() { return Math.round(performance.now() * 1000); }

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = apiKey() ? `?access_token=${encodeURIComponent(apiKey())}` : "";
  return `${scheme}//${location.host}/v1/stream${token}`;
}

function sendFrame() {
  const { ws, ready, capture } = live;
  const video = $("live-video");
  if (!ws || ws.readyState !== WebSocket.OPEN || !ready || video.readyState < 2) return;
  // Live mode: the server keeps only the newest waiting frame, so never queue more than a couple locally.
  if (ws.bufferedAmount > 2 * ready.frame_bytes) return;
  const ctx = capture.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, capture.width, capture.height);
  const rgba = ctx.getImageData(0, 0, capture.width, capture.height).data;
  const message = new ArrayBuffer(16 + rgba.length);
  const header = new DataView(message);
  header.setUint32(0, live.seq++, true);
  header.setUint32(4, 0, true);
  header.setBigUint64(8, BigInt(nowUs()), true);
  new Uint8Array(message, 16).set(rgba);
  ws.send(message);
  demo.live.sent += 1;
}

function drawResult(buffer) {
  const { width, height } = live.ready;
  const view = new DataView(buffer);
  const clientTs = Number(view.getBigUint64(8, true));
  live.latencies.push((nowUs() - clientTs) / 1000);
  const words = new Uint32Array(buffer, 48, width * height);
  const canvas = $("live-output");
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const out = image.data;
  for (let i = 0, j = 0; i < words.length; i++, j += 4) {
    const w = words[i];
    out[j] = (w & 1023) >> 2;            // R: bits 0-9
    out[j + 1] = ((w >>> 10) & 1023) >> 2; // G: bits 10-19
    out[j + 2] = ((w >>> 20) & 1023) >> 2; // B: bits 20-29
    out[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  demo.live.results += 1;
}

function updateStats() {
  const now = performance.now();
  const seconds = (now - live.tick) / 1000;
  if (seconds <= 0) return;
  demo.live.fps = (demo.live.results - live.resultsAtTick) / seconds;
  const sorted = live.latencies.sort((a, b) => a - b);
  demo.live.latencyMs = sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
  live.latencies = [];
  live.tick = now;
  live.resultsAtTick = demo.live.results;
  $("stat-fps").textContent = demo.live.fps.toFixed(1);
  $("stat-latency").textContent = demo.live.latencyMs == null ? "–" : `${demo.live.latencyMs.toFixed(0)} ms`;
  $("stat-sent").textContent = demo.live.sent;
  $("stat-results").textContent = demo.live.results;
  $("stat-drops").textContent = demo.live.drops;
}

async function onLiveStart(event) {
  event.preventDefault();
  const file = $("live-file").files[0];
  if (!file) return;
  const video = $("live-video");
  video.src = URL.createObjectURL(file);
  try {
    await video.play();
  } catch (err) {
    setStatus("live-status", `cannot play this video: ${err.message}`, true);
    return;
  }
  const width = Number($("live-width").value);
  const height = Math.max(16, 2 * Math.round((width * video.videoHeight) / video.videoWidth / 2));
  live.capture = document.createElement("canvas");
  live.capture.width = width;
  live.capture.height = height;
  $("live-output").width = width;
  $("live-output").height = height;
  Object.assign(demo.live, { sent: 0, results: 0, drops: 0, fps: 0, latencyMs: null, closed: null });
  live.seq = 0;
  live.ready = null;
  const ws = new WebSocket(streamUrl());
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "hello", version: 1, width, height, input: "rgba", output: "rgb10a2", mode: "live",
      colour: "bt709", operator: $("operator").value || undefined, credits: Number($("live-credits").value),
    }));
  };
  ws.onmessage = (message) => {
    if (typeof message.data === "string") {
      const data = JSON.parse(message.data);
      if (data.type === "ready") {
        live.ready = data;
        demo.live.session = data.session;
        setStatus("live-status", `streaming ${width}x${height} through ${data.operator} (session ${data.session})`);
        live.tick = performance.now();
        live.resultsAtTick = 0;
        live.timer = setInterval(() => { sendFrame(); }, 1000 / 30);
        live.statsTimer = setInterval(updateStats, 1000);
      } else if (data.type === "drop") {
        demo.live.drops += 1;
      }
      return;
    }
    drawResult(message.data);
    ws.send(JSON.stringify({ type: "credit", n: 1 })); // one credit back per result consumed (§5)
  };
  ws.onclose = (e) => {
    clearInterval(live.timer);
    clearInterval(live.statsTimer);
    updateStats();
    demo.live.closed = { code: e.code, reason: e.reason };
    setStatus("live-status", `stream closed: ${e.code} ${e.reason}`, e.code !== 1000);
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
    video.pause();
  };
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
}

function onLiveStop() {
  clearInterval(live.timer);
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "bye" }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("convert-form").addEventListener("submit", onConvert);
  $("live-form").addEventListener("submit", onLiveStart);
  $("live-stop").addEventListener("click", onLiveStop);
  loadOperators();
  refreshJobs();
  setInterval(refreshJobs, 5000);
});
