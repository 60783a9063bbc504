"""What the page shows, as plain JSON-ready data built from the library and the runtime.

Each function takes this thread's library (``runtime.lib()``, called inside the worker thread: SQLite
connections stay in their thread) and, where loaded models matter, the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from corral.api import (
    ComponentKind,
    CorralError,
    InvalidRequest,
    estimate_memory,
    merged_specs,
    scan,
    system_status,
    to_data,
)

TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list"}


def model_row(model: Any, loaded: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the library table."""
    facts = model.facts
    return {
        "id": model.id,
        "name": model.name,
        "category": str(model.category),
        "format": str(model.format),
        "architecture": facts.architecture,
        "parameters": facts.parameters,
        "quantization": facts.quantization or facts.dtype,
        "context": facts.context_length,
        "size": model.size,
        "missing": model.missing,
        "loaded": model.id in loaded,
        "description": model.description,
        "tags": list(model.tags),
    }


def loaded_by_id(runtime: Any) -> dict[str, Any]:
    return {entry.model.id: entry for entry in runtime.entries()}


def models(library: Any, runtime: Any) -> list[dict[str, Any]]:
    """Every model of the library, with whether its files are on disk and whether it is loaded."""
    loaded = loaded_by_id(runtime)
    return [model_row(library.check_files(m), loaded) for m in library.store.list_models()]


def _spec(spec: Any, saved: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": TYPE_NAMES.get(spec.type, getattr(spec.type, "__name__", "str")),
        "help": spec.help,
        "default": spec.default if isinstance(spec.default, (int, float, str, bool, type(None))) else str(spec.default),
        "choices": [c if isinstance(c, (int, float, str, bool)) else str(c) for c in spec.choices],
        "minimum": spec.minimum,
        "maximum": spec.maximum,
        "exclusive_minimum": spec.exclusive_minimum,
        "value": saved.get(spec.name),
    }


