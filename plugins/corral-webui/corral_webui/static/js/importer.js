// The import page: one file or folder by path, or a scan of a folder or of another tool's store (the HF
// cache, Ollama, LM Studio) previewed (dry run) before anything is added.

import { post } from "./api.js";
import { count, esc, notice } from "./format.js";

const API = "/corral/ui/api";

function entries(list) {
  if (!list.length) return "<p class=\"hint\">Nothing found.</p>";
  return `<table id="scan-table"><thead><tr><th>Status</th><th>Name</th><th>Category</th><th>Path</th><th>Note</th></tr></thead><tbody>`
    + list.map((e) => `<tr><td>${esc(e.status)}</td><td>${esc(e.name)}</td><td>${esc(e.category)}</td><td class="files">${esc(e.path)}</td><td>${esc(e.message)}</td></tr>`).join("")
    + "</tbody></table>";
}

export function page(library, layouts) {
  const importForm = document.getElementById("import-form");
  const importOut = document.getElementById("import-result");
  importForm.onsubmit = async (event) => {
    event.preventDefault();
    const body = { path: document.getElementById("import-path").value.trim() };
    const name = document.getElementById("import-name").value.trim();
    if (name) body.name = name;
    importOut.innerHTML = "<p class=\"message\">Reading the file's headers…</p>";
    try {
      const answer = await post(`${API}/import`, body);
      if (!answer.model) {
        importOut.innerHTML = `<p class="message">${esc(answer.offer)}</p>`;
        return;
      }
      const m = answer.model;
      importOut.innerHTML = `<p class="message" id="imported">Imported ${esc(m.name)}: ${esc(m.category)}, ${esc(m.format)}, `
        + `${esc(m.architecture || "?")}, ${count(m.parameters)} parameters${m.quantization ? `, ${esc(m.quantization)}` : ""}</p>`
        + `<ul>${answer.detection.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>`;
      notice(`Imported ${m.name}`);
      await library.refresh();
    } catch (err) {
      importOut.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  };
  const scanForm = document.getElementById("scan-form");
  const scanOut = document.getElementById("scan-result");
  const apply = document.getElementById("scan-apply");
  const layout = document.getElementById("scan-layout");
  layout.innerHTML = '<option value="">a plain folder</option>'
    + layouts.map((l) => `<option value="${esc(l.name)}">${esc(l.label)}</option>`).join("");
  let previewed = null;
  scanForm.onsubmit = async (event) => {
    event.preventDefault();
    previewed = { path: document.getElementById("scan-path").value.trim() || null, layout: layout.value || null };
    if (!previewed.path && !previewed.layout) {
      scanOut.innerHTML = "<p class=\"message bad\" role=\"alert\">Give a folder, or choose a store.</p>";
      return;
    }
    apply.disabled = true;
    scanOut.innerHTML = "<p class=\"message\">Scanning (nothing is added yet)…</p>";
    try {
      const answer = await post(`${API}/scan`, { ...previewed, dry_run: true });
      const adds = answer.entries.filter((e) => e.status === "would-add").length;
      scanOut.innerHTML = `<p class="message">Preview: ${adds} model${adds === 1 ? "" : "s"} would be added.</p>` + entries(answer.entries);
      apply.disabled = adds === 0;
    } catch (err) {
      scanOut.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  };
  apply.onclick = async () => {
    apply.disabled = true;
    try {
      const answer = await post(`${API}/scan`, { ...previewed, dry_run: false });
      const added = answer.entries.filter((e) => e.status === "added").length;
      scanOut.innerHTML = `<p class="message">Added ${added} model${added === 1 ? "" : "s"}.</p>` + entries(answer.entries);
      await library.refresh();
    } catch (err) {
      scanOut.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  };
  return { show() { document.getElementById("import-path").focus(); }, hide() {} };
}
