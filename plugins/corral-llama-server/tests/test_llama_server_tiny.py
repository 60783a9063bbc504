"""The driver on tiny random-weight GGUFs that llama.cpp's server engine really loads: registration,
settings, slots, streaming, embeddings and rerank, LoRA, images, broken files, no listening port."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest

from corral.api import drain
from corral.api import CorralError, DetectionError, Incompatible, InvalidSetting, Unsupported
from corral.api import Category, ComponentKind, Format, LoraRequest
from corral_llama_server import LlamaServerDriver
from factories import truncate_copy, write_lora_gguf
from corral.testing import open_model

FAST = {"threads": 1, "n_ctx": 256, "parallel": 2}
GREEDY = {"temperature": 0, "max_tokens": 4}


def first_logprobs(handle, **params) -> list[float]:
    """The log-probabilities of the first tokens a greedy completion of "hello" picks."""
    answer = handle.complete("hello", logprobs=True, seed=0, **GREEDY, **params)
    return [round(t.logprob, 4) for t in answer.logprobs]


def test_driver_declares_what_it_handles():
    assert LlamaServerDriver.name == "llama-server"
    assert LlamaServerDriver.categories == {Category.CHAT, Category.MULTIMODAL, Category.EMBEDDING, Category.RERANK}
    assert LlamaServerDriver.formats == {Format.GGUF}
    assert LlamaServerDriver.requires == ("xllamacpp",)
    assert LlamaServerDriver.max_loras == 1
    assert LlamaServerDriver.priority < 0  # corral-llamacpp (priority 0) serves chat unless a model picks this one
    declared = {s.name: s for s in LlamaServerDriver.settings}
    assert {
        "threads_batch", "n_batch", "n_ubatch", "use_mmap", "use_mlock", "numa", "tensor_split", "main_gpu",
        "split_mode", "rope_freq_base", "rope_freq_scale", "rope_scaling_type", "flash_attn", "cache_type_k",
        "cache_type_v", "offload_kqv", "swa_full", "chat_template", "verbose", "parallel", "cache_prompt",
    } <= set(declared)  # fmt: skip
    assert declared["parallel"].default == 4
    assert not {"n_ctx", "n_gpu_layers", "threads", "seed"} & set(declared)


def test_registration_imports_nothing_heavy():
    probe = "import sys, corral_llama_server; print([m for m in ('xllamacpp', 'llama_cpp', 'numpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_reports_version_and_devices():
    import xllamacpp

    status = LlamaServerDriver.check()
    assert status.available and status.version == xllamacpp.__version__
    assert any(a.startswith("cpu:") for a in status.acceleration)


def test_chat_completion_and_stream_on_slots(library, tiny):
    with open_model(library, tiny.name, overrides=FAST) as handle:
        assert handle.parallel == 2 and handle.context_length == 256
        assert (handle.template.name, handle.template.origin) == ("llama2", "built-in for architecture llama")
        answer = handle.chat([{"role": "user", "content": "hello world"}], seed=3, **GREEDY)
        assert answer.completion_tokens == 4 and answer.finish_reason == "length" and answer.prompt_tokens > 2
        pieces, end = drain(handle.chat([{"role": "user", "content": "hello world"}], stream=True, seed=3, **GREEDY))
        # The random model emits byte tokens: a stream holds back an unfinished UTF-8 character at the end.
        assert answer.text.startswith("".join(pieces))
        assert (end.finish_reason, end.completion_tokens, end.prompt_tokens) == ("length", 4, answer.prompt_tokens)
        completion = handle.complete("hello", seed=3, **GREEDY)
        assert completion.completion_tokens == 4
        with pytest.raises(CorralError, match=r"the prompt is \d+ tokens but the context holds 256"):
            handle.complete("hello world " * 300, max_tokens=2)
        with pytest.raises(CorralError, match="a chat needs at least one message"):
            handle.chat([])
        # A stream closed early cancels its request; the slots keep answering.
        stream = handle.complete("hello", stream=True, max_tokens=200)
        next(stream)
        stream.close()
        assert handle.complete("hello", seed=3, **GREEDY).text == completion.text


def test_settings_reach_llama_cpp(library, tiny):
    with pytest.raises(InvalidSetting, match="cache_type_v=q8_0 needs flash attention"):
        open_model(library, tiny.name, overrides={**FAST, "cache_type_v": "q8_0"}).__enter__()
    with pytest.raises(InvalidSetting, match="n_ubatch .* cannot be larger than n_batch"):
        open_model(library, tiny.name, overrides={**FAST, "n_batch": 64, "n_ubatch": 128}).__enter__()
    with open_model(library, tiny.name, overrides=FAST) as handle:
        plain = first_logprobs(handle)
    with open_model(library, tiny.name, overrides={**FAST, "rope_freq_base": 500.0}) as handle:
        assert first_logprobs(handle) != plain
    with open_model(library, tiny.name, overrides={**FAST, "n_ctx": 128, "parallel": 3}) as handle:
        assert (handle.parallel, handle.context_length) == (3, 128)


def test_no_tcp_port_is_opened(library, tiny):
    import psutil

    before = {c.laddr for c in psutil.Process().net_connections(kind="inet")}
    with open_model(library, tiny.name, overrides=FAST) as handle:
        handle.complete("hello", **GREEDY)
        during = {c.laddr for c in psutil.Process().net_connections(kind="inet")}
        sockets = [c.laddr for c in psutil.Process().net_connections(kind="unix") if "corral-llama-server" in str(c.laddr)]
    assert during == before
    assert len(sockets) == 1  # llama-server's listener: a Unix socket in a private directory


def test_lora_is_applied_and_a_mismatched_one_refused(library, tiny, tmp_path):
    lora = library.add_lora(tiny.name, write_lora_gguf(tmp_path / "fit.gguf", alpha=64.0))
    with open_model(library, tiny.name, overrides=FAST) as handle:
        plain = first_logprobs(handle)
    with open_model(library, tiny.name, loras=[f"{lora.name}=4"], overrides=FAST) as handle:
        assert handle.loras == (LoraRequest(lora=lora, weight=4.0),)
        adapted = first_logprobs(handle)
    assert adapted != plain
    with pytest.raises(Incompatible, match="does not fit base"):
        library.add_lora(tiny.name, write_lora_gguf(tmp_path / "narrow.gguf", n_embd=32))
    # A file swapped after binding is checked again at load.
    write_lora_gguf(tmp_path / "fit.gguf", n_embd=32)
    with pytest.raises(Incompatible, match="LoRA expects 32 inputs, base has 64"):
        open_model(library, tiny.name, loras=[lora.name], overrides=FAST).__enter__()


def test_images_reach_the_model_through_the_projector(library, tiny, tmp_path):
    pytest.importorskip("llamacpp_factories", reason="corral-llamacpp's tests hold the tiny projector")
    from llamacpp_factories import png_bytes, write_llava_mmproj

    def url(seed: int) -> str:
        return "data:image/png;base64," + base64.b64encode(png_bytes(seed=seed)).decode()

    def ask(handle, *urls: str):
        content = [*({"type": "image_url", "image_url": {"url": u}} for u in urls), {"type": "text", "text": "hi"}]
        return handle.chat([{"role": "user", "content": content}], logprobs=True, seed=0, **GREEDY)

    with open_model(library, tiny.name, overrides=FAST) as handle:
        with pytest.raises(Unsupported, match=f"no mmproj component; attach one with `corral component add {re.escape(tiny.name)} mmproj"):
            ask(handle, url(0))
    vision = library.add_component(tiny.name, ComponentKind.MMPROJ, write_llava_mmproj(tmp_path / "mmproj.gguf"))
    assert vision.category == Category.MULTIMODAL
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes(seed=0))
    with open_model(library, vision.name, overrides=FAST) as handle:
        one, two, other = ask(handle, url(0)), ask(handle, url(0), url(0)), ask(handle, url(5))
        from_file, from_uri = ask(handle, str(picture)), ask(handle, picture.as_uri())
        assert two.prompt_tokens > one.prompt_tokens  # each image is embeddings in the prompt
        assert [t.logprob for t in other.logprobs] != [t.logprob for t in one.logprobs]  # the pixels matter
        assert from_file.logprobs == from_uri.logprobs == one.logprobs
        for bad, why in (("https://example.com/cat.png", "remote image URLs are not fetched"),
                         ("data:image/png;base64,@@@", "not valid base64"),
                         ("data:image/png;base64,aGVsbG8=", "an image could not be decoded"),
                         ("/nonexistent/cat.png", "No such file")):  # fmt: skip
            with pytest.raises(CorralError, match=why):
                ask(handle, bad)
        assert ask(handle, url(0)).text == one.text  # still answering


def test_embeddings_and_rerank(library, tmp_path, tiny_path):
    pytest.importorskip("llamacpp_factories", reason="corral-llamacpp's tests hold the GGUF rewriter")
    from llamacpp_factories import rewrite_gguf

    embedder = library.import_path(rewrite_gguf(tiny_path, tmp_path / "embed.gguf", set_uint32={"llama.pooling_type": 1}))
    ranker = library.import_path(rewrite_gguf(tiny_path, tmp_path / "rank.gguf", set_uint32={"llama.pooling_type": 4}))
    assert (embedder.model.category, ranker.model.category) == (Category.EMBEDDING, Category.RERANK)
    with open_model(library, embedder.model.name, overrides=FAST) as handle:
        vectors = handle.embed(["hello world", "the cat", "hello world"])
        assert len(vectors) == 3 and {len(v) for v in vectors} == {64}
        assert vectors[0] == pytest.approx(vectors[2], abs=1e-5) and vectors[0] != pytest.approx(vectors[1], abs=1e-3)
        assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-3)  # normalised
        with pytest.raises(Unsupported):
            handle.chat([{"role": "user", "content": "hi"}])
    with open_model(library, ranker.model.name, overrides=FAST) as handle:
        ranked = handle.rerank("hello", ["a b", "hello world", "c"])
        assert sorted(i for i, _ in ranked) == [0, 1, 2]
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_broken_files_are_refused_with_the_file_named(library, tiny, tiny_path, tmp_path):
    pytest.importorskip("llamacpp_factories", reason="corral-llamacpp's tests hold the GGUF rewriter")
    from llamacpp_factories import rewrite_gguf

    missing = library.import_path(rewrite_gguf(tiny_path, tmp_path / "missing.gguf", drop_tensor="blk.0.attn_q.weight"))
    with pytest.raises(DetectionError, match=r"missing.gguf: llama.cpp could not load this GGUF: .*blk.0.attn_q.weight"):
        open_model(library, missing.model.name, overrides=FAST).__enter__()
    import attrs

    truncate_copy(tiny_path, tmp_path / "cut.gguf", 200_000)
    moved = attrs.evolve(tiny, path=tmp_path / "cut.gguf", paths=(tmp_path / "cut.gguf",))
    with pytest.raises(DetectionError, match="cut.gguf"):
        LlamaServerDriver().load(moved, FAST)
    with open_model(library, tiny.name, overrides=FAST) as handle:  # this process is fine
        assert handle.complete("hello", **GREEDY).completion_tokens == 4


def test_estimate_counts_every_slots_kv_cache(library, tiny):
    from click.testing import CliRunner

    from corral.testing import as_json, build_cli

    def fit(parallel: int) -> dict:
        args = ["fit", tiny.name, "--n-ctx", "1024", "--set", f"parallel={parallel}", "--json"]
        return as_json(CliRunner().invoke(build_cli(), args))

    one, four = fit(1), fit(4)
    assert four["parts_bytes"]["kv_cache"] == 4 * one["parts_bytes"]["kv_cache"] > 0
    assert any("parallel 4" in note for note in four["notes"])


def prompt_counters(handle) -> tuple[float, float]:
    """llama.cpp's own counters of this engine: prompt tokens evaluated, and reused from a slot's cache."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {s.name: s.value for f in text_string_to_metric_families(handle.metrics()) for s in f.samples}
    return values["llamacpp:prompt_tokens_total"], values["llamacpp:prompt_tokens_cached_total"]


