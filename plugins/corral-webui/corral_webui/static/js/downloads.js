// The downloads page: search a hub (source chooser), a repository's files grouped by quantization with
// sizes and a "fits in memory" mark from the server's estimate, and the server's pull jobs (/corral/pulls)
// with a progress bar, bytes, speed, time left, the steps, and pause / resume / cancel. Polled while shown.

import { get, post, remove } from "./api.js";
import { count, duration, esc, notice, size } from "./format.js";

const ACTIVE = new Set(["queued", "running"]);

function resultsTable(answer) {
  if (!answer.results.length) return `<p class="hint">No repository on ${esc(answer.source)} matches “${esc(answer.query)}”.</p>`;
  return `<table id="hub-table" aria-label="Repositories found"><thead><tr><th>Repository</th><th>Category</th>`
    + `<th class="num">Downloads</th><th class="num">Likes</th><th class="num">Size</th><th><span class="sr">Actions</span></th></tr></thead><tbody>`
    + answer.results.map((r) => `<tr data-repo="${esc(r.repo)}"><td>${esc(r.repo)}</td><td>${esc(r.category || "")}</td>`
      + `<td class="num">${count(r.downloads)}</td><td class="num">${count(r.likes)}</td><td class="num">${size(r.size)}</td>`
      + `<td><button type="button" data-files="${esc(r.repo)}" aria-label="Files of ${esc(r.repo)}">Files</button></td></tr>`).join("")
    + "</tbody></table>";
}

function fitCell(fit) {
  if (!fit) return "<td>?</td>";
  const how = fit.rough ? "weights only" : `at ${fit.n_ctx} tokens of context`;
  const title = `estimate ${size(fit.estimate_bytes)} (${how}) against ${size(fit.free_bytes)} free`;
  return fit.fits
    ? `<td class="fit-yes" title="${esc(title)}">fits (${size(fit.estimate_bytes)})</td>`
    : `<td class="fit-no" title="${esc(title)}">does not fit (${size(fit.estimate_bytes)})</td>`;
}

function filesView(listing) {
  const fits = Object.fromEntries((listing.fits || []).map((f) => [f.quant, f]));
  const models = listing.variants.filter((v) => !v.mmproj);
  const projectors = listing.variants.filter((v) => v.mmproj);
  const at = listing.commit ? ` @ ${esc(listing.commit.slice(0, 12))}` : listing.revision ? ` @ ${esc(listing.revision)}` : "";
  let html = `<h3 id="files-title">${esc(listing.repo)} on ${esc(listing.source)}${at}</h3>`;
  if (models.length) {
    html += `<table id="variants" aria-labelledby="files-title"><thead><tr><th>Quantization</th><th class="num">Size</th>`
      + `<th>Memory</th><th>Files</th><th><span class="sr">Actions</span></th></tr></thead><tbody>`
      + models.map((v) => `<tr data-quant="${esc(v.quant)}"><td>${esc(v.quant)}</td><td class="num">${size(v.size)}</td>${fitCell(fits[v.quant])}`
        + `<td class="files">${esc(v.files[0])}${v.files.length > 1 ? ` (+${v.files.length - 1} more)` : ""}</td>`
        + `<td><button type="button" data-pull-quant="${esc(v.quant)}" aria-label="Pull ${esc(v.quant)}">Pull</button></td></tr>`).join("")
      + "</tbody></table>";
    if (projectors.length) {
      html += `<label class="inline"><input type="checkbox" id="pull-mmproj" checked> Bring the multimodal projector along `
        + `(${projectors.map((p) => `${esc(p.quant)}, ${size(p.size)}`).join("; ")})</label>`;
    }
  } else {
    html += `<p><button type="button" id="pull-all">Pull the repository</button> `
      + `<span class="hint">${listing.files.length} files</span></p>`;
  }
  html += `<details><summary>All ${listing.files.length} files</summary><table class="file-list"><tbody>`
    + listing.files.map((f) => `<tr><td class="files">${esc(f.name)}</td><td class="num">${size(f.size)}</td>`
      + `<td>${f.unsafe ? `<span class="bad">unsafe name: never downloaded</span>` : esc(f.mmproj ? "projector" : f.quant || "")}</td></tr>`).join("")
    + "</tbody></table></details>";
  return html;
}

function progressText(job) {
  const parts = [];
  if (job.total != null) parts.push(`${size(job.done)} of ${size(job.total)}`);
  else parts.push(size(job.done));
  if (job.speed) parts.push(`${size(job.speed)}/s`);
  if (job.eta != null) parts.push(`${duration(job.eta)} left`);
  return parts.join(" · ");
}

