// The runtime page: loaded models with their queues, memory measured against the estimate, and when
// the keep-alive unloads them. Polled while the page is shown.

import { get, post } from "./api.js";
import { duration, esc, notice, size } from "./format.js";

function row(m) {
  const est = m.estimate || {};
  return `<tr data-name="${esc(m.name)}"><td>${esc(m.name)}</td><td>${esc(m.category)}</td><td>${esc(m.driver)}</td>`
    + `<td class="num">${m.running}/${m.parallel}</td><td class="num">${m.waiting}</td><td class="num">${m.served}</td>`
    + `<td class="num">${m.rejected}</td><td class="num">${size(m.ram)}</td><td class="num">${est.ram != null ? size(est.ram) : "?"}</td>`
    + `<td class="num">${size(m.vram)}</td><td class="num">${est.vram != null ? size(est.vram) : "?"}</td>`
    + `<td>${duration(m.expires_in)}</td><td>${esc(m.node || "this machine")}</td><td><button type="button" data-unload="${esc(m.id)}" aria-label="Unload ${esc(m.name)}">Unload</button></td></tr>`;
}

export function page() {
  let timer = null;
  const tbody = document.querySelector("#runtime tbody");
  tbody.addEventListener("click", async (e) => {
    const button = e.target.closest("[data-unload]");
    if (!button) return;
    button.disabled = true;
    try {
      const answer = await post("/corral/unload", { model: button.dataset.unload });
      notice(`Unloaded ${answer.unloaded.join(", ")}`);
    } catch (err) {
      notice(err.message, true);
    }
    await poll();
  });
  async function poll() {
    try {
      const answer = await get("/corral/ui/api/runtime");
      tbody.innerHTML = answer.models.map(row).join("");
      document.getElementById("runtime-empty").hidden = answer.models.length > 0;
    } catch (err) {
      notice(err.message, true);
    }
  }
  return {
    show() { poll(); clearInterval(timer); timer = setInterval(poll, 2000); },
    hide() { clearInterval(timer); timer = null; },
  };
}
