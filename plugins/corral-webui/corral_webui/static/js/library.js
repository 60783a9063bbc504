// The library page: the models table (category tabs, search, sort) and the detail panel (facts,
// provenance, files, components (components.js), LoRAs, settings form, load and unload).

import { get, post } from "./api.js";
import * as components from "./components.js";
import { count, esc, notice, selectTab, size, tabKeys } from "./format.js";

const API = "/corral/ui/api";
const state = { models: [], category: "all", query: "", sort: "name", dir: 1, selected: null, categories: [] };
const listeners = [];

export function onModelsChanged(fn) { listeners.push(fn); }
export function models() { return state.models; }

function stateOf(m) { return m.missing ? "missing" : m.loaded ? "loaded" : "available"; }

function compare(a, b) {
  const key = state.sort;
  const x = key === "state" ? stateOf(a) : a[key];
  const y = key === "state" ? stateOf(b) : b[key];
  if (x == null && y == null) return 0;
  if (x == null) return 1;  // blanks last, either way
  if (y == null) return -1;
  const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
  return order * state.dir;
}

function visible() {
  const q = state.query.toLowerCase();
  return state.models.filter((m) => (state.category === "all" || m.category === state.category)
    && (!q || [m.name, m.architecture, m.quantization, m.format, m.category, m.description, ...(m.tags || [])]
      .some((v) => v && String(v).toLowerCase().includes(q)))).sort(compare);
}

function row(m) {
  const st = stateOf(m);
  const selected = m.id === state.selected ? "true" : "false";
  return `<tr tabindex="0" data-id="${esc(m.id)}" aria-selected="${selected}">`
    + `<td>${esc(m.name)}</td><td>${esc(m.category)}</td><td>${esc(m.format)}</td>`
    + `<td>${esc(m.architecture)}</td><td class="num" title="${esc(m.parameters)}">${count(m.parameters)}</td>`
    + `<td>${esc(m.quantization)}</td><td class="num">${m.context ?? ""}</td><td class="num">${size(m.size)}</td>`
    + `<td class="state-${st}">${st}</td></tr>`;
}

