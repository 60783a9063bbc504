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
* for routes added with ``register_routes`` (imported on first use, so importing this module never
  imports the server): :func:`service_of` (the request's :class:`Service`: ``await
  service_of(request).run(model, task, call)`` runs a model under the load rules and queue) and
  :func:`http_endpoint` (turns Corral errors into their HTTP answer).

Importing this module is cheap: nothing heavy (torch, llama_cpp, ...) and no server code is imported.
"""

from __future__ import annotations

from corral import hookimpl
from corral.adopt.hf_cache import default_roots as hf_cache_roots
from corral.cli.base import App, emit_json, human_count, human_size, json_option, pass_app, table
from corral.detect import check_lora_fits, detect_path
from corral.detect.gguf import detect_gguf, quantization_name, read_gguf_header
from corral.detect.bounded import read_json
from corral.detect.kokoro import kokoro_layout
from corral.detect.safetensors import read_header as read_safetensors_header
from corral.detect.safetensors import shapes_of
from corral.detect.tensors import FLUX, IMAGE_TAGS, SD, SD3, SDXL, VIDEO_TAGS, WAN
from corral.driver import (
    Driver,
    Exporter,
    GpuVendor,
    LoadedModel,
    Progress,
    Source,
    TorchDriver,
    backend_status,
    drain,
    free_torch_memory,
    torch_acceleration,
    torch_device,
    torch_memory,
    torch_threads,
)
from corral.ext.categories import CategorySpec, FormatSpec
from corral.ext.gguf import (
    CACHE_TYPES,
    LLAMA_CPP_SETTINGS,
    NUMA_STRATEGIES,
    ROPE_SCALING,
    SPLIT_MODES,
    gguf_lora,
    gguf_projector,
    preflight_gguf,
)
from corral.ext.images import MAX_IMAGE_BYTES, image_url, parts, read_image
from corral.ext.layout import Found, StoreLayout
from corral.errors import (
    Busy,
    CatalogError,
    ConfirmationNeeded,
    Conflict,
    CorralError,
    DetectionError,
    DownloadError,
    Incompatible,
    InsufficientMemory,
    IntegrityError,
    InvalidInput,
    InvalidRequest,
    InvalidSetting,
    NoSpace,
    NotFound,
    OutputNotWritable,
    Paused,
    PluginMissing,
    QueueFull,
    ServerUnavailable,
    StoreError,
    TokenizerError,
    Truncated,
    UnsafeFile,
    UnsafeName,
    Unsupported,
)
from corral.pull.names import inside
from corral.records import (
    BackendStatus,
    CatalogEntry,
    CatalogQuant,
    ChatResult,
    Component,
    ComponentKind,
    Detection,
    Facts,
    Format,
    GpuInfo,
    Kind,
    Lora,
    LoraRequest,
    Model,
    Provenance,
    RemoteFile,
    RepoSummary,
    SettingSpec,
    Snapshot,
    Transfer,
    Category,
)
from corral.sampling import DEFAULT_SETTINGS, read_sampling, with_defaults, with_system_prompt
from corral.settings import read_settings
from corral.tools import (
    AnswerShape,
    Delta,
    OutputFormat,
    THINKING,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolRequest,
    call_schema,
    check_schema,
    family_of,
    opens_thought,
    parse_tool_calls,
    plain_tool_messages,
    read_effort,
    read_response_format,
    read_tools,
    split_reasoning,
    template_messages,
    template_switch,
    thinking_off,
    with_tools_prompt,
)
from corral.templates import components_in_file


#: Server helpers, imported on first use (name -> (module, attribute)).
_LAZY = {
    "Service": ("corral.server.service", "Service"),
    "service_of": ("corral.server.service", "service_of"),
    "http_endpoint": ("corral.server.responses", "endpoint"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'corral.api' has no attribute {name!r}")


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations",)] + list(_LAZY)
