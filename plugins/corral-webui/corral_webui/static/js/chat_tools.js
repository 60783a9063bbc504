// The chat's structured output: a JSON schema sent as `response_format` and tools sent as `tools` with
// `tool_choice`, read from the playground's toggles; and the tool calls of an answer, whole or gathered
// from streamed deltas, shown as calls (name and arguments).

import { esc } from "./format.js";

const $ = (id) => document.getElementById(id);

// Show each toggle's box while it is ticked.
export function wireToggles() {
  for (const [toggle, box] of [["chat-schema-on", "chat-schema-box"], ["chat-tools-on", "chat-tools-box"]]) {
    const sync = () => { $(box).hidden = !$(toggle).checked; $(toggle).setAttribute("aria-expanded", String($(toggle).checked)); };
    $(toggle).addEventListener("change", sync);
    sync();
  }
}

function parsed(id, what) {
  try {
    return JSON.parse($(id).value);
  } catch (err) {
    throw new Error(`The ${what} is not JSON: ${err.message}`);
  }
}

// The request fields the toggles ask for; an Error naming the field when its text is not usable.
export function requestFields() {
  const fields = {};
  if ($("chat-schema-on").checked) {
    const value = parsed("chat-schema", "JSON schema");
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("The JSON schema must be a JSON object.");
    // Either a bare schema or OpenAI's {name, schema, strict} wrapper.
    const wrapped = typeof value.schema === "object" && value.schema !== null && typeof value.name === "string";
    fields.response_format = { type: "json_schema", json_schema: wrapped ? value : { name: "answer", schema: value } };
  }
  if ($("chat-tools-on").checked) {
    let tools = parsed("chat-tools", "tools list");
    if (tools && !Array.isArray(tools)) tools = [tools];
    if (!tools || !tools.length) throw new Error("The tools list is empty: give one {\"type\": \"function\", \"function\": {...}} or more.");
    fields.tools = tools;
    fields.tool_choice = $("chat-tool-choice").value;
  }
  return fields;
}

// Tool calls of one answer: `merge` takes a streamed delta's `tool_calls` (by index, the arguments
// arriving in pieces), `set` a whole message's; `render` draws them into `box`.
export class Calls {
  constructor(box) {
    this.box = box;
    this.calls = [];
  }

  merge(deltas) {
    for (const delta of deltas) {
      const at = delta.index ?? this.calls.length;
      const call = this.calls[at] || (this.calls[at] = { id: null, name: "", arguments: "" });
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.name += delta.function.name;
      if (delta.function?.arguments) call.arguments += delta.function.arguments;
    }
    this.render();
  }

  set(calls) {
    this.calls = (calls || []).map((c) => ({ id: c.id, name: c.function?.name || "", arguments: c.function?.arguments || "" }));
    this.render();
  }

  // The calls as an assistant message's `tool_calls`, for the conversation's history.
  message() {
    return this.calls.filter(Boolean).map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
  }

  render() {
    const calls = this.calls.filter(Boolean);
    if (!calls.length) return;
    this.box.innerHTML = `<ol class="tool-calls" aria-label="Tool calls">${calls.map((c) => {
      let args = c.arguments;
      try { args = JSON.stringify(JSON.parse(c.arguments)); } catch (_) { /* still arriving, or not JSON */ }
      return `<li data-name="${esc(c.name)}" data-id="${esc(c.id || "")}" data-arguments="${esc(c.arguments)}"><span class="hint">call</span> `
        + `<code class="call-name">${esc(c.name)}</code>(<code class="call-args">${esc(args)}</code>)</li>`;
    }).join("")}</ol>`;
  }
}
