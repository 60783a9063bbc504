"""The public plugin API: everything a Corral plugin may import, in one module.

Plugins import from here (and ``hookimpl`` from :mod:`corral`; :mod:`corral.testing` in their tests),
never from the core's other modules: those may move between releases, this module's names stay.
tests/test_layers.py fails when a plugin in plugins/ or the plugin template imports anything else.

What is here, by purpose:

* hooks: :data:`hookimpl`;
* what plugins register: :class:`Driver`, :class:`TorchDriver`, :class:`LoadedModel`, :class:`Source`,
  :class:`Exporter`, :class:`GpuVendor`;
* records and their enums (:class:`Model`, :class:`Detection`, :class:`Category`, ...);
* every error class (plugins subclass them instead of inventing exit codes);
* settings and sampling helpers, torch helpers, header readers for detection; the checks llama.cpp-based
  drivers run before llama.cpp reads a GGUF (:func:`preflight_gguf`, :func:`gguf_lora`,
  :func:`gguf_projector`);
* a small CLI kit for plugins that add commands (:class:`App`, :func:`pass_app`, :func:`emit_json`, ...);
* what plugins that add kinds of model register: :class:`CategorySpec`, :class:`FormatSpec`; another
  tool's model store: :class:`StoreLayout` yielding :class:`Found`;
* for routes added with ``register_routes``: :func:`service_of` (the request's :class:`Service`: ``await
  service_of(request).run(model, task, call)`` runs a model under the load rules and queue) and
  :func:`http_endpoint` (turns Corral errors into their HTTP answer).

Importing this module is cheap: every name is imported on first use (``from corral.api import Model``
imports what ``Model`` needs, nothing else), so a plugin's registration module costs little at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from corral import hookimpl

#: Public name -> the core module it comes from (or (module, attribute) where the names differ).
_EXPORTS: dict[str, Any] = {
    "hf_cache_roots": ("corral.adopt.hf_cache", "default_roots"),
    "scan": "corral.adopt",
    "App": "corral.cli.base",
    "emit_json": "corral.cli.base",
    "human_count": "corral.cli.base",
    "human_size": "corral.cli.base",
    "json_option": "corral.cli.base",
    "pass_app": "corral.cli.base",
    "table": "corral.cli.base",
    "to_data": "corral.convert",
    "check_lora_fits": "corral.detect",
    "detect_path": "corral.detect",
    "detect_gguf": "corral.detect.gguf",
    "quantization_name": "corral.detect.gguf",
    "read_gguf_header": "corral.detect.gguf",
    "read_json": "corral.detect.bounded",
    "kokoro_layout": "corral.detect.kokoro",
    "read_safetensors_header": ("corral.detect.safetensors", "read_header"),
    "shapes_of": "corral.detect.safetensors",
    "FLUX": "corral.detect.tensors",
    "IMAGE_TAGS": "corral.detect.tensors",
    "SD": "corral.detect.tensors",
    "SD3": "corral.detect.tensors",
    "SDXL": "corral.detect.tensors",
    "VIDEO_TAGS": "corral.detect.tensors",
    "WAN": "corral.detect.tensors",
    "Driver": "corral.driver",
    "Exporter": "corral.driver",
    "GpuVendor": "corral.driver",
    "LoadedModel": "corral.driver",
    "Progress": "corral.driver",
    "Source": "corral.driver",
    "TorchDriver": "corral.driver",
    "backend_status": "corral.driver",
    "drain": "corral.driver",
    "free_torch_memory": "corral.driver",
    "torch_acceleration": "corral.driver",
    "torch_device": "corral.driver",
    "torch_memory": "corral.driver",
    "torch_threads": "corral.driver",
    "CategorySpec": "corral.ext.categories",
    "FormatSpec": "corral.ext.categories",
    "CACHE_TYPES": "corral.ext.gguf",
    "LLAMA_CPP_SETTINGS": "corral.ext.gguf",
    "NUMA_STRATEGIES": "corral.ext.gguf",
    "ROPE_SCALING": "corral.ext.gguf",
    "SPLIT_MODES": "corral.ext.gguf",
    "gguf_lora": "corral.ext.gguf",
    "gguf_projector": "corral.ext.gguf",
    "preflight_gguf": "corral.ext.gguf",
    "MAX_IMAGE_BYTES": "corral.ext.images",
    "image_url": "corral.ext.images",
    "parts": "corral.ext.images",
    "read_image": "corral.ext.images",
    "Found": "corral.ext.layout",
    "estimate_memory": "corral.estimate",
    "system_status": "corral.monitor",
    "StoreLayout": "corral.ext.layout",
    "ExecutorSpec": "corral.ext.executor",
    "NODE_SETTING": "corral.ext.executor",
    "Placement": "corral.ext.executor",
    "Resident": "corral.ext.executor",
    "room_by_eviction": "corral.ext.executor",
    "choose_placement": "corral.ext.executor",
    "pinned": "corral.ext.executor",
    "Busy": "corral.errors",
    "CatalogError": "corral.errors",
    "ConfirmationNeeded": "corral.errors",
    "Conflict": "corral.errors",
    "CorralError": "corral.errors",
    "DetectionError": "corral.errors",
    "DownloadError": "corral.errors",
    "Incompatible": "corral.errors",
    "InsufficientMemory": "corral.errors",
    "IntegrityError": "corral.errors",
    "InvalidInput": "corral.errors",
    "InvalidRequest": "corral.errors",
    "InvalidSetting": "corral.errors",
    "NodeLost": "corral.errors",
    "NoSpace": "corral.errors",
    "NotFound": "corral.errors",
    "OutputNotWritable": "corral.errors",
    "Paused": "corral.errors",
    "PluginMissing": "corral.errors",
    "QueueFull": "corral.errors",
    "RunnerFailed": "corral.errors",
    "ServerUnavailable": "corral.errors",
    "StoreError": "corral.errors",
    "TimedOut": "corral.errors",
    "TokenizerError": "corral.errors",
    "Truncated": "corral.errors",
    "UnsafeFile": "corral.errors",
    "UnsafeName": "corral.errors",
    "Unsupported": "corral.errors",
    "inside": "corral.pull.names",
    "BackendStatus": "corral.records",
    "CatalogEntry": "corral.records",
    "CatalogQuant": "corral.records",
    "Category": "corral.records",
    "ChatResult": "corral.records",
    "Component": "corral.records",
    "ComponentKind": "corral.records",
    "Detection": "corral.records",
    "Facts": "corral.records",
    "Format": "corral.records",
    "GpuInfo": "corral.records",
    "Kind": "corral.records",
    "Lora": "corral.records",
    "LoraRequest": "corral.records",
    "Model": "corral.records",
    "Provenance": "corral.records",
    "RemoteFile": "corral.records",
    "RepoSummary": "corral.records",
    "SettingSpec": "corral.records",
    "Snapshot": "corral.records",
    "Transfer": "corral.records",
    "DEFAULT_SETTINGS": "corral.sampling",
    "read_sampling": "corral.sampling",
    "with_defaults": "corral.sampling",
    "with_system_prompt": "corral.sampling",
    "read_settings": "corral.settings",
    "merged_specs": "corral.settings",
    "AnswerShape": "corral.tools",
    "Delta": "corral.tools",
    "OutputFormat": "corral.tools",
    "THINKING": "corral.tools",
    "TokenLogprob": "corral.tools",
    "ToolCall": "corral.tools",
    "ToolCallDelta": "corral.tools",
    "ToolRequest": "corral.tools",
    "call_schema": "corral.tools",
    "check_schema": "corral.tools",
    "family_of": "corral.tools",
    "opens_thought": "corral.tools",
    "parse_tool_calls": "corral.tools",
    "plain_tool_messages": "corral.tools",
    "read_effort": "corral.tools",
    "read_response_format": "corral.tools",
    "read_tools": "corral.tools",
    "split_reasoning": "corral.tools",
    "template_messages": "corral.tools",
    "template_switch": "corral.tools",
    "thinking_off": "corral.tools",
    "with_tools_prompt": "corral.tools",
    "components_in_file": "corral.templates",
    "LoadPlan": "corral.loading",
    "driver_for": "corral.loading",
    "plan_load": "corral.loading",
    "check_memory": "corral.loading",
    "Executor": "corral.runtime.executor",
    "client_left": "corral.runtime.executor",
    "request_timeout": "corral.runtime.executor",
    "Runner": "corral.runtime.executor",
    "RunnerHandle": "corral.runtime.executor",
    "load_message": "corral.runtime.executor",
    "process_vram": "corral.runtime.executor",
    "serve_runner": ("corral.runtime.runner", "run"),
    "WireError": "corral.runtime.wire",
    "free_memory": "corral.estimate",
    "shortfalls": "corral.loading.fit",
    "sha256_file": "corral.manifests.files",
    "read_gpus": "corral.monitor",
    "get_host": "corral.plugins",
    "Service": "corral.server.service",
    "service_of": "corral.server.service",
    "http_endpoint": ("corral.server.responses", "endpoint"),
    "connect_or_start": "corral.server.client",
}


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'corral.api' has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["hookimpl", *_EXPORTS]
