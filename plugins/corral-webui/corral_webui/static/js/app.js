// The page's entry point: the page tabs, and each page started when it is first shown.

import { get } from "./api.js";
import { notice, selectTab, tabKeys } from "./format.js";
import * as library from "./library.js";

const pages = {};  // name -> { show(), hide() } of the pages loaded so far

async function page(name) {
  if (!pages[name]) {
    const loaders = {
      library: async () => ({ show() {}, hide() {} }),
      runtime: async () => (await import("./runtime.js")).page(),
      playground: async () => (await import("./playground.js")).page(library),
      monitor: async () => (await import("./monitor.js")).page(),
      import: async () => (await import("./importer.js")).page(library, info.layouts || []),
      downloads: async () => (await import("./downloads.js")).page(library),
      create: async () => (await import("./create.js")).page(library),
    };
    pages[name] = await loaders[name]();
  }
  return pages[name];
}

let current = "library";
let info = {};  // the server's description (/corral/ui/api/info)

async function show(name) {
  const list = document.getElementById("pages");
  selectTab(list, list.querySelector(`[data-page="${name}"]`));
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `page-${name}`;
  if (current !== name && pages[current]) pages[current].hide();
  current = name;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  try {
    (await page(name)).show();
  } catch (err) {
    notice(err.message, true);
  }
}

async function start() {
  const list = document.getElementById("pages");
  list.addEventListener("click", (e) => { const tab = e.target.closest("[role=tab]"); if (tab) show(tab.dataset.page); });
  list.addEventListener("keydown", (e) => { const tab = tabKeys(list, e); if (tab) show(tab.dataset.page); });
  try {
    // Both at once: the model list need not wait for the server's description.
    let list;
    [info, list] = await Promise.all([get("/corral/ui/api/info"), library.fetchModels()]);
    document.title = `Corral ${info.version}`;
    library.init(info.categories);
    library.show(list);
    performance.mark("corral-library-rendered");  // read by benchmarks/webui_budget.py
    document.body.dataset.ready = "true";
  } catch (err) {
    notice(err.message, true);
  }
  const wanted = location.hash.slice(1);
  if (wanted && wanted !== "library" && document.getElementById(`page-${wanted}`)) await show(wanted);
}

start();
