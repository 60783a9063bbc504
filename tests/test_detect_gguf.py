"""GGUF detection: facts from real and tiny files, kinds (model, mmproj, LoRA), splits, hostile headers."""

from __future__ import annotations

import time

import pytest

from corral.detect import detect_path
from corral.detect.bounded import count_reads
from corral.detect.gguf import FILE_TYPES, GGML_TYPES, HEADER_CAP, GGUFArray, read_gguf_header
from corral.errors import DetectionError
from corral.records import Category, ComponentKind, Format, Kind
from factories import (
    make_sparse_copy,
    tiny_parameter_count,
    truncate_copy,
    write_gguf_bytes_with,
    write_lora_gguf,
    write_mmproj_gguf,
    write_split_gguf,
    write_tiny_gguf,
)


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_gguf(tmp_path / "models" / "tiny.gguf", name="tiny")  # general.name set


# --- real model -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_gemma_facts(gemma_path):
    d = detect_path(gemma_path)
    assert (d.kind, d.format, d.category) == (Kind.MODEL, Format.GGUF, Category.CHAT)
    f = d.facts
    assert f.architecture == "gemma3"
    assert f.quantization == "Q4_K_M"
    assert f.context_length == 32768
    assert (f.layers, f.heads, f.kv_heads, f.hidden_size, f.vocab_size) == (18, 4, 1, 640, 262144)
    assert 260e6 < f.parameters < 280e6
    assert f.has_chat_template is False  # the packaged file carries none
    assert f.extra["sliding_window"] == 512
    assert d.size == gemma_path.stat().st_size


@pytest.mark.slow
def test_real_gemma_sparse_copy_reads_the_same_bytes(gemma_path, tmp_path):
    big = make_sparse_copy(gemma_path, tmp_path / "big.gguf", 8 * 1024**3)
    with count_reads() as small_reads:
        small = detect_path(gemma_path)
    with count_reads() as big_reads:
        huge = detect_path(big)
    assert small_reads.bytes == big_reads.bytes < HEADER_CAP
    assert huge.facts == small.facts and huge.size == 8 * 1024**3


# --- tiny model facts --------------------------------------------------------------------------------------


def test_tiny_gguf_facts_are_exact(tiny):
    d = detect_path(tiny)
    assert (d.kind, d.format, d.category) == (Kind.MODEL, Format.GGUF, Category.CHAT)
    assert d.path == tiny.resolve() and d.paths == (tiny.resolve(),)
    f = d.facts
    assert (f.architecture, f.layers, f.heads, f.kv_heads, f.hidden_size) == ("llama", 2, 4, 2, 64)
    assert f.context_length == 2048 and f.quantization == "F16"
    assert f.parameters == tiny_parameter_count()
    assert f.vocab_size == 3 + 256 + 10
    assert f.has_chat_template is False
    assert f.extra["name"] == "tiny" and f.extra["tensor_count"] == 21
    assert d.size == tiny.stat().st_size
    assert not d.attachments


def test_chat_template_and_other_shapes(tmp_path):
    path = write_tiny_gguf(tmp_path / "t.gguf", n_layers=3, n_embd=96, n_head=6, n_head_kv=3, n_ff=64,
                           context_length=4096, file_type=0, chat_template="{{ messages }}")  # fmt: skip
    d = detect_path(path)
    f = d.facts
    assert (f.layers, f.heads, f.kv_heads, f.hidden_size, f.context_length) == (3, 6, 3, 96, 4096)
    assert f.quantization == "F32" and f.has_chat_template is True
    assert f.parameters == tiny_parameter_count(n_layers=3, n_embd=96, n_head=6, n_head_kv=3, n_ff=64)
    assert any("chat template" in r for r in d.reasons)


def test_implausible_sizes_are_not_recorded_as_facts(tmp_path):
    """A header claiming a negative context or zero layers gives no such fact (llama.cpp refuses the file
    at load, naming the key); the rest of the facts stand."""
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_int32("llama.context_length", -5)
    w.add_uint32("llama.block_count", 0)
    w.add_int32("llama.embedding_length", -64)
    w.add_uint32("llama.attention.head_count", 4)
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    facts = detect_path(path).facts
    assert (facts.context_length, facts.layers, facts.hidden_size) == (None, None, None)
    assert (facts.heads, facts.parameters) == (4, 128)


