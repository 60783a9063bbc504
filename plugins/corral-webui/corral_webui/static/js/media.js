// The playground's other categories: rerank as a ranked list (/v1/rerank), image generation with the
// image shown (/v1/images/generations, b64_json), speech with an audio player (/v1/audio/speech, WAV).

import { post, postBlob } from "./api.js";
import { esc, notice, size } from "./format.js";

function lines(id) {
  return document.getElementById(id).value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function number(id, parse = parseFloat) {
  const value = parse(document.getElementById(id).value);
  return Number.isNaN(value) ? undefined : value;
}

function failed(out, err) {
  out.innerHTML = `<p class="message bad" role="alert">${esc(err.message)}</p>`;
  notice(err.message, true);
}

export function start() {
  const byId = (id) => document.getElementById(id).value;
  const rerankOut = document.getElementById("rerank-result");
  document.getElementById("rerank-form").onsubmit = async (event) => {
    event.preventDefault();
    const documents = lines("rerank-documents");
    if (!documents.length) {
      rerankOut.innerHTML = "<p class=\"message bad\" role=\"alert\">Give at least one document, one per line.</p>";
      return;
    }
    rerankOut.innerHTML = "<p class=\"message\">Ranking…</p>";
    try {
      const answer = await post("/v1/rerank", { model: byId("rerank-model"), query: document.getElementById("rerank-query").value, documents });
      rerankOut.innerHTML = `<ol id="ranking" aria-label="Documents, most relevant first">`
        + answer.results.map((r) => `<li data-index="${r.index}"><span class="score">${r.relevance_score.toFixed(4)}</span> `
          + `${esc(documents[r.index])} <small>(document ${r.index + 1})</small></li>`).join("")
        + "</ol>";
    } catch (err) {
      failed(rerankOut, err);
    }
  };

  const imageOut = document.getElementById("image-result");
  document.getElementById("image-form").onsubmit = async (event) => {
    event.preventDefault();
    const prompt = document.getElementById("image-prompt").value.trim();
    const body = { model: byId("image-model"), prompt, size: document.getElementById("image-size").value.trim() || undefined,
      steps: number("image-steps", parseInt), seed: number("image-seed", parseInt) };
    imageOut.innerHTML = "<p class=\"message\">Generating…</p>";
    const started = performance.now();
    try {
      const answer = await post("/v1/images/generations", body);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      imageOut.innerHTML = answer.data.map((d, i) => `<figure><img class="generated" id="image-${i}" src="data:image/png;base64,${d.b64_json}" `
        + `alt="${esc(`Generated image ${i + 1}: ${prompt}`)}"><figcaption>${esc(prompt)} · ${seconds} s</figcaption></figure>`).join("");
    } catch (err) {
      failed(imageOut, err);
    }
  };

  const speechOut = document.getElementById("speech-result");
  let url = null;
  document.getElementById("speech-form").onsubmit = async (event) => {
    event.preventDefault();
    const body = { model: byId("speech-model"), input: document.getElementById("speech-input").value,
      voice: document.getElementById("speech-voice").value.trim() || undefined, speed: number("speech-speed") };
    speechOut.innerHTML = "<p class=\"message\">Speaking…</p>";
    try {
      const { blob, headers } = await postBlob("/v1/audio/speech", body);
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      const rate = headers.get("X-Sample-Rate");
      speechOut.innerHTML = `<audio id="speech-audio" controls src="${url}" aria-label="The spoken text"></audio>`
        + `<p class="hint">WAV, ${size(blob.size)}${rate ? `, ${esc(rate)} Hz` : ""} · <a href="${url}" download="speech.wav">Download</a></p>`;
    } catch (err) {
      failed(speechOut, err);
    }
  };
}
