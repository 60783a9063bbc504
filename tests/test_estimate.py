"""The memory estimator: GGUF through llama.cpp's memory model (checked against real llama.cpp loads of
the real Gemma GGUF), torch formats by tensor sizes × dtype, and ``corral fit`` beside measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import plugins_for_tests as tp
from factories import write_lora_gguf, write_mmproj_gguf, write_tiny_gguf

from corral.detect import detect_path
from corral.detect.gguf import read_gguf_header
from corral.errors import InvalidSetting, NotFound
from corral.estimate import estimate_memory, free_memory
from corral.estimate import llamacpp as lc
from corral.records import Component, ComponentKind, Measurement, Model


def as_model(path: Path, name: str = "m", **changes) -> Model:
    d = detect_path(path)
    return Model(id=name, name=name, category=d.category, format=d.format, path=d.path, paths=d.paths,
                 facts=d.facts, size=d.size, **changes)  # fmt: skip


def tensor_bytes(path: Path) -> int:
    return sum(t.nbytes for t in read_gguf_header(path).tensors)


def write_windowed_gguf(path: Path, *, n_layers: int = 6, window: int = 128) -> Path:
    """A small gemma3-layout header: 6 layers, one KV head of 16, a 128-token sliding window."""
    import gguf

    w = gguf.GGUFWriter(path, "gemma3")
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_key_length(16)
    w.add_value_length(16)
    w.add_sliding_window(window)
    w.add_token_list([f"t{i}" for i in range(100)])
    w.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")  # 2 layers, n_embd 64, 2 KV heads of 16, F16


# --- GGUF ---------------------------------------------------------------------------------------------


def test_gguf_parts_follow_the_header(tiny):
    est = estimate_memory(as_model(tiny), {"n_ctx": 1024})
    assert set(est.parts) == {"weights", "kv_cache", "compute", "mmproj", "lora", "overhead"}
    assert est.parts["weights"] == tensor_bytes(tiny)  # F16: nothing repacked
    # 2 layers × (K 32 + V 32 values) × 1024 cells × 2 bytes (f16)
    assert est.parts["kv_cache"] == 2 * (32 + 32) * 1024 * 2
    assert est.vram_bytes == 0 and est.ram_bytes == est.total_bytes == sum(est.parts.values())
    assert est.n_ctx == 1024


def test_n_ctx_zero_means_the_models_own(tiny):
    est = estimate_memory(as_model(tiny), {"n_ctx": 0})
    assert est.n_ctx == 2048  # write_tiny_gguf's context_length
    assert est.parts["kv_cache"] == 2 * 64 * 2048 * 2
    assert any("context length" in n for n in est.notes)


def test_kv_cache_grows_with_context_and_shrinks_with_its_type(tiny):
    model = as_model(tiny)
    small, big = (estimate_memory(model, {"n_ctx": n}).parts["kv_cache"] for n in (1024, 4096))
    assert big == 4 * small
    q8 = estimate_memory(model, {"n_ctx": 4096, "cache_type_k": "q8_0", "cache_type_v": "q8_0"})
    assert q8.parts["kv_cache"] == big * 34 // 64  # q8_0: 34 bytes per 32 values against 64 for f16
    with pytest.raises(InvalidSetting, match="type_k"):
        estimate_memory(model, {"type_k": "q3"})


def test_n_gpu_layers_splits_ram_and_vram(tiny):
    model = as_model(tiny)
    header = read_gguf_header(tiny)
    embd = next(t.nbytes for t in header.tensors if t.name == "token_embd.weight")
    layer1 = sum(t.nbytes for t in header.tensors if t.name.startswith("blk.1."))
    cpu = estimate_memory(model, {"n_ctx": 1024})
    one = estimate_memory(model, {"n_ctx": 1024, "n_gpu_layers": 1})
    full = estimate_memory(model, {"n_ctx": 1024, "n_gpu_layers": -1})
    # one layer: the last one moves with its half of the KV cache
    assert one.vram_bytes >= layer1 + cpu.parts["kv_cache"] // 2
    assert one.vram_bytes < full.vram_bytes
    # everything: only the token embeddings (the input layer) and the runtime stay in system memory
    assert full.ram_bytes < embd + lc.runtime_bytes(lc.LlamaShape(
        n_layer=2, n_embd=64, n_head=4, n_vocab=len(header.metadata["tokenizer.ggml.tokens"]), n_ctx_train=2048,
        n_embd_k=[32, 32], n_embd_v=[32, 32])) + 4 * 512 * 2 * 64 + 4096  # fmt: skip
    assert full.parts["overhead"] >= lc.GPU_CONTEXT
    assert any("GPU context" in n for n in full.notes)


def test_sliding_window_layers(tmp_path):
    model = as_model(write_windowed_gguf(tmp_path / "windowed.gguf"))
    # gemma3: every 6th layer is global -> layers 0-4 windowed, layer 5 global; K+V = 2 × 16 values
    per_cell = 2 * 16 * 2
    full = estimate_memory(model, {"n_ctx": 4096})
    assert full.parts["kv_cache"] == 6 * 4096 * per_cell  # llama.cpp's default: full-size window cache
    windowed = estimate_memory(model, {"n_ctx": 4096, "swa_full": False})
    cells = lc.pad(128 + 512, 256)  # the window plus one micro-batch, padded
    assert windowed.parts["kv_cache"] == (5 * cells + 1 * 4096) * per_cell
    short = estimate_memory(model, {"n_ctx": 256, "swa_full": False})
    assert short.parts["kv_cache"] == 6 * 256 * per_cell  # never more than the context


def test_mmproj_and_lora_count(tmp_path, tiny):
    mmproj = write_mmproj_gguf(tmp_path / "mmproj.gguf")
    lora = write_lora_gguf(tmp_path / "lora.gguf")
    base = as_model(tiny)
    with_parts = as_model(tiny, components=(Component(kind=ComponentKind.MMPROJ, path=mmproj),))
    est = estimate_memory(with_parts, {"n_ctx": 1024}, loras=[lora])
    assert est.parts["mmproj"] > tensor_bytes(mmproj)  # weights plus the vision encoder's compute
    assert est.parts["lora"] == tensor_bytes(lora)
    plain = estimate_memory(base, {"n_ctx": 1024})
    assert est.total_bytes == plain.total_bytes + est.parts["mmproj"] + est.parts["lora"]


def test_missing_file_is_a_clear_error(tmp_path, tiny):
    model = as_model(tiny)
    tiny.unlink()
    with pytest.raises(NotFound, match="tiny.gguf"):
        estimate_memory(model, {})


# --- torch formats ------------------------------------------------------------------------------------


def test_safetensors_weights_by_dtype(minilm_path):
    model = as_model(minilm_path)
    fp32 = estimate_memory(model, {})
    from corral.detect.safetensors import read_header

    tensors = read_header(minilm_path / "model.safetensors").tensors.values()
    floats = sum(int(np.prod(t.shape)) * 4 for t in tensors if t.dtype == "F32")
    others = sum(t.end - t.begin for t in tensors if t.dtype != "F32")  # position ids (I64)
    exact = floats + others
    assert fp32.parts["weights"] == exact
    half = estimate_memory(model, {"dtype": "float16"})
    assert half.parts["weights"] == floats // 2 + others  # only floating-point tensors convert
    assert fp32.parts["overhead"] > 0 and fp32.vram_bytes == 0
    gpu = estimate_memory(model, {"device": "cuda"})
    assert gpu.vram_bytes >= exact and gpu.ram_bytes < gpu.vram_bytes


def st_bytes(paths) -> int:
    """Bytes of every tensor in these safetensors files, as their headers declare them."""
    from corral.detect.safetensors import read_header

    return sum(t.end - t.begin for p in paths for t in read_header(p).tensors.values())


def test_torch_formats(tmp_path):
    from factories_weights import write_diffusers_dir, write_kokoro_dir, write_llm_dir, write_peft_lora_dir

    llm = as_model(write_llm_dir(tmp_path / "llm"))  # 2 layers, 2 KV heads of 16, fp32, 256 context
    est = estimate_memory(llm, {})
    assert est.parts["weights"] == st_bytes([tmp_path / "llm" / "model.safetensors"])
    assert est.parts["kv_cache"] == 2 * 2 * 2 * 16 * 256 * 4 and est.n_ctx == 256
    longer = estimate_memory(llm, {"n_ctx": 1024, "dtype": "bfloat16"})
    assert longer.parts["kv_cache"] == 2 * 2 * 2 * 16 * 1024 * 2
    # bitsandbytes quantizes the layers' matrices, not the embeddings, the output head or the norms.
    from corral.detect.safetensors import read_header

    tensors = read_header(tmp_path / "llm" / "model.safetensors").tensors
    matrices = sum(int(np.prod(t.shape)) for n, t in tensors.items()
                   if len(t.shape) == 2 and "embed" not in n and "lm_head" not in n)
    assert matrices > 0
    for quantization, per_value in (("int8", 1.0), ("nf4", 0.5 + 4 / 64)):
        shrunk = estimate_memory(llm, {"quantization": quantization})
        expected = est.parts["weights"] - matrices * 4 + matrices * per_value
        assert abs(shrunk.parts["weights"] - expected) <= len(tensors)
    half = estimate_memory(llm, {"dtype": "fp16"}).parts["weights"]  # diffusers' short dtype names count too
    assert half == estimate_memory(llm, {"dtype": "float16"}).parts["weights"] < est.parts["weights"]
    adapter = write_peft_lora_dir(tmp_path / "adapter")
    with_lora = estimate_memory(llm, {}, loras=[adapter])
    assert with_lora.parts["lora"] == st_bytes([adapter / "adapter_model.safetensors"])
    assert estimate_memory(llm, {"quantization": "nf4"}, loras=[adapter]).parts["lora"] == with_lora.parts["lora"]

    pipeline = as_model(write_diffusers_dir(tmp_path / "sd"))
    est = estimate_memory(pipeline, {})
    assert est.parts["weights"] == st_bytes(sorted((tmp_path / "sd").rglob("*.safetensors")))
    assert est.parts["compute"] >= 512 * 1024**2 and any("rough allowance" in n for n in est.notes)

    kokoro = as_model(write_kokoro_dir(tmp_path / "kokoro"))
    est = estimate_memory(kokoro, {})
    pickles = [p for p in kokoro.paths if p.suffix in (".pth", ".pt")]
    assert pickles and est.parts["weights"] == sum(p.stat().st_size for p in pickles)  # pickles: file size


def test_free_memory_reads_ram_and_vendor_gpus(host):
    ram, vram = free_memory()
    assert ram > 0
    assert vram is None or vram >= 0
    host.gpu_vendors.append(tp.FakeVendor)  # one 1 GiB GPU, nothing used
    assert free_memory()[1] == 1 << 30


# --- corral fit ---------------------------------------------------------------------------------------


def test_fit_shows_estimate_free_and_measured(run, library, tiny):
    model = library.import_path(tiny).model
    out = run("fit", model.name, "--n-ctx", "1024", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    for key in ("ram_bytes", "vram_bytes", "total_bytes", "fits", "measured", "parts_bytes", "free_ram_bytes"):
        assert key in data
    assert data["measured"] is None and data["fits"] is True
    assert data["total_bytes"] == estimate_memory(model, {"n_ctx": 1024}).total_bytes
    assert "measured: none yet" in run("fit", model.name, "--n-ctx", "1024").stdout

    library.store.record_measurement(Measurement(model_id=model.id, settings={"n_ctx": 1024}, ram=12_345_678))
    data = json.loads(run("fit", model.name, "--n-ctx", "1024", "--json").stdout)
    assert data["measured"]["ram_bytes"] == 12_345_678
    assert "measured  12.3 MB" in run("fit", model.name, "--n-ctx", "1024").stdout
    # another context is another configuration: nothing measured for it yet
    assert json.loads(run("fit", model.name, "--n-ctx", "2048", "--json").stdout)["measured"] is None


def test_fit_refuses_gpu_layers_without_a_gpu(run, library, tiny):
    model = library.import_path(tiny).model
    data = json.loads(run("fit", model.name, "--n-gpu-layers", "-1", "--json").stdout)
    assert data["vram_bytes"] > 0
    assert data["fits"] is False and "no GPU" in data["problems"][0]


def test_fit_bad_input_is_one_line(run, library, tiny):
    model = library.import_path(tiny).model
    for args, fragment in ((["fit", "nope"], "no model 'nope'"),
                           (["fit", model.name, "--set", "bogus=1"], "unknown setting 'bogus'"),
                           (["fit", model.name, "--set", "n_ctx"], "NAME=VALUE")):  # fmt: skip
        out = run(*args)
        assert out.exit_code != 0
        assert fragment in out.stderr and "Traceback" not in out.output
    tiny.unlink()
    out = run("fit", model.name)
    assert out.exit_code != 0 and "tiny.gguf" in out.stderr and "missing" in out.stderr


# --- accuracy against real llama.cpp loads ------------------------------------------------------------

MEASURE = r"""
import json, sys
import psutil
import llama_cpp

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

