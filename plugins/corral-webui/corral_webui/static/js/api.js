// Calls to the server, with the API key (asked once per browser session) as a Bearer header.

const KEY = "corral-api-key";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(json) {
  const h = {};
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

let asking = null;

// Ask for a key in the dialog; resolves once one is entered (one dialog for concurrent callers).
function askKey(problem) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-problem").textContent = problem || "";
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (input.value) sessionStorage.setItem(KEY, input.value.trim());
      asking = null;
      resolve();
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

async function errorOf(response) {
  let message = `HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    message = body.error?.message || message;
    code = body.error?.code || null;
  } catch (_) { /* not JSON */ }
  return new ApiError(response.status, message, code);
}

// fetch with the key; a 401 asks for a key and tries again.
async function send(method, path, body, signal) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401 && attempt < 3) {
      const had = sessionStorage.getItem(KEY);
      sessionStorage.removeItem(KEY);
      await askKey(had ? "That key was not accepted." : "");
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

export async function get(path) {
  return (await send("GET", path)).json();
}

export async function post(path, body) {
  return (await send("POST", path, body || {})).json();
}

// POST JSON, answer as a Blob (audio, images) with the response headers.
export async function postBlob(path, body) {
  const response = await send("POST", path, body || {});
  return { blob: await response.blob(), headers: response.headers };
}

export async function remove(path) {
  return (await send("DELETE", path)).json();
}

// Read a server-sent event stream (GET when body is null, else POST): onData gets each `data:` JSON
// value until `[DONE]` or the end. Pass an AbortSignal to stop.
export async function stream(path, body, onData, signal) {
  const response = await send(body == null ? "GET" : "POST", path, body == null ? undefined : body, signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const parsed = JSON.parse(data);
        if (parsed && parsed.error) throw new ApiError(500, parsed.error.message || "stream error", parsed.error.code);
        onData(parsed);
      }
    }
  }
}