function jobView(job) {
  const value = job.percent == null ? "" : ` value="${job.percent}"`;
  const label = `${job.repo} ${job.files.length === 1 ? job.files[0] : `${job.files.length} files`}`;
  const buttons = [];
  if (ACTIVE.has(job.state)) buttons.push(`<button type="button" data-act="pause" aria-label="Pause ${esc(label)}">Pause</button>`);
  if (job.state === "paused" || job.state === "failed") buttons.push(`<button type="button" data-act="resume" aria-label="Resume ${esc(label)}">Resume</button>`);
  if (ACTIVE.has(job.state) || job.state === "paused") buttons.push(`<button type="button" data-act="cancel" aria-label="Cancel ${esc(label)}">Cancel</button>`);
  if (!ACTIVE.has(job.state)) buttons.push(`<button type="button" data-act="forget" aria-label="Remove ${esc(label)} from the list">Remove</button>`);
  const steps = job.steps.map((s) => `<li class="step-${esc(s.state)}">${esc(s.name)}${s.files ? ` ${esc(s.files)}` : ""}: ${esc(s.state)}</li>`).join("");
  const models = job.models.map((m) => `${m.added ? "added" : "already in the library"}: ${esc(m.name)}`).join("; ");
  return `<li class="job" data-job="${esc(job.id)}" data-state="${esc(job.state)}">`
    + `<div class="row"><b>${esc(job.repo)}</b> <span class="files">${esc(job.files.join(", "))}</span> `
    + `<span class="job-state">${esc(job.state)}</span></div>`
    + `<progress max="100"${value} aria-label="Progress of ${esc(label)}"></progress> `
    + `<span class="job-progress" aria-live="off">${esc(progressText(job))}</span>`
    + `<ol class="steps" aria-label="Steps">${steps}</ol>`
    + (job.error ? `<p class="message bad" role="alert">${esc(job.error)}</p>` : "")
    + (models ? `<p class="message job-models">${models}</p>` : "")
    + job.notes.slice(-3).map((note) => `<p class="hint">${esc(note)}</p>`).join("")
    + `<div class="row">${buttons.join(" ")}</div></li>`;
}

export function page(library) {
  const source = document.getElementById("hub-source");
  const results = document.getElementById("hub-results");
  const filesOut = document.getElementById("hub-files");
  const list = document.getElementById("pulls");
  let listing = null;
  let timer = null;
  const states = {};  // job id -> last state seen, to refresh the library when one finishes

  get("/corral/hub").then((answer) => {
    source.innerHTML = answer.sources.map((s) => `<option value="${esc(s)}"${s === answer.default ? " selected" : ""}>${esc(s)}</option>`).join("");
    if (!answer.sources.length) results.innerHTML = `<p class="message bad" role="alert">No hub plugin is installed (pip install corral-huggingface).</p>`;
  }).catch((err) => notice(err.message, true));

  document.getElementById("hub-search-form").onsubmit = async (event) => {
    event.preventDefault();
    const q = document.getElementById("hub-query").value.trim();
    results.innerHTML = `<p class="message">Searching ${esc(source.value)}…</p>`;
    try {
      const answer = await get(`/corral/hub/search?${new URLSearchParams({ q, source: source.value })}`);
      results.innerHTML = resultsTable(answer);
    } catch (err) {
      results.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  };

  async function showFiles(repo) {
    filesOut.innerHTML = `<p class="message">Listing ${esc(repo)} and estimating memory…</p>`;
    try {
      listing = await get(`/corral/hub/files?${new URLSearchParams({ repo, source: source.value })}`);
      filesOut.innerHTML = filesView(listing);
      filesOut.querySelector("button")?.focus();
    } catch (err) {
      filesOut.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  }
  results.addEventListener("click", (e) => {
    const button = e.target.closest("[data-files]");
    if (button) showFiles(button.dataset.files);
  });

  async function startPull(body) {
    try {
      const job = await post("/corral/pulls", { repo: listing.repo, source: listing.source, ...body });
      notice(`Pulling ${job.files.join(", ")}`);
      states[job.id] = job.state;
      await poll();
      list.querySelector(`[data-job="${job.id}"] button`)?.focus();
    } catch (err) {
      notice(err.message, true);
    }
  }
  filesOut.addEventListener("click", (e) => {
    const quant = e.target.closest("[data-pull-quant]");
    if (quant) startPull({ quant: quant.dataset.pullQuant, mmproj: document.getElementById("pull-mmproj")?.checked ?? true });
    else if (e.target.closest("#pull-all")) startPull({ all: true });
  });

  list.addEventListener("click", async (e) => {
    const button = e.target.closest("[data-act]");
    if (!button) return;
    const id = button.closest("[data-job]").dataset.job;
    button.disabled = true;
    try {
      if (button.dataset.act === "forget") await remove(`/corral/pulls/${id}`);
      else await post(`/corral/pulls/${id}/${button.dataset.act}`);
    } catch (err) {
      notice(err.message, true);
    }
    await poll();
    (list.querySelector(`[data-job="${id}"] button`) || document.getElementById("hub-query")).focus();
  });

  async function poll() {
    let answer;
    try {
      answer = await get("/corral/pulls");
    } catch (err) {
      notice(err.message, true);
      return;
    }
    const focused = document.activeElement?.closest?.("[data-job]") ? document.activeElement : null;
    const keep = focused ? [focused.closest("[data-job]").dataset.job, focused.dataset.act] : null;
    list.innerHTML = answer.pulls.slice().reverse().map(jobView).join("");
    document.getElementById("pulls-empty").hidden = answer.pulls.length > 0;
    if (keep) list.querySelector(`[data-job="${keep[0]}"] [data-act="${keep[1]}"]`)?.focus();
    let finished = false;
    for (const job of answer.pulls) {
      if (job.state === "done" && states[job.id] !== "done") {
        finished = true;  // also once for jobs that ended before the page looked
        if (states[job.id]) notice(`Pulled ${job.models.map((m) => m.name).join(", ") || job.repo}`);
      }
      states[job.id] = job.state;
    }
    if (finished) await library.refresh();
  }

  return {
    show() {
      poll();
      clearInterval(timer);
      timer = setInterval(poll, 500);
      document.getElementById("hub-query").focus();
    },
    hide() { clearInterval(timer); timer = null; },
  };
}
