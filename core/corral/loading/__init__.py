"""Load planning: which driver loads a model, everything checked before a load, what a load took.

Above the library (records) and below the runtime. :func:`plan_load` checks a load without running
it (driver and its backend, components, LoRAs bound to the model and within the driver's limit, the
settings); :func:`check_memory` refuses a plan known not to fit; :func:`record_load` keeps what a load
really took and tells plugins. :func:`open_model` does all of it for one job in this process, holding a
lease so the model cannot be deleted meanwhile; the runtime does the same steps through its executor.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import attrs

from corral import known
from corral.driver import Driver, LoadedModel
from corral.errors import Incompatible, PluginMissing
from corral.library import Library
from corral.loading.fit import check_fits
from corral.loading.rules import check_lora_count
from corral.plugins import PluginHost
from corral.records import LoraRequest, Measurement, Model
from corral.settings import apply_updates, merged_specs
from corral.templates import missing_components, model_template
from corral.words import a_or_an


@attrs.frozen
class LoadPlan:
    """A checked load: the model, the driver class that loads it, its LoRA requests and settings."""

    model: Model
    driver: type[Driver]
    loras: tuple[LoraRequest, ...]
    settings: Mapping[str, Any]


def choose_driver(host: PluginHost, model: Model) -> type[Driver] | None:
    """The driver that would load ``model`` (its ``driver`` setting, else the ``select_driver`` hook,
    else the highest priority), without checking its backend; None when no installed driver can."""
    candidates = host.drivers_for(model)
    if not candidates:
        return None
    wanted = model.settings.get("driver")  # the model's own choice, when several drivers can load it
    named = [d for d in candidates if d.name == wanted]
    if wanted and not named:
        raise PluginMissing(
            f"{model.name}: its driver setting names {wanted!r}, which cannot load it here (drivers that can: "
            f"{', '.join(d.name for d in candidates)}); corral settings {model.name} --unset driver"
        )
    return named[0] if named else (host.first_result("select_driver", model=model, drivers=candidates) or candidates[0])


def driver_for(host: PluginHost, model: Model) -> type[Driver]:
    """The driver that loads ``model``; a missing plugin or backend raises the install message."""
    chosen = choose_driver(host, model)
    if chosen is None:
        dist = known.driver_distribution(model.category, model.format)
        needs = f"the {dist} plugin: pip install {dist}" if dist else "a plugin for it"
        raise PluginMissing(
            f"{model.name} is {a_or_an(model.category)} model in {model.format} format; loading it needs {needs}",
            distribution=dist,
        )
    status = chosen.check()
    if not status.available:
        raise PluginMissing(
            f"{model.name}: the {chosen.name} backend is not usable ({status.problem}); "
            f"fix: {status.install or 'pip install ' + chosen.distribution}",
            distribution=chosen.distribution,
        )
    return chosen


def plan_load(
    library: Library, ref: str | Model, *, loras: Sequence[str] = (), overrides: Mapping[str, Any] | None = None
) -> LoadPlan:
    """Everything checked before a load: the model, its driver (environment check), the LoRAs (bound
    to it, within the driver's limit) and the settings (saved ones, then ``overrides``)."""
    model = ref if isinstance(ref, Model) else library.store.get_model(ref)
    driver = driver_for(library.host, model)
    check_components(model)
    requests = tuple(lora_request(library, model, r) for r in loras)
    check_lora_count(model, driver.name, driver.max_loras, len(requests))
    checked = apply_updates({}, overrides or {}, (), merged_specs(driver.settings), model.name)
    return LoadPlan(model=model, driver=driver, loras=requests, settings={**model.settings, **checked})


def check_memory(plan: LoadPlan, *, force: bool = False, reclaimable: tuple[int, int] = (0, 0)) -> None:
    """Refuse a load whose memory estimate does not fit (with numbers) unless ``force``;
    ``reclaimable`` is the ``(ram, vram)`` that models unloaded first give back."""
    check_fits(plan.model, plan.settings, loras=plan.loras, force=force, reclaimable=reclaimable)


def record_load(library: Library, plan: LoadPlan, handle: LoadedModel) -> dict[str, int]:
    """After a load: record what it really took and tell plugins (``model_loaded``)."""
    memory = {k: int(v) for k, v in (handle.memory() or {}).items()}
    if memory:
        library.store.record_measurement(
            Measurement(model_id=plan.model.id, settings=plan.settings, ram=memory.get("ram", 0),
                        vram=memory.get("vram", 0))
        )
    library.host.notify("model_loaded", model=plan.model, loras=[r.lora for r in plan.loras], memory=memory)
    return memory


@contextmanager
def open_model(
    library: Library,
    ref: str,
    *,
    loras: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Iterator[LoadedModel]:
    """Load a model in this process for one job, holding a lease so it cannot be deleted meanwhile."""
    plan = plan_load(library, ref, loras=loras, overrides=overrides)
    check_memory(plan, force=force)
    model = plan.model
    library.store.acquire_lease(model.id)
    try:
        handle = plan.driver().load(model, plan.settings, plan.loras)
        try:
            record_load(library, plan, handle)
            yield handle
        finally:
            handle.unload()
            library.host.notify("model_unloaded", model=model)
    finally:
        library.store.release_lease(model.id)


def check_components(model: Model) -> None:
    """Refuse to load a model whose template needs a component it lacks, listing every missing one."""
    missing = missing_components(model)
    if missing:
        template = model_template(model)
        attach = "; ".join(f"corral component add {model.name} {k} PATH" for k in missing)
        raise Incompatible(f"{model.name}: its {template.name} template needs {', '.join(map(str, missing))}, "
                           f"which {'are' if len(missing) > 1 else 'is'} missing; attach: {attach}")


def lora_request(library: Library, model: Model, ref: str) -> LoraRequest:
    """``name`` or ``name=weight`` of a LoRA bound to ``model`` (its saved weight when none is given)."""
    name, _, weight = ref.partition("=")
    lora = library.store.get_lora(name)
    if lora.base_id != model.id:
        raise Incompatible(f"LoRA {lora.name!r} is bound to another base model, not {model.name}")
    return LoraRequest(lora=lora, weight=float(weight) if weight else lora.weight)
