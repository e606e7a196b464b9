// itmstream browser demo: job upload/progress/download, a before/after still preview with an exposure
// slider and a light histogram, and a live WebSocket stream (docs/PROTOCOL.md v1).
// Plain ES2020, no build step, no third-party code. State is exposed on window.itmDemo for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const demo = {
  defaults: null, operators: [], job: null,
  preview: { renders: 0, white: 203, maxCLL: null, maxFALL: null, width: 0, height: 0, error: null },
  live: { sent: 0, results: 0, drops: 0, fps: 0, latencyMs: null, closed: null },
};
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

async function loadDefaults() {
  // What the server uses for a request that names nothing (ITM_DEFAULT_*): the page preselects exactly that.
  try {
    const response = await fetch("/demo/defaults");
    return response.ok ? await response.json() : null;
  } catch (_) {
    return null;
  }
}

function hasMode(name) {
  const op = demo.operators.find((o) => o.name === name);
  return Boolean(op && op.params.some((p) => p.name === "mode"));
}

function updateMode() {
  $("mode").disabled = !hasMode($("operator").value);
}

/** The operator options of the form, as query parameters (mode only for operators that take one). */
function operatorParams() {
  const params = { operator: $("operator").value, peak_nits: $("peak").value };
  if (hasMode(params.operator)) params.mode = $("mode").value;
  return params;
}

async function loadOperators() {
  try {
    if (!demo.defaults) demo.defaults = await loadDefaults();
    const defaults = demo.defaults;
    const operators = await api("/v1/operators");
    demo.operators = operators;
    const select = $("operator");
    const previous = select.value;
    select.replaceChildren(...operators.map((op) => {
      const option = new Option(op.name, op.name);
      option.title = op.summary;
      return option;
    }));
    if (previous && operators.some((op) => op.name === previous)) select.value = previous;
    else if (defaults && operators.some((op) => op.name === defaults.operator)) {
      select.value = defaults.operator;
      $("peak").value = defaults.peak_nits;
      $("mode").value = defaults.mode;
    }
    updateMode();
    setStatus("convert-status", "");
  } catch (err) {
    const hint = demo.defaults && demo.defaults.auth && !apiKey() ? " (this server needs an API key)" : "";
    setStatus("convert-status", `cannot list operators: ${err.message}${hint}`, true);
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

function resultName(job) {
  return `${job.filename.replace(/\.[^.]+$/, "") || "output"}_hdr10.${job.options.container || "mp4"}`;
}

async function resultBlobUrl(job) {
  // A plain link cannot carry the Authorization header: fetch the file and link to a blob instead.
  const response = await fetch(job.result_url, { headers: authHeaders() });
  if (!response.ok) throw new Error(await problemText(response));
  return URL.createObjectURL(await response.blob());
}

async function offerDownload(job) {
  const link = $("download");
  const name = resultName(job);
  link.href = apiKey() ? await resultBlobUrl(job) : job.result_url;
  link.download = name;
  link.textContent = `Download ${name} (${formatBytes(job.result_bytes)})`;
  link.hidden = false;
}

function jobOperator(job) {
  // Jobs report the options they ran with; an older server may leave unset ones null (its defaults).
  const { operator, mode, peak_nits: peak } = job.options;
  const name = operator || "server default";
  return `${name}${mode ? ` ${mode}` : ""}${peak ? ` · ${peak} cd/m²` : ""}`;
}

function downloadCell(job) {
  const td = document.createElement("td");
  if (job.state !== "succeeded" || !job.result_url) return td;
  const link = document.createElement("a");
  link.className = "result-link";
  link.href = job.result_url;
  link.download = resultName(job);
  link.textContent = `Download${job.result_bytes ? ` (${formatBytes(job.result_bytes)})` : ""}`;
  link.addEventListener("click", async (event) => {
    if (!apiKey() || link.href.startsWith("blob:")) return;
    event.preventDefault();
    try {
      link.href = await resultBlobUrl(job);
      link.click();
    } catch (err) {
      setStatus("convert-status", err.message, true);
    }
  });
  td.append(link);
  return td;
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
    const params = { ...operatorParams(), codec: $("codec").value };
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
      tr.dataset.id = job.id;
      const cells = [job.filename, jobOperator(job), job.state, `${job.progress.frames_done}/${job.progress.frames_total || "?"}`];
      for (const [i, text] of cells.entries()) {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 1) td.className = "operator";
        tr.append(td);
      }
      tr.append(downloadCell(job));
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

// -- before/after preview -------------------------------------------------------------------------
// One still goes through POST /v1/images?format=png; the 16-bit PQ PNG that comes back is decoded here
// (PNG 3rd edition with cICP 9/16/0/1: BT.2020, PQ, RGB, full range), turned into absolute linear light, and
// shown for an SDR (sRGB) screen with a chosen light level as white. Nothing is approximated by the browser's
// own PNG decoder, which would reduce the samples to 8 bits and might tone-map by the cICP chunk.

const PQ = {  // SMPTE ST 2084 clause 5.1 constants, written as the standard prints them
  m1: 2610 / 4096 / 4, m2: (2523 / 4096) * 128, c1: 3424 / 4096, c2: (2413 / 4096) * 32, c3: (2392 / 4096) * 32,
};
const PRIMARIES = {  // CIE 1931 xy of R, G, B and the D65 white point
  bt709: [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]],   // ITU-R BT.709-6 item 1.3
  bt2020: [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046]],  // ITU-R BT.2020-2 table 3
  d65: [0.3127, 0.3290],
};
const LUMA_BT2020 = [0.2627, 0.6780, 0.0593];  // ITU-R BT.2020-2 table 4 (luminance of linear RGB)
const SDR_WHITE_NITS = 203;  // ITU-R BT.2408 reference white, the scale every operator shares
const HISTOGRAM = { bins: 120, minLog: -2, maxLog: 4 };  // 0.01 to 10 000 cd/m²
const preview = { nits709: null, width: 0, height: 0, histogram: null, peak: 1000, lut: null };

