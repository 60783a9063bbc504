// The create page: the `corral create` form with a live preview computed by the server (the same code as
// `corral create --dry-run`, through POST /corral/create/preview), the write itself (POST /corral/create),
// and tokenizer training from an uploaded corpus (POST /corral/tokenizers/train). The routes come with
// the corral-transformers plugin; without it the page says how to get them.

import { get, post } from "./api.js";
import { esc, notice } from "./format.js";

const SHAPE = ["vocab_size", "hidden_size", "layers", "heads", "kv_heads", "ffn_size", "context_length"];
const $ = (id) => document.getElementById(id);

// What a field left empty means under the preset: its value, or the free preset's rule.
function placeholder(options, preset, name) {
  if (preset !== "free") return String(options.presets[preset][name]);
  if (name in options.free_defaults) return String(options.free_defaults[name]);
  if (options.free_required.includes(name)) return "required";
  return { heads: "hidden / 64", kv_heads: "= heads", ffn_size: "8/3 × hidden" }[name] || "";
}

function body(options) {
  const out = { preset: $("create-preset").value, dtype: $("create-dtype").value, path: $("create-path").value.trim() };
  for (const name of SHAPE) {
    const raw = $(`create-${name}`).value.trim();
    if (raw !== "") out[name] = Number(raw);  // not rounded: the server names a value that is not whole
  }
  const tie = $("create-tie_embeddings").value;
  if (tie) out.tie_embeddings = tie === "true";
  const seed = $("create-seed").value.trim();
  if (seed !== "") out.seed = Number(seed);
  const tokenizer = $("create-tokenizer").value;
  if (tokenizer !== "default") out.tokenizer = tokenizer;
  if ($("create-force").checked) out.force = true;
  return out;
}

function tokenizerOptions(options, chosen) {
  const select = $("create-tokenizer");
  const keep = chosen ?? select.value;
  select.innerHTML = `<option value="default">default (cl100k_base cut to the vocab size)</option>`
    + options.tokenizers.map((t) => `<option value="${esc(t.name)}">${esc(t.name)} (${esc(t.type)}, ${t.vocab_size == null ? "?" : t.vocab_size.toLocaleString("en")} tokens)</option>`).join("");
  select.value = options.tokenizers.some((t) => t.name === keep) ? keep : "default";
  $("tokenizer-list").innerHTML = options.tokenizers.length
    ? options.tokenizers.map((t) => `<li data-tokenizer="${esc(t.name)}"><b>${esc(t.name)}</b> ${esc(t.type)}, ${t.vocab_size == null ? "?" : t.vocab_size.toLocaleString("en")} tokens <span class="files">${esc(t.path)}</span></li>`).join("")
    : "<li class=\"hint\">none yet</li>";
}