def test_a_slot_reuses_its_cached_prompt(library, tiny):
    """The next request that starts like the last one evaluates only what is new; ``cache_prompt=false``
    and a seeded request evaluate the whole prompt again."""
    prompt = " ".join(["hello world"] * 6)
    with open_model(library, tiny.name, overrides={**FAST, "parallel": 1}) as handle:
        first = handle.complete(prompt, temperature=0, max_tokens=2)
        evaluated, cached = prompt_counters(handle)
        assert (evaluated, cached) == (first.prompt_tokens, 0)
        again = handle.complete(prompt + " and more", temperature=0, max_tokens=2)
        evaluated, cached = prompt_counters(handle)
        assert cached >= first.prompt_tokens - 1  # all but the last token, whose logits are needed again
        assert evaluated - first.prompt_tokens == again.prompt_tokens - cached < first.prompt_tokens
        handle.complete(prompt, temperature=0, max_tokens=2, seed=3)
        assert prompt_counters(handle)[1] == cached  # seeded: evaluated afresh
    with open_model(library, tiny.name, overrides={**FAST, "parallel": 1, "cache_prompt": False}) as handle:
        for _ in range(2):
            handle.complete(prompt, temperature=0, max_tokens=2)
        assert prompt_counters(handle)[1] == 0


