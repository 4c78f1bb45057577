// guard serve: the web page. Plain DOM, no framework, no build step. Everything a server sent
// is put on the page as text (never as HTML), so a manifest cannot inject markup.
"use strict";

const JOBS_KEY = "guard.jobs";
const TOKEN_KEY = "guard.token";
let INFO = null;

// -- small helpers ------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...headers(), ...(options.headers || {}) },
  });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (e) { /* not JSON */ }
    if (response.status === 401) askForToken();
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// The server said the token is missing or wrong (its message says which): point at the box.
function askForToken() {
  const box = document.getElementById("token-box");
  const input = document.getElementById("token");
  if (box.hidden) return;
  box.classList.add("attention");
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

function filesForm(files, fields = {}) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return form;
}

// -- tabs and set-up ----------------------------------------------------------------------------

function showView(name) {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const view of document.querySelectorAll(".view")) {
    view.hidden = view.id !== "view-" + name;
  }
  if (name === "sign") loadIdentity();
}

function fillSelect(select, options, chosen) {
  select.replaceChildren();
  for (const [value, words] of Object.entries(options)) {
    select.append(el("option", { value, selected: value === chosen }, words));
  }
}

async function init() {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  INFO = await (await api("/api/info")).json();
  const note = document.getElementById("mode-note");
  if (INFO.read_only) {
    for (const tab of document.querySelectorAll("nav .write")) tab.hidden = true;
    note.textContent = "read-only server: verify only";
  }
  if (INFO.token_required && !INFO.read_only) {
    const box = document.getElementById("token-box");
    const input = document.getElementById("token");
    box.hidden = false;
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    input.addEventListener("change", () => {
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      box.classList.remove("attention");
      input.removeAttribute("aria-invalid");
      showError("");
      resumeJobs();
    });
  }
  const presets = {};
  for (const [name, p] of Object.entries(INFO.presets)) {
    presets[name] = `${name} (up to ${p.eps_255}/255 per pixel, ${p.steps} steps)`;
  }
  fillSelect(document.getElementById("protect-strength"), presets, INFO.default_preset);
  fillSelect(document.getElementById("sign-training"), INFO.trainings, "notAllowed");
  fillSelect(document.getElementById("sign-source"), INFO.sources, "digital-art");

  for (const zone of document.querySelectorAll(".drop")) {
    const target = zone.dataset.target;
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      handleFiles(target, [...e.dataTransfer.files]);
    });
    const input = document.getElementById(target + "-files");
    input.addEventListener("change", () => {
      handleFiles(target, [...input.files]);
      input.value = "";
    });
  }
  if (!INFO.read_only) resumeJobs();
}

function handleFiles(target, files) {
  showError("");
  if (!files.length) return;
  if (files.length > INFO.limits.max_files) {
    showError(`At most ${INFO.limits.max_files} files at a time.`);
    return;
  }
  if (target === "verify") verifyFiles(files);
  else submitJobs(target, files);
}

// -- verify -------------------------------------------------------------------------------------

async function verifyFiles(files) {
  const results = document.getElementById("verify-results");
  const pending = el("p", { class: "working", "data-testid": "verify-working" }, "Checking " + files.length + " file(s)…");
  results.prepend(pending);
  const pictures = {};
  for (const f of files) pictures[f.name] = URL.createObjectURL(f);
  try {
    const body = await (await api("/api/verify", { method: "POST", body: filesForm(files) })).json();
    for (const result of body.results.slice().reverse()) {
      results.prepend(verifyCard(result, pictures[result.file]));
    }
  } catch (e) {
    showError("Verify failed: " + e.message);
  } finally {
    pending.remove();
  }
}

function row(label, ...value) {
  return el("div", { class: "row" }, el("span", { class: "label" }, label), el("span", { class: "value" }, ...value));
}