export function page(library) {
  let options = null;
  let ticket = 0;  // counts preview requests: only the newest answer is drawn
  let timer = null;
  const message = $("create-message");
  const rows = document.querySelector("#create-preview tbody");

  function say(text, bad) {
    message.className = bad ? "message bad" : "message";
    message.setAttribute("role", bad ? "alert" : "status");
    message.textContent = text;
  }

  function draw(preview) {
    rows.innerHTML = preview.rows.map(([name, value]) => `<tr data-row="${esc(name)}"><th scope="row">${esc(name)}</th><td>${esc(value)}</td></tr>`).join("");
    $("create-preview").dataset.parameters = String(preview.parameters);
  }

  async function refreshPreview() {
    const mine = ++ticket;
    $("create-preview").setAttribute("aria-busy", "true");
    try {
      const preview = await post("/corral/create/preview", body(options));
      if (mine !== ticket) return;
      draw(preview);
      $("create-preview").classList.remove("stale");
      say(preview.memory.fits === false ? "The build does not fit in the memory available here." : "Nothing is written until you press Create.",
        preview.memory.fits === false);
    } catch (err) {
      if (mine !== ticket) return;
      $("create-preview").classList.add("stale");
      say(err.message, true);
    } finally {
      if (mine === ticket) {
        $("create-preview").setAttribute("aria-busy", "false");
        // Settled: the newest request is answered and no other is waiting (the tests wait on this).
        if (timer === null) $("create-preview").dataset.pending = "false";
      }
    }
  }

  function schedule() {
    clearTimeout(timer);
    $("create-preview").dataset.pending = "true";
    timer = setTimeout(() => { timer = null; refreshPreview(); }, 120);
  }

  function showPreset() {
    const preset = $("create-preset").value;
    for (const name of SHAPE) $(`create-${name}`).placeholder = placeholder(options, preset, name);
    const tie = preset === "free" ? options.free_defaults.tie_embeddings : options.presets[preset].tie_embeddings;
    $("create-tie_embeddings").options[0].textContent = `preset's (${tie ? "yes" : "no"})`;
  }

  async function start() {
    try {
      options = await get("/corral/create");
    } catch (err) {
      const missing = $("create-missing");
      missing.hidden = false;
      missing.textContent = err.status === 404
        ? "Creating models needs the corral-transformers plugin in the server: pip install -e plugins/corral-transformers, then restart corral serve."
        : err.message;
      $("create-columns").hidden = true;  // without the options the form cannot be filled
      return false;
    }
    $("create-preset").innerHTML = options.preset_names.map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join("");
    $("create-dtype").innerHTML = options.dtypes.map((d) => `<option value="${esc(d)}"${d === "float32" ? " selected" : ""}>${esc(d)}</option>`).join("");
    for (const [name, [low, high]] of Object.entries(options.limits)) {
      const input = $(`create-${name}`);
      if (!input) continue;
      input.min = low;
      input.max = high;
      input.title = `${low.toLocaleString("en")}–${high.toLocaleString("en")} (${options.flags[name]})`;
    }
    if (!$("create-path").value) $("create-path").value = `${options.created_folder}/my-model`;
    $("tokenizer-type").innerHTML = options.tokenizer_types.map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join("");
    const vocab = $("tokenizer-vocab");
    [vocab.min, vocab.max] = options.tokenizer_vocab.range;
    vocab.value = options.tokenizer_vocab.default;
    tokenizerOptions(options);
    showPreset();
    const form = $("create-form");
    form.addEventListener("input", schedule);
    form.addEventListener("change", (e) => { if (e.target.id === "create-preset") showPreset(); schedule(); });
    form.onsubmit = (e) => { e.preventDefault(); run(); };
    $("tokenizer-form").onsubmit = (e) => { e.preventDefault(); train(); };
    await refreshPreview();
    return true;
  }

  async function run() {
    clearTimeout(timer);
    timer = null;
    ++ticket;  // a preview still on its way must not replace what this answers
    const button = $("create-run");
    button.disabled = true;
    say("Writing the model… (torch and transformers build it in the server)", false);
    try {
      const answer = await post("/corral/create", body(options));
      draw(answer);
      say(`Wrote ${answer.path}. Added to the library as ${answer.model.name} (${answer.model.category}).`, false);
      message.dataset.created = answer.model.name;
      notice(`Created ${answer.model.name}`);
      await library.refresh();
    } catch (err) {
      say(err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function train() {
    const out = $("tokenizer-message");
    const file = $("tokenizer-corpus").files[0];
    const name = $("tokenizer-name").value.trim();
    const bad = (text) => { out.className = "message bad"; out.setAttribute("role", "alert"); out.textContent = text; };
    if (!file) return bad("Choose a corpus file (UTF-8 text, one sentence per line).");
    if (!name) return bad("Give the tokenizer a name.");
    out.className = "message";
    out.setAttribute("role", "status");
    out.textContent = `Training on ${file.name} (${file.size.toLocaleString("en")} bytes)…`;
    $("tokenizer-run").disabled = true;
    try {
      const vocab = $("tokenizer-vocab").value.trim();
      const answer = await post("/corral/tokenizers/train", {
        name, type: $("tokenizer-type").value, vocab_size: vocab === "" ? undefined : Number(vocab),
        filename: file.name, text: await file.text(), force: $("tokenizer-force").checked,
      });
      out.textContent = `Trained a ${answer.vocab_size.toLocaleString("en")}-token ${answer.type} tokenizer "${answer.name}" `
        + `on ${answer.corpus_lines.toLocaleString("en")} lines of ${answer.corpus}.${answer.note ? ` ${answer.note}` : ""}`;
      out.dataset.trained = answer.name;
      options.tokenizers = (await get("/corral/tokenizers")).tokenizers;
      tokenizerOptions(options, answer.name);
      schedule();
    } catch (err) {
      bad(err.message);
    } finally {
      $("tokenizer-run").disabled = false;
    }
  }

  const ready = start();
  return { show() { ready.catch((err) => notice(err.message, true)); }, hide() {} };
}