before = psutil.Process().memory_info().rss
llm = llama_cpp.Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=2, verbose=False)
loaded = psutil.Process().memory_info().rss
n_vocab = llm.n_vocab()
llm.eval([(i * 7919) % (n_vocab - 10) + 5 for i in range(500)])  # one full prompt batch
print(json.dumps({"load": loaded - before, "peak": hwm() - before}))
"""


def measure_llama_cpp(path: Path, n_ctx: int) -> dict[str, int]:
    """Resident memory a fresh process gains loading ``path`` with llama-cpp-python (2 threads), after the
    load and at its peak through one 500-token prompt."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(n_ctx)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("n_ctx", [2048, 8192])
def test_estimate_matches_a_real_llama_cpp_load(n_ctx, gemma_path, library, run):
    pytest.importorskip("llama_cpp")
    model = library.import_path(gemma_path).model
    estimate = estimate_memory(model, {"n_ctx": n_ctx})
    measured = measure_llama_cpp(gemma_path, n_ctx)
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    print(f"\nGemma 3 270M Q4_K_M, n_ctx {n_ctx}: estimated {mb(estimate.total_bytes)} "
          f"{ {k: mb(v) for k, v in estimate.parts.items() if v} }; measured after load {mb(measured['load'])}, "
          f"peak with a 500-token prompt {mb(measured['peak'])}")  # fmt: skip
    for key in ("load", "peak"):
        error = abs(estimate.total_bytes - measured[key]) / measured[key]
        assert error < 0.10, f"estimate {mb(estimate.total_bytes)} vs measured {key} {mb(measured[key])}"

    # what the runtime records after each load, `corral fit` shows beside the estimate
    library.store.record_measurement(Measurement(model_id=model.id, settings={"n_ctx": n_ctx}, ram=measured["load"]))
    data = json.loads(run("fit", model.name, "--n-ctx", str(n_ctx), "--json").stdout)
    assert data["total_bytes"] == estimate.total_bytes
    assert data["measured"]["ram_bytes"] == measured["load"]