function verifyCard(result, picture) {
  if (result.error) {
    return el("article", { class: "card state-error", "data-testid": "verdict" },
      el("h2", {}, result.file), el("p", { class: "reason" }, result.error));
  }
  const c = result.card;
  const card = el("article", { class: "card state-" + c.state, "data-testid": "verdict", "data-state": c.state });
  const head = el("div", { class: "card-head" },
    picture ? el("img", { class: "picture", src: picture, alt: "the uploaded picture" }) : null,
    el("div", {},
      el("h2", {}, result.file),
      el("p", { class: "badge", "data-testid": "state" }, c.state),
      el("p", { class: "headline" }, c.headline),
      el("p", { class: "reason", "data-testid": "reason" }, c.reason)));
  card.append(head);

  const facts = el("div", { class: "facts" });
  facts.append(row("Signer", c.signer ? `${c.signer.name}${c.signer.issuer ? " (issued by " + c.signer.issuer + ")" : ""}${c.signer.from === "ledger record" ? " — from the ledger record" : ""}` : "unknown"));
  facts.append(row("AI-generated", el("span", { "data-testid": "ai" }, { yes: "Yes", partly: "Partly", enhanced: "Enhanced by an algorithm", no: "No", unknown: "Not stated" }[c.ai.answer] + (c.ai.words && c.ai.answer !== "unknown" ? " — " + c.ai.words : ""))));
  facts.append(row("AI training", el("span", { "data-testid": "training" }, c.training.words)));
  if (c.watermark) facts.append(row("Watermark", c.watermark.words));
  card.append(facts);

  for (const d of c.disagreements) card.append(el("p", { class: "warning", "data-testid": "disagreement" }, "⚠ " + d));

  if (c.ledger) {
    const match = el("section", { class: "ledger", "data-testid": "ledger-match" },
      el("h3", {}, "Watermark → ledger record"),
      el("p", { "data-testid": "ledger-words" }, c.ledger.words),
      el("div", { class: "pair" },
        el("figure", {}, picture ? regionOverlay(el("img", { src: picture, alt: "uploaded picture", "data-testid": "uploaded-thumb" }), c.ledger.content_region) : null, el("figcaption", {}, "this file")),
        el("figure", {}, c.ledger.thumbnail ? el("img", { src: c.ledger.thumbnail, alt: "the record's picture", "data-testid": "record-thumb" }) : el("p", {}, "no picture in the record"),
          el("figcaption", {}, "the record" + (c.ledger.file_name ? ": " + c.ledger.file_name : "")))));
    card.append(match);
  }

  if (c.timeline.length) {
    const line = el("ol", { class: "timeline", "data-testid": "timeline" });
    for (const step of c.timeline) {
      line.append(el("li", { class: step.current ? "current" : "" },
        step.thumbnail ? el("img", { src: step.thumbnail, alt: "" }) : el("div", { class: "no-thumb" }, "no picture"),
        el("strong", {}, step.title || "untitled"),
        el("span", {}, step.actions.join(", ") || step.relationship || ""),
        step.signer ? el("span", { class: "who" }, "signed by " + step.signer) : null));
    }
    card.append(el("section", {}, el("h3", {}, "History"), line));
  }

  if (c.marks.length) {
    card.append(el("section", {}, el("h3", {}, "Other watermarks"),
      el("ul", { "data-testid": "marks" }, c.marks.map((m) => el("li", {}, m)))));
  }
  card.append(el("details", {}, el("summary", {}, "Full report"),
    el("pre", {}, c.summary.join("\n")),
    el("details", {}, el("summary", {}, "JSON (same as guard verify --json)"),
      el("pre", {}, JSON.stringify(Object.fromEntries(Object.entries(result).filter(([k]) => k !== "card")), null, 2)))));
  return card;
}

// -- jobs: protect and sign -----------------------------------------------------------------------

function savedJobs() {
  try { return JSON.parse(localStorage.getItem(JOBS_KEY) || "[]"); } catch (e) { return []; }
}

function saveJob(job) {
  const jobs = savedJobs().filter((j) => j.id !== job.id);
  jobs.push({ id: job.id, kind: job.kind });
  localStorage.setItem(JOBS_KEY, JSON.stringify(jobs.slice(-50)));
}

function forgetJob(id) {
  localStorage.setItem(JOBS_KEY, JSON.stringify(savedJobs().filter((j) => j.id !== id)));
}

async function submitJobs(kind, files) {
  const fields = kind === "protect"
    ? { strength: document.getElementById("protect-strength").value }
    : {
      training: document.getElementById("sign-training").value,
      source: document.getElementById("sign-source").value,
      author: document.getElementById("sign-author").value,
    };
  try {
    const body = await (await api("/api/" + kind, { method: "POST", body: filesForm(files, fields) })).json();
    for (const job of body.jobs) {
      const original = files.find((f) => f.name === job.name);
      saveJob(job);
      track(job, original ? URL.createObjectURL(original) : null);
    }
    for (const refused of body.refused || []) {  // over a limit: its own answer, the rest went on
      document.getElementById(kind + "-jobs").prepend(
        el("article", { class: "card state-error", "data-testid": "job" },
          el("h2", {}, refused.file), el("p", { class: "reason", "data-testid": "job-error" }, refused.error)));
    }
  } catch (e) {
    showError((kind === "protect" ? "Protect" : "Sign") + " failed: " + e.message);
  }
}

function resumeJobs() {
  for (const saved of savedJobs()) {
    if (document.getElementById("job-" + saved.id)) continue;
    track({ id: saved.id, kind: saved.kind, name: "", state: "queued" }, null);
  }
}

