// The faceswap_pipeline page: sends each photo to POST /api/swap (one at a time, in order),
// shows its progress, then before/after with the faces outlined and the per-face report.
// Plain JavaScript, no libraries: everything the page needs is served by the package.
"use strict";

const state = { options: null, items: [], running: false };
const $ = (sel) => document.querySelector(sel);

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function fmtNum(v, digits) {
  return typeof v === "number" ? v.toFixed(digits) : "\u2013";
}

async function loadOptions() {
  const resp = await fetch("/api/options");
  if (!resp.ok) throw new Error(`the server did not answer /api/options (${resp.status})`);
  const opts = await resp.json();
  state.options = opts;
  for (const name of ["direction", "detector", "upscaler"]) {
    const spec = opts.fields[name];
    const select = $(`#opt-${name}`);
    select.replaceChildren();
    for (const c of spec.choices) {
      const o = document.createElement("option");
      o.value = c.value;
      o.textContent = c.available ? c.label : `${c.label} (${c.reason})`;
      o.disabled = !c.available;
      o.selected = c.value === spec.default;
      select.append(o);
    }
  }
  const s = opts.fields.strength;
  const range = $("#opt-strength");
  Object.assign(range, { min: s.min, max: s.max, step: s.step || 0.05, value: s.default, disabled: !s.adjustable, title: s.note });
  const show = () => { $("#opt-strength-value").textContent = Number(range.value).toFixed(2); };
  range.addEventListener("input", show);
  show();
  const L = opts.limits;
  $("#limits").textContent = `Up to ${fmtBytes(L.max_upload_bytes)} and ${(L.max_pixels / 1e6).toFixed(0)} megapixels per photo.`;
  $("#server").textContent = `Models run on ${opts.device}.`;
}

function currentOptions() {
  const out = {};
  for (const name of ["direction", "detector", "upscaler"]) out[name] = $(`#opt-${name}`).value;
  out.strength = $("#opt-strength").value;
  return out;
}

function addFiles(fileList) {
  const L = state.options ? state.options.limits : null;
  for (const file of fileList) {
    const node = $("#card-template").content.firstElementChild.cloneNode(true);
    node.querySelector(".name").textContent = file.name;
    const item = { file, node, options: currentOptions(), result: null, error: null };
    state.items.push(item);
    $("#results").append(node);
    if (file.size === 0) {
      fail(item, `${file.name}: empty file (0 bytes)`);
    } else if (L && file.size > L.max_upload_bytes) {
      fail(item, `${file.name}: file too large (${fmtBytes(file.size)}); this server takes photos up to ${fmtBytes(L.max_upload_bytes)}`);
    } else {
      setStatus(item, "queued", "waiting");
    }
  }
  updateSummary();
  run();
}

function setStatus(item, stateName, text, fraction) {
  item.node.dataset.state = stateName;
  item.node.querySelector(".status").textContent = text;
  if (fraction !== undefined) item.node.querySelector(".fill").style.width = `${Math.round(fraction * 100)}%`;
}

function fail(item, message) {
  item.error = message;
  setStatus(item, "error", "failed");
  const p = item.node.querySelector(".error");
  p.textContent = message;
  p.classList.remove("hidden");
}

async function run() {
  if (state.running) return;
  state.running = true;
  try {
    for (;;) {
      const item = state.items.find((it) => it.node.dataset.state === "queued");
      if (!item) break;
      await upload(item);
      updateSummary();
    }
  } finally {
    state.running = false;
    updateSummary();
  }
}

function upload(item) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("file", item.file, item.file.name);
    for (const [k, v] of Object.entries(item.options)) form.append(k, v);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/swap");
    xhr.responseType = "json";
    let started = 0;
    let timer = null;
    setStatus(item, "uploading", "uploading 0 %", 0);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setStatus(item, "uploading", `uploading ${Math.round((100 * e.loaded) / e.total)} %`, 0.3 * e.loaded / e.total);
    };
    xhr.upload.onload = () => {
      started = performance.now();
      const tick = () => setStatus(item, "processing", `processing\u2026 ${((performance.now() - started) / 1000).toFixed(1)} s`, 0.6);
      tick();
      timer = setInterval(tick, 200);
    };
    xhr.onload = () => {
      clearInterval(timer);
      const body = xhr.response;
      if (xhr.status === 200 && body && body.id) {
        show(item, body);
      } else {
        const msg = body && body.error ? body.error.message : `the server answered ${xhr.status}`;
        fail(item, msg);
      }
      resolve();
    };
    xhr.onerror = () => {
      clearInterval(timer);
      fail(item, `${item.file.name}: the upload failed (connection closed by the server or network error)`);
      resolve();
    };
    xhr.send(form);
  });
}