export function renderTable() {
  const shown = visible();
  document.querySelector("#models tbody").innerHTML = shown.map(row).join("");
  document.getElementById("empty").hidden = shown.length > 0;
  document.getElementById("count").textContent = `${shown.length} of ${state.models.length} models`;
  for (const th of document.querySelectorAll("#models th")) {
    if (th.dataset.key === state.sort) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

function renderTabs() {
  const list = document.getElementById("category-tabs");
  const counts = {};
  for (const m of state.models) counts[m.category] = (counts[m.category] || 0) + 1;
  const names = ["all", ...state.categories.filter((c) => counts[c]), ...Object.keys(counts).filter((c) => !state.categories.includes(c))];
  list.innerHTML = names.map((c) => {
    const on = c === state.category;
    const label = c === "all" ? `All (${state.models.length})` : `${c} (${counts[c]})`;
    return `<button role="tab" data-category="${esc(c)}" aria-selected="${on}" tabindex="${on ? 0 : -1}" aria-controls="models">${esc(label)}</button>`;
  }).join("");
}

export async function fetchModels() {
  return (await get(`${API}/models`)).models;
}

// Draw the tabs and the table from a fresh model list.
export function show(list) {
  state.models = list;
  renderTabs();
  renderTable();
  listeners.forEach((fn) => fn(state.models));
}

export async function refresh() {
  show(await fetchModels());
  if (state.selected && state.models.some((m) => m.id === state.selected)) await openDetail(state.selected, false);
}

// --- detail panel ------------------------------------------------------------------------------

function dl(pairs) {
  const items = pairs.filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && !v.length));
  if (!items.length) return "<p class=\"hint\">none</p>";
  return `<dl>${items.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : v)}</dd>`).join("")}</dl>`;
}

function factPairs(facts) {
  const pairs = Object.entries(facts).filter(([k]) => k !== "extra").map(([k, v]) => [k.replace(/_/g, " "), v]);
  for (const [k, v] of Object.entries(facts.extra || {})) pairs.push([k.replace(/_/g, " "), v]);
  return pairs;
}

function settingField(spec) {
  const id = `setting-${spec.name}`;
  const help = `${spec.help || ""}${spec.minimum != null ? ` (${spec.exclusive_minimum ? "above" : "min"} ${spec.minimum})` : ""}${spec.maximum != null ? ` (max ${spec.maximum})` : ""}`;
  const placeholder = spec.default == null ? "default" : `default ${spec.default}`;
  const value = spec.value == null ? "" : spec.value;
  let input;
  if (spec.choices.length || spec.type === "bool") {
    const choices = spec.type === "bool" && !spec.choices.length ? [true, false] : spec.choices;
    input = `<select id="${id}" name="${esc(spec.name)}" aria-describedby="${id}-help"><option value="">${esc(placeholder)}</option>`
      + choices.map((c) => `<option value="${esc(c)}"${String(c) === String(value) && value !== "" ? " selected" : ""}>${esc(c)}</option>`).join("")
      + "</select>";
  } else if (spec.type === "int" || spec.type === "float") {
    const bounds = `${spec.minimum != null ? ` min="${spec.minimum}"` : ""}${spec.maximum != null ? ` max="${spec.maximum}"` : ""}`;
    input = `<input id="${id}" name="${esc(spec.name)}" type="number" step="${spec.type === "int" ? 1 : "any"}"${bounds} value="${esc(value)}" placeholder="${esc(placeholder)}" aria-describedby="${id}-help">`;
  } else {
    const shown = Array.isArray(value) ? value.join(",") : value;
    input = `<input id="${id}" name="${esc(spec.name)}" type="text" value="${esc(shown)}" placeholder="${esc(placeholder)}" aria-describedby="${id}-help">`;
  }
  return `<label for="${id}">${esc(spec.name)} ${input}<small id="${id}-help">${esc(help)}</small></label>`;
}

function readForm(form, specs) {
  const set = {};
  const unset = [];
  for (const spec of specs) {
    const el = form.elements.namedItem(spec.name);
    if (!el) continue;
    const raw = el.value.trim();
    const saved = spec.value;
    if (raw === "") {
      if (saved != null) unset.push(spec.name);
      continue;
    }
    let value = raw;
    if (spec.type === "int") value = parseInt(raw, 10);
    else if (spec.type === "float") value = parseFloat(raw);
    else if (spec.type === "bool") value = raw === "true";
    if (saved == null || String(saved) !== String(value)) set[spec.name] = value;
  }
  return { set, unset };
}

// The ticked LoRAs of the detail panel, as NAME=WEIGHT.
function chosenLoras() {
  return [...document.querySelectorAll("#loras tr[data-lora]")].filter((tr) => tr.querySelector(".lora-use").checked)
    .map((tr) => `${tr.dataset.lora}=${tr.querySelector(".lora-weight").value || 1}`);
}

async function showPlan(model, box, force = false) {
  box.innerHTML = `<p class="message">Checking what loading ${esc(model.name)} does…</p>`;
  const loras = chosenLoras();
  const plan = await post(`${API}/plan`, { model: model.id, loras });
  const bad = plan.fits === false;
  box.innerHTML = `<p class="message${bad ? " bad" : ""}" id="plan-message">${esc(plan.message)}</p>`
    + `<button type="button" class="primary" id="confirm-load">${bad ? "Load anyway (force)" : "Load now"}</button> `
    + `<button type="button" id="cancel-load">Cancel</button>`;
  box.querySelector("#cancel-load").onclick = () => { box.innerHTML = ""; };
  const confirm = box.querySelector("#confirm-load");
  confirm.focus();
  confirm.onclick = async () => {
    confirm.disabled = true;
    box.insertAdjacentHTML("beforeend", `<p class="message" id="load-progress">Loading ${esc(model.name)}…</p>`);
    try {
      const answer = await post("/corral/load", { model: model.id, loras, force: force || bad });
      const info = answer.model;
      notice(`Loaded ${info.name} (${info.driver}) in ${answer.seconds.toFixed(1)} s; RAM ${size(info.ram_bytes ?? info.ram)}`);
      await refresh();
    } catch (err) {
      box.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    }
  };
}

async function unload(model) {
  try {
    const answer = await post("/corral/unload", { model: model.id });
    notice(answer.unloaded.length ? `Unloaded ${answer.unloaded.join(", ")}` : "Nothing was loaded.");
    await refresh();
  } catch (err) {
    notice(err.message, true);
  }
}

let opening = 0;  // counts detail requests, so a slow answer never replaces a newer panel

export async function openDetail(id, focus = true) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#models tbody tr")) tr.setAttribute("aria-selected", String(tr.dataset.id === id));
  const panel = document.getElementById("detail");
  panel.hidden = false;
  const ticket = ++opening;
  let m;
  try {
    m = await get(`${API}/models/${encodeURIComponent(id)}`);
  } catch (err) {
    if (ticket === opening) panel.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
    return;
  }
  if (ticket !== opening) return;  // another model was opened meanwhile: its panel wins
  const r = m.row;
  const det = m.detection || {};
  const loras = m.loras || [];
  const prov = m.provenance || {};
  const loaded = m.loaded_info;
  panel.innerHTML = `
    <h2 id="detail-title" tabindex="-1">${esc(m.name)}</h2>
    <p>${esc(m.description || "")}</p>
    <p class="state-${r.missing ? "missing" : r.loaded ? "loaded" : "available"}">${r.missing ? "files missing" : r.loaded ? "loaded" : "not loaded"}</p>
    <div class="row">
      <button type="button" id="load" class="primary"${r.missing ? " disabled" : ""}>${r.loaded ? "Load again" : "Load"}</button>
      <button type="button" id="unload"${r.loaded ? "" : " disabled"}>Unload</button>
      <button type="button" id="close-detail">Close</button>
    </div>
    <div id="load-box" aria-live="polite"></div>
    ${loaded ? `<h3>Loaded</h3>${dl([["driver", loaded.driver], ["RAM", size(loaded.ram)], ["VRAM", size(loaded.vram)], ["LoRAs", loaded.loras]])}` : ""}
    <h3>Facts</h3>
    ${dl([["id", m.id], ["category", m.category], ["format", m.format], ["size", size(r.size)], ["tags", m.tags], ...factPairs(m.facts || {})])}
    <h3>Why</h3>
    ${det.problem ? `<p class="message bad">${esc(det.problem)}</p>` : ""}
    ${det.reasons && det.reasons.length ? `<p class="hint">confidence ${det.confidence?.toFixed(2)}</p><ul id="reasons">${det.reasons.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : "<p class=\"hint\">no reasons recorded</p>"}
    <h3>Provenance</h3>
    ${dl([["hub", prov.hub], ["repository", prov.repo], ["revision", prov.revision], ["url", prov.url], ["files", prov.files]])}
    <h3>Files</h3>
    <ul class="files">${(m.paths && m.paths.length ? m.paths : [m.path]).map((p) => `<li>${esc(p)}</li>`).join("")}</ul>
    <h3>Components</h3>
    ${components.section(m)}
    <h3>LoRAs</h3>
    ${loras.length ? `<p class="hint">Ticked LoRAs are loaded with the model, at the weight shown; "Save weight" keeps it as the LoRA's default.</p>
    <table id="loras"><thead><tr><th>Use</th><th>Name</th><th class="num">Weight</th><th>File</th><th><span class="sr">Actions</span></th></tr></thead><tbody>${loras.map((l) => `<tr data-lora="${esc(l.name)}">`
      + `<td><input type="checkbox" class="lora-use" aria-label="Load with ${esc(l.name)}"></td><td>${esc(l.name)}</td>`
      + `<td class="num"><input type="number" class="lora-weight" step="0.05" value="${l.weight}" aria-label="Weight of ${esc(l.name)}" size="5"></td>`
      + `<td class="files">${esc(l.path)}</td><td><button type="button" class="lora-save" aria-label="Save the weight of ${esc(l.name)} as its default">Save weight</button> <button type="button" class="lora-remove" aria-label="Unbind ${esc(l.name)}">Unbind</button></td></tr>`).join("")}</tbody></table>` : "<p class=\"hint\">none</p>"}
    <form id="lora-form" aria-label="Bind a LoRA to ${esc(m.name)}">
      <label>LoRA file <input id="lora-path" type="text" required placeholder="/models/my-lora.gguf"></label>
      <div class="row">
        <label>Name (optional) <input id="lora-name" type="text"></label>
        <label>Weight <input id="lora-weight" type="number" step="0.05" value="1"></label>
        <button type="submit">Bind LoRA</button>
      </div>
      <p id="lora-message" aria-live="polite"></p>
    </form>
    <h3>Settings</h3>
    <p class="hint">Saved with the model; they apply at its next load. Declared by ${esc(m.drivers.join(", ") || "the core (install the model's plugin for its own)")}.</p>
    <form id="settings-form" aria-label="Load settings of ${esc(m.name)}">
      ${m.setting_specs.map(settingField).join("")}
      <button type="submit" class="primary">Save settings</button>
      <p id="settings-message" aria-live="polite"></p>
    </form>
    <h3>Name and description</h3>
    <form id="edit-form" aria-label="Name and description of ${esc(m.name)}">
      <label>Name <input id="edit-name" type="text" required value="${esc(m.name)}"></label>
      <label>Description <textarea id="edit-description" rows="2">${esc(m.description || "")}</textarea></label>
      <button type="submit">Save</button>
      <p id="edit-message" aria-live="polite"></p>
    </form>
    <h3>Remove</h3>
    <p class="hint">Removes the record (and its LoRA records) from the library; the files stay on disk.</p>
    <button type="button" id="remove">Remove from library…</button>
    <div id="remove-box" aria-live="polite"></div>`;
  panel.querySelector("#close-detail").onclick = () => {
    panel.hidden = true;
    state.selected = null;
    renderTable();
  };
  panel.querySelector("#load").onclick = () => showPlan(m, panel.querySelector("#load-box")).catch((err) => {
    panel.querySelector("#load-box").innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
  });
  panel.querySelector("#unload").onclick = () => unload(m);
  components.wire(panel, m, refresh);
  const form = panel.querySelector("#settings-form");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const out = form.querySelector("#settings-message");
    const change = readForm(form, m.setting_specs);
    if (!Object.keys(change.set).length && !change.unset.length) {
      out.textContent = "Nothing changed.";
      return;
    }
    try {
      const answer = await post(`${API}/settings/${encodeURIComponent(m.id)}`, change);
      for (const spec of m.setting_specs) spec.value = answer.settings[spec.name] ?? null;
      out.className = "";
      out.textContent = `Saved: ${Object.entries(answer.settings).map(([k, v]) => `${k}=${v}`).join(", ") || "no settings (defaults apply)"}`;
    } catch (err) {
      out.className = "bad";
      out.textContent = err.message;
    }
  };
  const loraForm = panel.querySelector("#lora-form");
  loraForm.onsubmit = async (event) => {
    event.preventDefault();
    const out = loraForm.querySelector("#lora-message");
    const body = { path: loraForm.querySelector("#lora-path").value.trim(), weight: parseFloat(loraForm.querySelector("#lora-weight").value) || 1 };
    const name = loraForm.querySelector("#lora-name").value.trim();
    if (name) body.name = name;
    try {
      const answer = await post(`${API}/lora/add/${encodeURIComponent(m.id)}`, body);
      notice(`Bound LoRA ${answer.lora.name} to ${m.name}`);
      await openDetail(m.id, false);
    } catch (err) {
      out.className = "bad";
      out.textContent = err.message;
    }
  };
  for (const button of panel.querySelectorAll(".lora-save")) {
    button.onclick = async () => {
      const row = button.closest("tr");
      const weight = parseFloat(row.querySelector(".lora-weight").value);
      try {
        const answer = await post(`${API}/lora/weight/${encodeURIComponent(row.dataset.lora)}`, { weight });
        notice(`${answer.lora.name} now loads at weight ${answer.lora.weight} by default.`);
        await openDetail(m.id, false);
      } catch (err) {
        notice(err.message, true);
      }
    };
  }
  for (const button of panel.querySelectorAll(".lora-remove")) {
    button.onclick = async () => {
      const lora = button.closest("tr").dataset.lora;
      try {
        await post(`${API}/lora/remove/${encodeURIComponent(lora)}`, {});
        notice(`Unbound ${lora}; its file stays on disk.`);
        await openDetail(m.id, false);
      } catch (err) {
        notice(err.message, true);
      }
    };
  }
  const edit = panel.querySelector("#edit-form");
  edit.onsubmit = async (event) => {
    event.preventDefault();
    const out = edit.querySelector("#edit-message");
    try {
      const answer = await post(`${API}/edit/${encodeURIComponent(m.id)}`, {
        name: edit.querySelector("#edit-name").value, description: edit.querySelector("#edit-description").value,
      });
      out.className = "";
      out.textContent = `Saved as ${answer.model.name}.`;
      await refresh();
    } catch (err) {
      out.className = "bad";
      out.textContent = err.message;
    }
  };
  panel.querySelector("#remove").onclick = () => {
    const box = panel.querySelector("#remove-box");
    const files = (m.paths && m.paths.length ? m.paths : [m.path]);
    box.innerHTML = `<p class="message bad" id="remove-question">Remove ${esc(m.name)} from the library? Its files stay where they are: `
      + `${files.map(esc).join(", ")}</p><button type="button" class="primary" id="confirm-remove">Remove record</button> `
      + `<button type="button" id="cancel-remove">Cancel</button>`;
    box.querySelector("#cancel-remove").onclick = () => { box.innerHTML = ""; };
    box.querySelector("#cancel-remove").focus();
    box.querySelector("#confirm-remove").onclick = async () => {
      try {
        const answer = await post(`${API}/remove/${encodeURIComponent(m.id)}`, { confirm: true });
        notice(`Removed ${answer.removed} from the library; its files stay on disk.`);
        panel.hidden = true;
        state.selected = null;
        await refresh();
      } catch (err) {
        box.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
      }
    };
  };
  if (focus) panel.querySelector("#detail-title").focus();
}

export function init(categories) {
  state.categories = categories;
  const tbody = document.querySelector("#models tbody");
  tbody.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-id]");
    if (tr) openDetail(tr.dataset.id);
  });
  tbody.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr[data-id]");
    if (!tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(tr.dataset.id); }
    if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
  });
  for (const th of document.querySelectorAll("#models th")) {
    th.querySelector("button").addEventListener("click", () => {
      state.dir = state.sort === th.dataset.key ? -state.dir : 1;
      state.sort = th.dataset.key;
      renderTable();
    });
  }
  const tabs = document.getElementById("category-tabs");
  const choose = (tab) => {
    state.category = tab.dataset.category;
    selectTab(tabs, tab);
    renderTable();
  };
  tabs.addEventListener("click", (e) => { const tab = e.target.closest("[role=tab]"); if (tab) choose(tab); });
  tabs.addEventListener("keydown", (e) => { const tab = tabKeys(tabs, e); if (tab) choose(tab); });
  let timer = null;
  document.getElementById("search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.query = e.target.value.trim(); renderTable(); }, 80);
  });
  document.getElementById("refresh").addEventListener("click", () => refresh().catch((err) => notice(err.message, true)));
}