def test_header_keeps_big_arrays_as_lengths(tiny):
    header = read_gguf_header(tiny)
    tokens = header.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and len(tokens) == 269
    assert isinstance(header.metadata["tokenizer.ggml.scores"], GGUFArray)
    assert header.metadata["general.architecture"] == "llama"
    q = next(t for t in header.tensors if t.name == "blk.0.attn_k.weight")
    assert q.shape == (64, 32) and q.type == 1  # GGUF order: inputs first; F16
    assert header.data_end == tiny.stat().st_size


def test_tables_agree_with_the_gguf_library():
    import gguf

    for t, (name, block, size) in GGML_TYPES.items():
        assert gguf.GGMLQuantizationType(t).name == name
        assert tuple(gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t)]) == (block, size)
    for ft, name in FILE_TYPES.items():
        assert gguf.LlamaFileType(ft).name.removeprefix("MOSTLY_").removeprefix("ALL_") == name


# --- kinds ------------------------------------------------------------------------------------------------


def test_mmproj_is_a_component(tmp_path):
    d = detect_path(write_mmproj_gguf(tmp_path / "mmproj-model-f16.gguf"))
    assert (d.kind, d.component, d.category) == (Kind.COMPONENT, ComponentKind.MMPROJ, None)
    assert d.facts.architecture == "clip" and d.facts.extra["projector_type"] == "mlp"


def test_lora_gguf(tmp_path):
    d = detect_path(write_lora_gguf(tmp_path / "lora.gguf", rank=8, alpha=16.0))
    assert (d.kind, d.format, d.category) == (Kind.LORA, Format.GGUF, None)
    assert (d.facts.architecture, d.facts.lora_rank, d.facts.lora_alpha) == ("llama", 8, 16.0)


def test_model_with_mmproj_beside_it_is_multimodal(tiny):
    proj = write_mmproj_gguf(tiny.parent / "mmproj-tiny-f16.gguf", projection_dim=64)
    d = detect_path(tiny)
    assert d.category == Category.MULTIMODAL and d.confidence >= 0.9
    assert [a.path for a in d.attachments] == [proj.resolve()]
    assert d.attachments[0].component == ComponentKind.MMPROJ
    assert any("verified mmproj" in r for r in d.reasons)


def test_fake_mmproj_beside_a_model_is_not_attached(tiny):
    (tiny.parent / "mmproj-broken.gguf").write_bytes(b"GGUF garbage")
    write_tiny_gguf(tiny.parent / "mmproj-actually-text.gguf")
    d = detect_path(tiny)
    assert not d.attachments
    # "mmproj" in a sibling's name is no hint for *this* model; only its own names count.
    assert d.category == Category.CHAT


def test_name_hint_alone_gives_multimodal_at_lower_confidence(tmp_path):
    path = write_tiny_gguf(tmp_path / "Llama-3.2-11B-Vision-Instruct" / "model.gguf")
    d = detect_path(path)
    assert d.category == Category.MULTIMODAL and d.confidence < 0.8
    assert any("name hint" in r and "vision" in r for r in d.reasons)
    assert not d.attachments


def test_revision_is_not_a_vision_hint(tmp_path):
    assert detect_path(write_tiny_gguf(tmp_path / "revision-2" / "m.gguf")).category == Category.CHAT


# --- split GGUF ---------------------------------------------------------------------------------------------


def test_split_gguf(tmp_path):
    parts = write_split_gguf(tmp_path / "split", "tiny", parts=3)
    d = detect_path(parts[0])
    assert d.paths == tuple(p.resolve() for p in parts)
    assert d.size == sum(p.stat().st_size for p in parts)
    assert d.facts.parameters == tiny_parameter_count()
    assert d.facts.layers == 2 and d.category == Category.CHAT


def test_later_split_part_points_to_part_one(tmp_path):
    parts = write_split_gguf(tmp_path / "split", "tiny", parts=2)
    with pytest.raises(DetectionError, match="tiny-00001-of-00002.gguf"):
        detect_path(parts[1])


def test_split_with_a_missing_part(tmp_path):
    parts = write_split_gguf(tmp_path / "split", "tiny", parts=3)
    parts[2].unlink()
    with pytest.raises(DetectionError, match="tiny-00003-of-00003.gguf .*missing"):
        detect_path(parts[0])


# --- bad input ----------------------------------------------------------------------------------------------


def _fails_fast(path, match):
    start = time.perf_counter()
    with count_reads() as reads:
        with pytest.raises(DetectionError, match=match):
            detect_path(path)
    assert time.perf_counter() - start < 1.0
    assert reads.bytes < 1024**2
    return reads