const SVG = "http://www.w3.org/2000/svg";

function drawBoxes(svg, report) {
  const { width, height } = report.output;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  report.faces.forEach((f, i) => {
    if (f.crop_box) {
      const [cx0, cy0, cx1, cy1] = f.crop_box;
      const c = document.createElementNS(SVG, "rect");
      Object.entries({ x: cx0, y: cy0, width: cx1 - cx0, height: cy1 - cy0, class: "crop" }).forEach(([k, v]) => c.setAttribute(k, v));
      svg.append(c);
    }
    const [x0, y0, x1, y1] = f.box;
    const r = document.createElementNS(SVG, "rect");
    Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "face" }).forEach(([k, v]) => r.setAttribute(k, v));
    svg.append(r);
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x0 + 3);
    t.setAttribute("y", Math.max(y0 - 5, 14));
    t.setAttribute("font-size", Math.max(14, Math.round(width / 40)));
    t.textContent = String(i + 1);
    svg.append(t);
  });
}

function show(item, report) {
  item.result = report;
  const n = report.n_faces;
  setStatus(item, "done", `done: ${n} face${n === 1 ? "" : "s"} in ${report.seconds.total.toFixed(2)} s`, 1);
  const dl = item.node.querySelector(".download");
  dl.href = report.urls.result;
  dl.setAttribute("download", report.download_name);
  dl.classList.remove("hidden");
  const pair = item.node.querySelector(".pair");
  pair.querySelector(".before img").src = report.urls.input_preview;
  pair.querySelector(".after img").src = report.urls.output_preview;
  pair.querySelectorAll("svg").forEach((svg) => drawBoxes(svg, report));
  pair.classList.remove("hidden");
  const o = report.options;
  const i = report.input;
  item.node.querySelector(".meta").textContent =
    `${i.width}\u00d7${i.height} ${i.format}${i.bits === 16 ? " 16-bit" : ""}${i.orientation !== 1 ? `, EXIF orientation ${i.orientation} applied` : ""}` +
    ` \u00b7 direction ${o.direction}, detector ${o.detector}, upscaler ${o.upscaler}` +
    ` \u00b7 result ${report.output.format}, ${fmtBytes(report.output.bytes)}` +
    (n === 0 ? " \u00b7 no face found: the result is the photo unchanged" : "");
  const tbody = item.node.querySelector("tbody");
  tbody.replaceChildren();
  report.faces.forEach((f, k) => {
    const tr = document.createElement("tr");
    const a = f.attributes || {};
    const translated = (f.actions || []).some((x) => x.startsWith("translate:"));
    const cells = [String(k + 1), f.box.map((v) => Math.round(v)).join(", "), f.direction || "none",
      translated ? fmtNum(o.strength, 1) : "\u2013", fmtNum(f.score, 3), fmtNum(a.face_prob, 3),
      fmtNum(a.p_female, 3), (f.actions || []).join(", ")];
    cells.forEach((c, j) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (j >= 3 && j <= 6) td.className = "num";
      tr.append(td);
    });
    tbody.append(tr);
  });
  item.node.querySelector(".report").classList.remove("hidden");
}

function updateSummary() {
  const items = state.items;
  const done = items.filter((it) => it.node.dataset.state === "done").length;
  const failed = items.filter((it) => it.node.dataset.state === "error").length;
  const left = items.length - done - failed;
  $("#progress").textContent = items.length === 0 ? "No photos yet."
    : `${done} of ${items.length} done` + (failed ? `, ${failed} failed` : "") + (left ? `, ${left} to go` : "");
  const ids = items.filter((it) => it.result).map((it) => it.result.id);
  const zip = $("#zip");
  zip.classList.toggle("disabled", ids.length === 0);
  zip.setAttribute("aria-disabled", String(ids.length === 0));
  zip.href = ids.length ? `/api/results.zip?ids=${ids.join(",")}` : "#";
}

function setup() {
  const drop = $("#drop");
  const input = $("#files");
  input.addEventListener("change", () => {
    addFiles(Array.from(input.files));
    input.value = "";
  });
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(Array.from(e.dataTransfer.files));
  });
  $("#show-boxes").addEventListener("change", (e) => document.body.classList.toggle("hide-boxes", !e.target.checked));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  $("#clear").addEventListener("click", () => {
    state.items = state.items.filter((it) => {
      const busy = ["uploading", "processing", "queued"].includes(it.node.dataset.state);
      if (!busy) it.node.remove();
      return busy;
    });
    updateSummary();
  });
  loadOptions().then(() => { document.body.dataset.ready = "1"; }, (err) => {
    $("#progress").textContent = `Cannot reach the server: ${err.message}`;
  });
}

document.addEventListener("DOMContentLoaded", setup);