/** PQ code value / 65535 -> cd/m², as a table over every 16-bit code (ST 2084 EOTF). */
function pqTable() {
  if (!preview.lut) {
    const { m1, m2, c1, c2, c3 } = PQ;
    const lut = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) {
      const e = Math.pow(i / 65535, 1 / m2);
      lut[i] = 10000 * Math.pow(Math.max(e - c1, 0) / (c2 - c3 * e), 1 / m1);
    }
    preview.lut = lut;
  }
  return preview.lut;
}

function invert3(m) {
  const [a, b, c, d, e, f, g, h, i] = m.flat();
  const A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const det = a * A + b * B + c * C;
  return [
    [A / det, -(b * i - c * h) / det, (b * f - c * e) / det],
    [B / det, (a * i - c * g) / det, -(a * f - c * d) / det],
    [C / det, -(a * h - b * g) / det, (a * e - b * d) / det],
  ];
}

function multiply3(p, q) {
  return p.map((row) => [0, 1, 2].map((j) => row[0] * q[0][j] + row[1] * q[1][j] + row[2] * q[2][j]));
}

/** Linear RGB -> XYZ for a set of primaries and white (SMPTE RP 177 clause 3.3). */
function rgbToXyz(primaries, white) {
  const xyz = ([x, y]) => [x / y, 1, (1 - x - y) / y];
  const columns = primaries.map(xyz);
  const p = [0, 1, 2].map((r) => columns.map((col) => col[r]));
  const w = xyz(white);
  const inv = invert3(p);
  const s = inv.map((row) => row[0] * w[0] + row[1] * w[1] + row[2] * w[2]);
  return p.map((row) => row.map((v, j) => v * s[j]));
}

const BT2020_TO_BT709 = multiply3(
  invert3(rgbToXyz(PRIMARIES.bt709, PRIMARIES.d65)), rgbToXyz(PRIMARIES.bt2020, PRIMARIES.d65),
);