function jobCard(job) {
  const card = el("article", { class: "card job", id: "job-" + job.id, "data-testid": "job" });
  card.append(el("h2", { class: "job-name" }, job.name || "…"));
  card.append(el("p", { class: "job-state", "data-testid": "job-state" }, "waiting"));
  card.append(el("progress", { max: "1", value: "0" }));
  document.getElementById(job.kind + "-jobs").prepend(card);
  return card;
}

async function track(job, original) {
  const card = document.getElementById("job-" + job.id) || jobCard(job);
  for (;;) {
    let status;
    try {
      status = await (await api("/api/jobs/" + job.id)).json();
    } catch (e) {
      if (e.status === 404) {
        forgetJob(job.id);
        card.remove();
        return;
      }
      card.querySelector(".job-state").textContent = "cannot reach the server: " + e.message;
      if (e.status === 401) return;
      await new Promise((r) => setTimeout(r, 3000));
      continue;
    }
    card.querySelector(".job-name").textContent = status.name;
    const bar = card.querySelector("progress");
    const { done, total } = status.progress;
    if (total) { bar.max = total; bar.value = done; }
    card.querySelector(".job-state").textContent =
      status.state === "running" ? status.stage + (total ? ` (${done}/${total})` : "…") : status.state;
    card.dataset.state = status.state;
    if (status.state === "done") {
      bar.max = 1; bar.value = 1;
      await finished(card, status, original);
      return;
    }
    if (status.state === "failed") {
      card.classList.add("state-invalid");
      card.append(el("p", { class: "reason", "data-testid": "job-error" }, status.error || "failed"));
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

async function finished(card, status, original) {
  const r = status.result;
  const result = await blobUrl(status.download);
  if (!original) {
    try { original = await blobUrl("/api/jobs/" + status.id + "/input"); } catch (e) { original = null; }
  }
  const facts = el("div", { class: "facts" },
    row("Signed by", r.signer),
    row("AI training", INFO.trainings[r.training] || r.training),
    r.watermark_id ? row("Watermark ID", r.watermark_id) : null,
    r.protection ? row("Protection", `${r.protection.mode}, up to ${r.protection.eps_255}/255 per pixel, ${r.protection.steps} steps, ${r.seconds}s`) : null);
  card.append(facts);
  for (const note of r.notes || []) card.append(el("p", { class: "warning" }, note));
  if (status.kind === "protect" && original) card.append(slider(original, result));
  else card.append(el("img", { class: "picture", src: result, alt: "the signed image" }));
  card.append(el("a", { class: "button", href: result, download: r.file, "data-testid": "download" }, "Download " + r.file));
}

function slider(before, after) {
  const box = el("div", { class: "compare", "data-testid": "compare" });
  const base = el("img", { src: after, alt: "protected" });
  const top = el("img", { src: before, alt: "original", class: "before" });
  const range = el("input", { type: "range", min: "0", max: "100", value: "50", "aria-label": "original ◀ ▶ protected" });
  const place = () => { top.style.clipPath = `inset(0 ${100 - Number(range.value)}% 0 0)`; };
  range.addEventListener("input", place);
  place();
  box.append(el("div", { class: "stack" }, base, top), range,
    el("div", { class: "compare-labels" }, el("span", {}, "◀ original"), el("span", {}, "protected ▶")));
  return box;
}

// -- sign: the server's identity ------------------------------------------------------------------

async function loadIdentity() {
  const box = document.getElementById("identity");
  if (box.dataset.loaded) return;
  try {
    const id = await (await api("/api/identity")).json();
    box.replaceChildren(
      el("h3", {}, "This server signs as"),
      row("Subject", el("span", { "data-testid": "identity-subject" }, id.subject)),
      row("Issuer", id.issuer),
      row("Valid until", id.not_after),
      row("Fingerprint (SHA-256)", el("code", {}, id.sha256_fingerprint)));
    box.dataset.loaded = "1";
  } catch (e) {
    box.replaceChildren(el("p", { class: "warning" }, "Identity unavailable: " + e.message));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  init().catch((e) => showError("Cannot reach the server: " + e.message));
});

// The record's picture in part of the upload only: its region (green) and the blocks of it that
// were changed (red), drawn over the thumbnail from the shares the card gives.
function regionOverlay(img, region) {
  if (!region || !region.overlay) return img;
  const box = (share, cls, testid) => {
    const [x, y, w, h] = share.map((v) => (100 * v).toFixed(2) + "%");
    const d = el("div", { class: cls, "data-testid": testid });
    d.style.left = x; d.style.top = y; d.style.width = w; d.style.height = h;
    return d;
  };
  const wrap = el("div", { class: "overlay", "data-testid": "region-overlay" }, img,
    box(region.overlay.region, "region", "region-box"));
  for (const c of region.overlay.changed) wrap.append(box(c, "changed", "changed-box"));
  return wrap;
}
