// The playground: chat from /v1/chat/completions, streamed or whole (system prompt, temperature, max
// tokens, a JSON schema and tools from chat_tools.js) and embeddings shown as the cosine similarity matrix of the inputs (/v1/embeddings); rerank, image and
// speech in media.js.

import { post, stream } from "./api.js";
import { esc, notice } from "./format.js";
import { Calls, requestFields, wireToggles } from "./chat_tools.js";
import { start as startMedia } from "./media.js";

const CHAT = new Set(["chat", "multimodal", "text-generation"]);

function options(select, models, wanted) {
  const before = select.value;
  select.innerHTML = models.map((m) => `<option value="${esc(m.name)}">${esc(m.name)}${m.loaded ? " (loaded)" : ""}</option>`).join("");
  if (models.some((m) => m.name === before)) select.value = before;
  select.disabled = !models.length;
  if (!models.length) select.innerHTML = `<option value="">no ${wanted} model in the library</option>`;
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}

function matrix(inputs, vectors) {
  const head = inputs.map((t, i) => `<th scope="col" title="${esc(t)}">${i + 1}</th>`).join("");
  const rows = inputs.map((t, i) => `<tr><th scope="row">${i + 1}. ${esc(t.length > 40 ? `${t.slice(0, 40)}…` : t)}</th>`
    + vectors.map((v, j) => {
      const s = cosine(vectors[i], v);
      const shade = Math.round(Math.max(0, s) * 60);
      return `<td style="background: color-mix(in srgb, var(--accent) ${shade}%, transparent)" data-i="${i}" data-j="${j}">${s.toFixed(3)}</td>`;
    }).join("") + "</tr>").join("");
  return `<table class="matrix" id="similarity" aria-label="Cosine similarity of the inputs"><thead><tr><th></th>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

export function page(library) {
  const chatModel = document.getElementById("chat-model");
  const embedModel = document.getElementById("embed-model");
  const log = document.getElementById("chat-log");
  const send = document.getElementById("chat-send");
  const stop = document.getElementById("chat-stop");
  let history = [];
  let running = null;

  const fill = (list) => {
    options(chatModel, list.filter((m) => CHAT.has(m.category) && !m.missing), "chat");
    options(embedModel, list.filter((m) => m.category === "embedding" && !m.missing), "embedding");
    for (const [id, category] of [["rerank-model", "rerank"], ["image-model", "image"], ["speech-model", "tts"]]) {
      options(document.getElementById(id), list.filter((m) => m.category === category && !m.missing), category);
    }
  };
  startMedia();
  wireToggles();
  library.onModelsChanged(fill);
  fill(library.models());

  function turn(role, text) {
    const el = document.createElement("div");
    el.className = `turn turn-${role}`;
    el.innerHTML = `<b>${esc(role)}:</b> <span></span>`;
    el.querySelector("span").textContent = text;
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return el.querySelector("span");
  }

  document.getElementById("chat-form").onsubmit = async (event) => {
    event.preventDefault();
    const input = document.getElementById("chat-input");
    const text = input.value.trim();
    if (!text || running) return;
    let structured;
    try {
      structured = requestFields();
    } catch (err) {
      turn("error", err.message).parentElement.setAttribute("role", "alert");
      return;
    }
    input.value = "";
    history.push({ role: "user", content: text });
    turn("user", text);
    const out = turn("assistant", "");
    const el = out.parentElement;
    el.setAttribute("aria-busy", "true");
    const calls = new Calls(el.appendChild(document.createElement("div")));
    const system = document.getElementById("chat-system").value.trim();
    const messages = system ? [{ role: "system", content: system }, ...history] : [...history];
    const streamed = document.getElementById("chat-stream").checked;
    const body = { model: chatModel.value, messages, stream: streamed, ...structured };
    // Left empty, the model's own saved defaults (its settings) apply.
    const temperature = parseFloat(document.getElementById("chat-temperature").value);
    const maxTokens = parseInt(document.getElementById("chat-max-tokens").value, 10);
    if (!Number.isNaN(temperature)) body.temperature = temperature;
    if (!Number.isNaN(maxTokens)) body.max_tokens = maxTokens;
    running = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let answer = "";
    let chunks = 0;
    let finish = null;
    const remember = () => {
      const toolCalls = calls.message();
      history.push(toolCalls.length ? { role: "assistant", content: answer || null, tool_calls: toolCalls } : { role: "assistant", content: answer });
    };
    try {
      if (streamed) {
        await stream("/v1/chat/completions", body, (chunk) => {
          const choice = chunk.choices?.[0];
          if (!choice) return;
          const delta = choice.delta || {};
          if (choice.finish_reason) finish = choice.finish_reason;
          if (delta.tool_calls) calls.merge(delta.tool_calls);
          if (delta.content) answer += delta.content;
          if (delta.content || delta.tool_calls) {
            chunks += 1;
            out.textContent = answer;
            el.dataset.chunks = String(chunks);
            log.scrollTop = log.scrollHeight;
          }
        }, running.signal);
      } else {
        const whole = await post("/v1/chat/completions", body);
        const choice = whole.choices[0];
        answer = choice.message.content || "";
        finish = choice.finish_reason;
        out.textContent = answer;
        calls.set(choice.message.tool_calls);
      }
      remember();
    } catch (err) {
      if (err.name !== "AbortError") {
        out.textContent = answer;
        turn("error", err.message).parentElement.setAttribute("role", "alert");
        history.pop();
      } else {
        remember();
      }
    } finally {
      if (finish) el.dataset.finish = finish;
      if (finish === "length") el.insertAdjacentHTML("beforeend", " <small class=\"cut\">(cut at the max tokens)</small>");
      el.setAttribute("aria-busy", "false");
      el.dataset.done = "true";
      running = null;
      send.disabled = false;
      stop.disabled = true;
    }
  };
  stop.onclick = () => running && running.abort();
  document.getElementById("chat-clear").onclick = () => { history = []; log.innerHTML = ""; };

  document.getElementById("embed-form").onsubmit = async (event) => {
    event.preventDefault();
    const inputs = document.getElementById("embed-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
    const out = document.getElementById("embed-result");
    if (inputs.length < 2) {
      out.innerHTML = "<p class=\"message bad\">Give two inputs or more, one per line.</p>";
      return;
    }
    out.innerHTML = "<p class=\"message\">Embedding…</p>";
    try {
      const answer = await post("/v1/embeddings", { model: embedModel.value, input: inputs });
      const vectors = answer.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
      out.innerHTML = `<p class="hint">${vectors[0].length} dimensions</p>` + matrix(inputs, vectors);
    } catch (err) {
      out.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
      notice(err.message, true);
    }
  };
  return { show() { fill(library.models()); }, hide() {} };
}