/** sRGB encoding of linear [0, 1] (IEC 61966-2-1 clause 5.2 inverse), tabulated to 4096 steps as 8-bit codes. */
const SRGB_LUT = (() => {
  const lut = new Uint8ClampedArray(4097);
  for (let i = 0; i <= 4096; i++) {
    const v = i / 4096;
    lut[i] = Math.round(255 * (v <= 0.0031308 ? 12.92 * v : 1.055 * Math.pow(v, 1 / 2.4) - 0.055));
  }
  return lut;
})();

async function inflate(bytes) {
  // PNG's IDAT stream is zlib (RFC 1950), which the Compression Streams API calls "deflate".
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Reverse the PNG row filters (PNG clause 9) in place of a copy; bpp = bytes per complete pixel. */
function unfilter(raw, width, height, bpp) {
  const stride = width * bpp;
  const out = new Uint8Array(stride * height);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const type = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = out.subarray(y * stride, (y + 1) * stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0;
      const b = prev[x];
      const c = x >= bpp ? prev[x - bpp] : 0;
      let v = raw[src + x];
      if (type === 1) v += a;
      else if (type === 2) v += b;
      else if (type === 3) v += (a + b) >> 1;
      else if (type === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
      } else if (type !== 0) throw new Error(`PNG row ${y} has filter type ${type}`);
      row[x] = v;
    }
    prev = row;
  }
  return out;
}

/** A 16-bit RGB PQ PNG -> { width, height, codes: Uint16Array (RGB, PQ x 65535) }. */
async function decodePqPng(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error("the result is not a PNG");
  let header = null, cicp = null;
  const idat = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      header = { width: view.getUint32(at + 8), height: view.getUint32(at + 12), depth: data[8], colour: data[9], interlace: data[12] };
    } else if (type === "cICP") cicp = Array.from(data);
    else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    at += 12 + length;
  }
  if (!header || header.depth !== 16 || header.colour !== 2 || header.interlace !== 0) {
    throw new Error(`expected a 16-bit RGB PNG, got ${JSON.stringify(header)}`);
  }
  if (!cicp || cicp[0] !== 9 || cicp[1] !== 16) throw new Error(`expected cICP BT.2020 PQ, got ${cicp}`);
  const { width, height } = header;
  const raw = unfilter(await inflate(new Blob(idat)), width, height, 6);
  const codes = new Uint16Array(width * height * 3);
  for (let i = 0; i < codes.length; i++) codes[i] = (raw[2 * i] << 8) | raw[2 * i + 1];
  return { width, height, codes };
}

/** Light statistics and BT.709 linear light of one decoded frame (CTA-861.3 annex A for MaxCLL/MaxFALL). */
function analyse({ width, height, codes }) {
  const lut = pqTable();
  const n = width * height;
  const m = BT2020_TO_BT709.flat();
  const nits709 = new Float32Array(n * 3);
  const counts = new Uint32Array(HISTOGRAM.bins);
  const scale = HISTOGRAM.bins / (HISTOGRAM.maxLog - HISTOGRAM.minLog);
  let maxCLL = 0, sum = 0;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const r = lut[codes[j]], g = lut[codes[j + 1]], b = lut[codes[j + 2]];
    const brightest = Math.max(r, g, b);
    if (brightest > maxCLL) maxCLL = brightest;
    sum += brightest;
    const y = LUMA_BT2020[0] * r + LUMA_BT2020[1] * g + LUMA_BT2020[2] * b;
    const bin = Math.floor((Math.log10(Math.max(y, 1e-4)) - HISTOGRAM.minLog) * scale);
    counts[Math.min(HISTOGRAM.bins - 1, Math.max(0, bin))]++;
    nits709[j] = m[0] * r + m[1] * g + m[2] * b;
    nits709[j + 1] = m[3] * r + m[4] * g + m[5] * b;
    nits709[j + 2] = m[6] * r + m[7] * g + m[8] * b;
  }
  return { nits709, counts, maxCLL, maxFALL: sum / n };
}

