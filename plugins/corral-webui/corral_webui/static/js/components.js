// The detail panel's components: the parts attached to a model (a GGUF chat model's mmproj or draft, an
// image pipeline's VAE and text encoders), attached by path and kind and detached, through the library's
// own checks (those of `corral component add|rm`).

import { post } from "./api.js";
import { esc, notice, size } from "./format.js";

const API = "/corral/ui/api";

// The section's HTML for model `m` (its detail, with `components` and `component_kinds`).
export function section(m) {
  const components = m.components || [];
  const kinds = m.component_kinds || [];
  const table = components.length
    ? `<table id="components"><thead><tr><th>Kind</th><th>File</th><th class="num">Size</th><th><span class="sr">Actions</span></th></tr></thead><tbody>`
      + components.map((c) => `<tr data-kind="${esc(c.kind)}"><td>${esc(c.kind)}</td><td class="files">${esc(c.path)}</td>`
        + `<td class="num">${size(c.size_bytes ?? c.size)}</td>`
        + `<td><button type="button" class="component-remove" aria-label="Detach ${esc(c.kind)}">Detach</button></td></tr>`).join("")
      + "</tbody></table>"
    : "<p class=\"hint\" id=\"components-none\">none</p>";
  return `${table}
    <form id="component-form" aria-label="Attach a component to ${esc(m.name)}">
      <div class="row">
        <label>Kind <select id="component-kind">${kinds.map((k) => `<option value="${esc(k)}">${esc(k)}</option>`).join("")}</select></label>
        <label class="grow">Component file <input id="component-path" type="text" required placeholder="/models/mmproj-model-f16.gguf"></label>
        <button type="submit">Attach</button>
      </div>
      <p id="component-message" aria-live="polite"></p>
    </form>`;
}

// Wire the section's buttons in `panel`; `reopen()` redraws the panel after a change.
export function wire(panel, m, reopen) {
  const form = panel.querySelector("#component-form");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const out = form.querySelector("#component-message");
    const kind = form.querySelector("#component-kind").value;
    out.className = "";
    out.textContent = `Checking the file as ${kind}…`;
    try {
      const answer = await post(`${API}/component/add/${encodeURIComponent(m.id)}`, {
        kind, path: form.querySelector("#component-path").value.trim(),
      });
      notice(`Attached ${kind} to ${answer.model.name} (category now ${answer.model.category})`);
      await reopen();
    } catch (err) {
      out.className = "bad";
      out.setAttribute("role", "alert");
      out.textContent = err.message;
    }
  };
  for (const button of panel.querySelectorAll(".component-remove")) {
    button.onclick = async () => {
      const kind = button.closest("tr").dataset.kind;
      try {
        const answer = await post(`${API}/component/remove/${encodeURIComponent(m.id)}`, { kind });
        notice(`Detached ${kind} from ${answer.model.name}; the file stays at ${answer.file_kept}.`);
        await reopen();
      } catch (err) {
        notice(err.message, true);
      }
    };
  }
}