def setting_specs(library: Any, model: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The settings a load of ``model`` takes (the core's and its drivers', as the library's settings
    update checks them), each with its bounds, help and saved value; and the drivers' names."""
    # The drivers that can load it, highest priority first (as the library's settings update reads them).
    drivers = sorted((d for d in library.host.drivers if d.handles(model)), key=lambda d: -d.priority)
    specs = merged_specs(s for d in drivers for s in d.settings)
    return [_spec(s, model.settings) for s in specs.values()], [d.name for d in drivers]


def detail(library: Any, runtime: Any, ref: str) -> dict[str, Any]:
    """One model in full: its record, why detection says what it says, its LoRAs, settings and load."""
    model = library.check_files(library.store.get_model(ref))
    loaded = loaded_by_id(runtime)
    data = to_data(model)
    data["row"] = model_row(model, loaded)
    try:
        detection = library.detect(Path(model.path), allow_unsafe=True)
        data["detection"] = {"confidence": detection.confidence, "reasons": list(detection.reasons)}
    except (CorralError, OSError) as exc:
        data["detection"] = {"confidence": None, "reasons": [], "problem": str(exc)}
    data["loras"] = to_data(library.store.list_loras(model.id))
    data["component_kinds"] = [k.value for k in ComponentKind]
    specs, drivers = setting_specs(library, model)
    data["setting_specs"] = specs
    data["drivers"] = drivers
    entry = loaded.get(model.id)
    data["loaded_info"] = loaded_row(entry.info()) if entry is not None else None
    return data


def update_settings(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Save a settings form: ``set`` maps names to values, ``unset`` lists names back to their default."""
    updates = body.get("set") or {}
    unset = body.get("unset") or []
    if not isinstance(updates, dict) or not isinstance(unset, list) or not all(isinstance(u, str) for u in unset):
        raise InvalidRequest("send {'set': {NAME: VALUE}, 'unset': [NAME]}")
    model = library.update_settings(ref, updates, unset=unset)
    return {"name": model.name, "settings": to_data(dict(model.settings))}


def edit(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a model or change its description."""
    name, description = body.get("name"), body.get("description")
    if not all(v is None or isinstance(v, str) for v in (name, description)):
        raise InvalidRequest("fields 'name' and 'description' must be strings")
    model = library.edit(ref, name=name.strip() if name is not None else None, description=description)
    return {"model": model_row(library.check_files(model), loaded_by_id(runtime))}


def remove(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Delete a model's record (and its LoRA records) once the page confirmed it; the files stay."""
    if body.get("confirm") is not True:
        raise InvalidRequest("removing a model needs {'confirm': true}")
    model, loras = library.remove(ref)
    return {"removed": model.name, "loras": [lora.name for lora in loras],
            "files_kept": [str(p) for p in (model.paths or (model.path,))]}


def add_lora(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Bind the LoRA adapter at ``body['path']`` to ``ref`` (checked against the base first)."""
    path, name, weight = body.get("path"), body.get("name") or None, body.get("weight", 1.0)
    if not isinstance(path, str) or not path:
        raise InvalidRequest("field 'path': the absolute path of the LoRA adapter")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("field 'name' must be a string")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InvalidRequest("field 'weight' must be a number")
    lora = library.add_lora(ref, Path(path), name=name, weight=float(weight))
    return {"lora": to_data(lora)}


def set_lora_weight(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Save a LoRA's default weight (``body['weight']``), as ``corral lora set --weight``."""
    weight = body.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InvalidRequest("field 'weight' must be a number")
    return {"lora": to_data(library.set_lora_weight(ref, float(weight)))}


def remove_lora(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Unbind a LoRA (its record only; the adapter file stays)."""
    lora = library.store.get_lora(ref)
    library.store.delete_lora(lora.id)
    return {"removed": lora.name, "file_kept": str(lora.path)}


def _component_kind(body: Mapping[str, Any]) -> ComponentKind:
    kind = body.get("kind")
    kinds = [k.value for k in ComponentKind]
    if kind not in kinds:
        raise InvalidRequest(f"field 'kind': one of {', '.join(kinds)}")
    return ComponentKind(kind)


def add_component(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Attach (or replace) ``ref``'s ``body['kind']`` component with the file at ``body['path']``, checked
    as ``corral component add`` checks it (the file must be that kind and fit the model)."""
    kind = _component_kind(body)
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidRequest("field 'path': the absolute path of the component file")
    model = library.add_component(ref, kind, Path(path))
    return {"model": model_row(model, loaded_by_id(runtime)), "components": to_data(list(model.components))}


def remove_component(library: Any, runtime: Any, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Detach ``ref``'s ``body['kind']`` component (as ``corral component rm``; the file stays)."""
    kind = _component_kind(body)
    before = library.store.get_model(ref).component(kind)
    model = library.remove_component(ref, kind)
    return {"model": model_row(model, loaded_by_id(runtime)), "components": to_data(list(model.components)),
            "file_kept": str(before.path) if before is not None else None}


def _lora_records(library: Any, model: Any, refs: Any) -> list[Any]:
    """The LoRA records of ``NAME`` / ``NAME=WEIGHT`` strings bound to ``model`` (for the estimate)."""
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InvalidRequest("field 'loras': a list of LoRA names (NAME or NAME=WEIGHT)")
    records = []
    for ref in refs:
        lora = library.store.get_lora(ref.partition("=")[0])
        if lora.base_id != model.id:
            raise InvalidRequest(f"LoRA {lora.name!r} is bound to another base model, not {model.name}")
        records.append(lora)
    return records


def layouts(host: Any) -> list[dict[str, str]]:
    """The other tools' model stores a scan can adopt (the HF cache, Ollama, LM Studio, plugins' own)."""
    found = []
    for name in host.store_layout_names():
        layout = host.store_layout(name)
        found.append({"name": name, "label": getattr(layout, "label", "") or name})
    return found


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.2f} GiB"


def plan(library: Any, runtime: Any, ref: str, settings: Mapping[str, Any] | None = None,
         loras: Any = ()) -> dict[str, Any]:
    """What loading ``ref`` would do, in the load rules' words: what it replaces, its memory estimate
    against what is free (counting what it replaces as freed)."""
    model = library.store.get_model(ref)
    host = runtime.host
    group = host.load_group(str(model.category))
    replaces = [e for e in runtime.entries()
                if e.model.id != model.id and host.load_group(str(e.model.category)) == group]
    already = any(e.model.id == model.id for e in runtime.entries())
    merged = {**model.settings, **(settings or {})}
    adapters = _lora_records(library, model, list(loras))
    estimate = None
    problem = None
    try:
        estimate = estimate_memory(model, merged, loras=adapters)
    except (CorralError, OSError, ValueError) as exc:
        problem = str(exc)
    status = system_status(host, interval=None)
    freed_ram = sum(int(e.memory.get("ram", 0)) for e in replaces)
    free_ram = status.memory_available + freed_ram
    gpus = [g for g in status.gpus if g.vram_total]
    free_vram = sum(g.vram_total - (g.vram_used or 0) for g in gpus) if gpus else None
    fits = None
    if estimate is not None:
        fits = estimate.ram_bytes <= free_ram and (not estimate.vram_bytes or free_vram is None
                                                   or estimate.vram_bytes <= free_vram)
    words = []
    if already:
        words.append(f"{model.name} is loaded")
    if replaces:
        words.append(f"loading {model.name} unloads {', '.join(e.model.name for e in replaces)} "
                     f"(one {group} model at a time)")
    if estimate is not None:
        need = f"memory estimate {_gib(estimate.ram_bytes)} RAM"
        if estimate.vram_bytes:
            need += f" + {_gib(estimate.vram_bytes)} VRAM"
        words.append(f"{need}; free {_gib(free_ram)} RAM" + (f", {_gib(free_vram)} VRAM" if free_vram is not None else ""))
        if not fits:
            words.append("the estimate does not fit: loading needs force")
    elif problem:
        words.append(f"no memory estimate: {problem}")
    return {
        "model": model.name,
        "loaded": already,
        "unloads": [e.model.name for e in replaces],
        "estimate": to_data(estimate) if estimate is not None else None,
        "free": {"ram": free_ram, "vram": free_vram},
        "fits": fits,
        "message": "; ".join(words) or f"loading {model.name}",
    }


class Estimates:
    """Memory estimates of loaded models, kept per load (base, settings): the runtime table polls."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], dict[str, Any] | None] = {}

    def of(self, entry: Any) -> dict[str, Any] | None:
        key = (entry.model.id, json.dumps(dict(entry.settings), sort_keys=True, default=str))
        if key not in self._known:
            try:
                e = estimate_memory(entry.model, dict(entry.settings), loras=entry.loras)
                self._known[key] = {"ram": e.ram_bytes, "vram": e.vram_bytes, "total": e.total_bytes}
            except (CorralError, OSError, ValueError):
                self._known[key] = None
            if len(self._known) > 256:
                self._known.pop(next(iter(self._known)))
        return self._known[key]


def loaded_row(info: Any) -> dict[str, Any]:
    """A loaded model (a :class:`LoadedInfo`) as the page reads it."""
    return {
        "id": info.id, "name": info.name, "category": str(info.category), "driver": info.driver,
        "loras": list(info.loras), "settings": to_data(dict(info.settings)), "ram": info.ram, "vram": info.vram,
        "loaded_at": info.loaded_at, "last_used": info.last_used, "expires_in": info.expires_in,
        "busy": info.busy, "running": info.running, "parallel": info.parallel, "waiting": info.waiting,
        "served": info.served, "rejected": info.rejected, "node": getattr(info, "node", None),
    }


def runtime_rows(runtime: Any, estimates: Estimates) -> list[dict[str, Any]]:
    """The loaded models: queue, memory measured after the load against the estimate, keep-alive."""
    entries = {e.model.id: e for e in runtime.entries()}
    rows = []
    for info in runtime.ps():
        row = loaded_row(info)
        row["estimate"] = estimates.of(entries[info.id]) if info.id in entries else None
        rows.append(row)
    return rows


def reading(runtime: Any, watchdog: Any) -> dict[str, Any]:
    """One monitor point: CPU, RAM, each GPU, the watchdog's threshold and memory per loaded model."""
    import time

    status = system_status(runtime.host, interval=None)
    gpus = []
    for g in status.gpus:
        share = 100.0 * g.vram_used / g.vram_total if g.vram_total and g.vram_used is not None else None
        gpus.append({"index": g.index, "name": g.name, "utilization": g.utilization, "vram_percent": share})
    events = list(watchdog.events)[-20:] if watchdog is not None else []
    return {
        "time": time.time(),
        "cpu": status.cpu_percent,
        "ram_percent": status.memory_percent,
        "ram_used": status.memory_used,
        "ram_total": status.memory_total,
        "gpus": gpus,
        "threshold": watchdog.threshold if watchdog is not None else status.warn_percent,
        "models": [{"name": e.model.name, "ram": int(e.memory.get("ram", 0)), "vram": int(e.memory.get("vram", 0))}
                   for e in runtime.entries()],
        "events": to_data(events),
    }


def import_one(library: Any, runtime: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """Import the file or folder at ``body['path']`` (already checked against the allowed folders)."""
    path = body.get("path")
    name = body.get("name") or None
    if not isinstance(path, str) or not path:
        raise InvalidRequest("field 'path': the absolute path of a model file or folder")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("field 'name' must be a string")
    result = library.import_path(Path(path), name=name)
    if result.model is None:
        return {"model": None, "offer": result.offer, "candidates": list(result.candidates)}
    return {
        "model": model_row(result.model, loaded_by_id(runtime)),
        "detection": {"confidence": result.detection.confidence, "reasons": list(result.detection.reasons)},
    }


def scan_folder(library: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """Scan a folder, or a store of another tool (``layout``; its usual place when no ``path``), in
    place (``dry_run``: say what would be added, add nothing)."""
    path = body.get("path") or None
    layout = body.get("layout") or None
    dry_run = body.get("dry_run", True)
    if path is not None and not isinstance(path, str):
        raise InvalidRequest("field 'path': the absolute path of a folder")
    if layout is not None and not isinstance(layout, str):
        raise InvalidRequest("field 'layout': the name of a model store (see the scan form's choices)")
    if path is None and layout is None:
        raise InvalidRequest("give a folder ('path'), a store ('layout'), or both")
    if not isinstance(dry_run, bool):
        raise InvalidRequest("field 'dry_run' must be true or false")
    entries = scan(library, Path(path) if path else None, layout=layout, dry_run=dry_run)
    return {"dry_run": dry_run, "entries": to_data(entries)}