/** Show the HDR frame on an SDR screen: ``white`` cd/m² -> code 255, linear exposure, clipped, sRGB. */
function renderHdr() {
  const { nits709, width, height } = preview;
  if (!nits709) return;
  const canvas = $("preview-hdr");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const out = image.data;
  const k = 4096 / demo.preview.white;
  for (let i = 0, j = 0; i < nits709.length; i += 3, j += 4) {
    out[j] = SRGB_LUT[Math.min(4096, Math.max(0, Math.round(nits709[i] * k)))];
    out[j + 1] = SRGB_LUT[Math.min(4096, Math.max(0, Math.round(nits709[i + 1] * k)))];
    out[j + 2] = SRGB_LUT[Math.min(4096, Math.max(0, Math.round(nits709[i + 2] * k)))];
    out[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  demo.preview.renders += 1;
}

function drawHistogram() {
  const canvas = $("preview-histogram");
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  const left = 8, right = w - 8, top = 56, bottom = h - 24;  // one label row per marker above the bars
  const xOf = (nits) => left + ((Math.log10(Math.max(nits, 1e-4)) - HISTOGRAM.minLog)
    / (HISTOGRAM.maxLog - HISTOGRAM.minLog)) * (right - left);
  ctx.fillStyle = "#161616";
  ctx.fillRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#aaa";
  ctx.textAlign = "center";
  for (let e = HISTOGRAM.minLog; e <= HISTOGRAM.maxLog; e++) {
    const x = Math.round(xOf(10 ** e));
    ctx.fillRect(x, bottom, 1, 4);
    ctx.fillText(e >= 0 ? String(10 ** e) : `${10 ** e}`, Math.min(right - 12, Math.max(left + 12, x)), h - 6);
  }
  const stats = preview.histogram;
  if (!stats) return;
  const most = Math.max(...stats.counts);
  const binWidth = (right - left) / HISTOGRAM.bins;
  ctx.fillStyle = "#9ab";
  stats.counts.forEach((count, i) => {
    if (!count) return;
    const bar = (Math.log1p(count) / Math.log1p(most)) * (bottom - top);
    ctx.fillRect(left + i * binWidth, bottom - bar, Math.max(1, binWidth - 0.5), bar);
  });
  const markers = [
    { nits: SDR_WHITE_NITS, colour: "#888888", label: "SDR white 203" },
    { nits: demo.preview.white, colour: "#3b7ddd", label: `exposure white ${Math.round(demo.preview.white)}` },
    { nits: stats.maxFALL, colour: "#ff9900", label: `MaxFALL ${stats.maxFALL.toFixed(0)}` },
    { nits: stats.maxCLL, colour: "#ee3333", label: `MaxCLL ${stats.maxCLL.toFixed(0)}` },
  ];
  markers.forEach(({ nits, colour, label }, i) => {
    const x = Math.round(xOf(nits));
    ctx.fillStyle = colour;
    ctx.fillRect(x - 1, top - 4, 3, bottom - top + 4);
    const flip = x + 4 + ctx.measureText(label).width > w - 2;  // keep the label inside the canvas
    ctx.textAlign = flip ? "right" : "left";
    ctx.fillText(label, x + (flip ? -4 : 4), 12 + i * 13);
  });
}

function setWhite(nits, fromSlider = false) {
  demo.preview.white = nits;
  if (!fromSlider) $("exposure").value = String(Math.round(500 * Math.log10(nits / 100)));
  $("exposure-value").textContent = `${Math.round(nits)} cd/m²`;
  $("exposure-caption").textContent = String(Math.round(nits));
  renderHdr();
  drawHistogram();
}

function onExposure() {
  // The slider is logarithmic: 0..1000 -> 100..10 000 cd/m².
  setWhite(100 * 10 ** (Number($("exposure").value) / 500), true);
}

function whenEvent(target, name) {
  return new Promise((resolve, reject) => {
    target.addEventListener(name, resolve, { once: true });
    target.addEventListener("error", () => reject(new Error("the browser cannot decode this video")), { once: true });
  });
}

/** The SDR still to convert: the picked image as is, or a frame of a video drawn to a canvas (PNG). */
async function sdrStill() {
  const file = $("preview-file").files[0] || $("file").files[0];
  if (!file) throw new Error("pick an image or a video first");
  if (/^image\/(png|jpeg)$/.test(file.type)) {
    const bitmap = await createImageBitmap(file);
    return { blob: file, bitmap, name: file.name };
  }
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = URL.createObjectURL(file);
  try {
    await whenEvent(video, "loadeddata");
    const at = Math.min(Number($("preview-time").value) || 0, Math.max(0, video.duration - 0.05));
    video.currentTime = at;
    await whenEvent(video, "seeked");
    // At most 1280 px on the long side: a preview, not a master (convert the video for that).
    const scale = Math.min(1, 1280 / Math.max(video.videoWidth, video.videoHeight));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(video.videoWidth * scale));
    canvas.height = Math.max(1, Math.round(video.videoHeight * scale));
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const bitmap = await createImageBitmap(canvas);
    return { blob, bitmap, name: `${file.name.replace(/\.[^.]+$/, "")}_${at.toFixed(1)}s.png` };
  } finally {
    URL.revokeObjectURL(video.src);
  }
}

async function onPreview(event) {
  event.preventDefault();
  $("preview-button").disabled = true;
  demo.preview.error = null;
  setStatus("preview-status", "converting…");
  try {
    const still = await sdrStill();
    const sdr = $("preview-sdr");
    sdr.width = still.bitmap.width;
    sdr.height = still.bitmap.height;
    sdr.getContext("2d").drawImage(still.bitmap, 0, 0);
    const params = { ...operatorParams(), format: "png" };
    const started = performance.now();
    const response = await fetch(`/v1/images?${new URLSearchParams(params)}`, {
      method: "POST", body: still.blob,
      headers: { ...authHeaders(), "Content-Type": still.blob.type || "image/png", "X-Filename": still.name.replace(/[^\x20-\x7e]/g, "_") },
    });
    if (!response.ok) throw new Error(await problemText(response));
    const frame = await decodePqPng(await response.arrayBuffer());
    const seconds = (performance.now() - started) / 1000;
    const stats = analyse(frame);
    Object.assign(preview, { nits709: stats.nits709, width: frame.width, height: frame.height, histogram: stats });
    Object.assign(demo.preview, {
      maxCLL: stats.maxCLL, maxFALL: stats.maxFALL, width: frame.width, height: frame.height, operator: params.operator,
    });
    $("stat-maxcll").textContent = `${stats.maxCLL.toFixed(0)} cd/m²`;
    $("stat-maxfall").textContent = `${stats.maxFALL.toFixed(0)} cd/m²`;
    $("stat-size").textContent = `${frame.width}x${frame.height}`;
    $("stat-operator").textContent = params.mode ? `${params.operator} ${params.mode}` : params.operator;
    $("stat-time").textContent = `${seconds.toFixed(2)} s`;
    setWhite(demo.preview.white);
    setStatus("preview-status", `${still.name} through ${params.operator} at peak ${params.peak_nits} cd/m²`);
  } catch (err) {
    demo.preview.error = err.message;
    setStatus("preview-status", err.message, true);
  } finally {
    $("preview-button").disabled = false;
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
  $("operator").addEventListener("change", updateMode);
  $("api-key").addEventListener("change", () => { loadOperators(); refreshJobs(); });
  $("preview-form").addEventListener("submit", onPreview);
  $("exposure").addEventListener("input", onExposure);
  for (const button of document.querySelectorAll("[data-white]")) {
    button.addEventListener("click", () => setWhite(Number(button.dataset.white)));
  }
  drawHistogram();
  loadOperators();
  refreshJobs();
  setInterval(refreshJobs, 5000);
});