def test_greedy_requests_skip_the_vocabulary_sort_and_pick_the_same_tokens(library, tiny):
    """At temperature 0 the driver sends llama.cpp the two-step greedy chain (penalties, then the most
    likely token); the engine's default chain, asked directly, picks the same tokens."""
    from corral_llama_server.sampling import GREEDY as CHAIN, request_body

    assert request_body({"temperature": 0}, default_seed=None, cache_prompt=True)["samplers"] == list(CHAIN)
    assert "samplers" not in request_body({"temperature": 0.7}, default_seed=None, cache_prompt=True)
    assert "samplers" not in request_body({}, default_seed=None, cache_prompt=True)
    with open_model(library, tiny.name, overrides=FAST) as handle:
        for prompt, penalty in (("hello", 1.0), ("hello world", 1.3), ("once upon", 1.0)):
            ours = handle.complete(prompt, temperature=0, max_tokens=12, seed=5, repeat_penalty=penalty)
            default = handle.server.handle_completions({"prompt": prompt, "temperature": 0, "max_tokens": 12,
                                                        "seed": 5, "repeat_penalty": penalty,
                                                        "cache_prompt": False})
            assert ours.completion_tokens == default["usage"]["completion_tokens"] > 0
            assert ours.text == default["choices"][0]["text"]