@pytest.mark.parametrize("cut", [3, 20, 2000, 40_000])
def test_truncated_header(tiny, tmp_path, cut):
    cut_file = truncate_copy(tiny, tmp_path / "cut.gguf", cut)
    _fails_fast(cut_file, "truncated|not a GGUF")


def test_truncated_tensor_data(tiny, tmp_path):
    size = tiny.stat().st_size
    cut_file = truncate_copy(tiny, tmp_path / "cut.gguf", size - 100)
    _fails_fast(cut_file, rf"is truncated \(tensor data needs byte {size}, file has {size - 100}\)")


@pytest.mark.parametrize(
    "lie, match",
    [
        ({"tensor_count": 2**60}, "tensor_count"),
        ({"kv_count": 2**60}, "kv_count"),
        ({"tensor_count": 900_000}, "truncated"),
        ({"first_key_len": 2**40}, "string length"),
        ({"string_len": 2**40}, "string length"),
        ({"array_len": 2**40}, "length of array"),
        ({"array_len": 5_000_000}, "truncated"),
        ({"version": 7}, "unsupported GGUF version 7"),
        ({"version": 1}, "version 1 is obsolete"),
    ],
)
def test_hostile_headers_fail_fast(tmp_path, lie, match):
    _fails_fast(write_gguf_bytes_with(tmp_path / "evil.gguf", **lie), match)


def test_hand_built_header_is_valid_without_lies(tmp_path):
    header = read_gguf_header(write_gguf_bytes_with(tmp_path / "ok.gguf"))
    assert header.metadata == {"general.architecture": "llama", "tokenizer.ggml.scores": (1, 2, 3, 4)}


def test_hostile_header_in_a_huge_sparse_file_still_fails_fast(tmp_path):
    evil = write_gguf_bytes_with(tmp_path / "evil.gguf", array_len=5_000_000)
    huge = make_sparse_copy(evil, tmp_path / "huge.gguf", 4 * 1024**3)
    # 5M u32 fit in the file now, so the parser skips them in one seek and fails on what follows.
    reads = _fails_fast(huge, "kv_count|truncated|malformed|not a GGUF|tensor")
    assert reads.bytes < 1024**2


def test_tiny_sparse_copy_reads_the_same_bytes(tiny, tmp_path):
    big = make_sparse_copy(tiny, tmp_path / "big" / "huge.gguf")
    with count_reads() as small_reads:
        small = detect_path(tiny)
    with count_reads() as big_reads:
        huge = detect_path(big)
    assert small_reads.bytes == big_reads.bytes < HEADER_CAP
    assert huge.facts == small.facts
    assert huge.size == 4 * 1024**3


# --- the factories make files llama.cpp itself accepts -------------------------------------------------------


def test_tiny_gguf_loads_in_llama_cpp_which_agrees_with_the_lora_check(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    from corral.detect import check_lora_fits
    from corral.errors import Incompatible
    from corral.records import Model

    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    path = write_tiny_gguf(tmp_path / "tiny.gguf", chat_template=template)
    llm = llama_cpp.Llama(str(path), n_ctx=64, verbose=False)
    try:
        assert llm.n_vocab() == 269 and llm.n_embd() == 64
        assert llm.tokenize(b"hello world", add_bos=False)
        assert isinstance(llm("hello", max_tokens=2)["choices"][0]["text"], str)
        d = detect_path(path)
        base = Model(id="b", name="b", category=d.category, format=d.format, path=d.path, facts=d.facts)
        for lora, fits in ((write_lora_gguf(tmp_path / "ok.gguf"), True),
                           (write_lora_gguf(tmp_path / "wide.gguf", n_embd=96), False)):  # fmt: skip
            # llama-cpp-python's Llama(lora_path=...) checks the returned pointer with `is None` and so
            # misses llama.cpp's refusal (a NULL pointer); ask llama.cpp directly.
            adapter = llama_cpp.llama_adapter_lora_init(llm._model.model, str(lora).encode())
            assert bool(adapter) is fits
            if adapter:
                llama_cpp.llama_adapter_lora_free(adapter)
            if fits:
                check_lora_fits(base, detect_path(lora))
            else:
                with pytest.raises(Incompatible):
                    check_lora_fits(base, detect_path(lora))
    finally:
        llm.close()
