"""Corral's hook specifications, grouped by stage: discover → detect → check → load/run → download →
export → monitor.

Two kinds of hook:

* **Registration hooks** (``register_*``) are called once per process, for every plugin. A plugin hands
  the ``register`` callback the objects it provides (drivers, download sources, exporters, GPU vendors).
  These objects declare what they handle through class attributes; registering them must not import
  torch, diffusers, llama_cpp, sentence_transformers, kokoro or modelscope.
* **Dispatch hooks** are ``firstresult``: the first plugin that returns something other than ``None``
  answers, and ``None`` means "not mine, ask the next plugin".

Loading, inference, environment checks, downloads and export are *methods* on the registered objects
(:mod:`corral.driver`), not broadcast hooks, so each plugin only sees the calls meant for it.

Hook arguments only ever grow: a new argument may be added, none is ever removed or renamed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from corral.driver import Driver, Exporter, GpuVendor, Source
    from corral.ext.categories import CategorySpec, FormatSpec
    from corral.ext.executor import ExecutorSpec, Placement
    from corral.ext.layout import StoreLayout
    from corral.records import CatalogEntry, Detection, Lora, Model

hookspec = pluggy.HookspecMarker("corral")

# --- discover ---------------------------------------------------------------------------------------


@hookspec
def register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register model drivers: the classes that load and run models.

    Called once per process when plugins are loaded.

    :param register: call it with each :class:`corral.driver.Driver` subclass the plugin provides.
        The class declares ``name``, ``distribution``, ``categories``, ``formats`` and ``requires``; it is
        instantiated only when a model is loaded.
    """


@hookspec
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register download sources (model hubs).

    Called once per process when plugins are loaded.

    :param register: call it with each :class:`corral.driver.Source` subclass; its ``name`` is the value
        users pass to ``--source``.
    """


@hookspec
def register_exporters(register: Callable[[type[Exporter]], None]) -> None:
    """Register exporters: things that write new model files (``corral create``, conversions).

    Called once per process when plugins are loaded.

    :param register: call it with each :class:`corral.driver.Exporter` subclass.
    """


@hookspec
def register_gpu_vendors(register: Callable[[type[GpuVendor]], None]) -> None:
    """Register GPU vendors: readers of GPU facts (name, VRAM, temperature, utilisation).

    Called once per process when plugins are loaded.

    :param register: call it with each :class:`corral.driver.GpuVendor` subclass.
    """


@hookspec
def register_categories(register: Callable[[CategorySpec], None]) -> None:
    """Register kinds of model: a category's name, the tasks a loaded model of it answers, its load group.

    Called once per process when plugins are loaded. The core registers its own (chat, embedding, ...)
    through this hook too. A name already registered is refused (``corral plugins`` shows it).

    :param register: call it with each :class:`corral.ext.categories.CategorySpec`. Its ``tasks`` are
        the names of the :class:`corral.driver.LoadedModel` methods that answer them; categories sharing
        a ``group`` are exclusive (loading one unloads the other).
    """


@hookspec
def register_formats(register: Callable[[FormatSpec], None]) -> None:
    """Register ways of storing weights; the plugin detects its format with ``detect_model``.

    Called once per process when plugins are loaded.

    :param register: call it with each :class:`corral.ext.categories.FormatSpec`.
    """


@hookspec
def register_store_layouts(register: Callable[[type[StoreLayout]], None]) -> None:
    """Register other tools' model stores, which ``corral scan --layout NAME`` adopts in place.

    Called once per process when plugins are loaded. The core registers the Hugging Face cache, Ollama
    and LM Studio layouts through this hook too.

    :param register: call it with each :class:`corral.ext.layout.StoreLayout` subclass; its ``name`` is
        what ``--layout`` takes, ``default_roots()`` where the tool keeps its models and ``find(root)``
        the models it holds, as :class:`corral.ext.layout.Found`.
    """


@hookspec
def register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """Register executors: where ``corral serve`` puts loaded models (``--executor NAME``).

    Called once per process when plugins are loaded. The core registers ``runner`` (a process per loaded
    model, the default) and ``in-process`` through this hook too; a name may be registered once.

    :param register: call it with each :class:`corral.ext.executor.ExecutorSpec`: a ``name`` and a
        ``factory`` (a callable, or ``"module:attribute"`` imported only when the executor is built) that
        takes keyword arguments ``host`` and ``log_dir`` and returns a
        :class:`corral.runtime.executor.Executor`.
    """


@hookspec
def register_catalog(register: Callable[[CatalogEntry], None]) -> None:
    """Add models to the catalog that ``corral catalog`` lists and ``corral recommend`` chooses from.

    Called when the catalog is first read in a process (not at start-up). Entries whose id is already
    in the built-in catalog are ignored.

    :param register: call it with each :class:`corral.records.CatalogEntry`; its ``origin`` is set to
        the plugin's name.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add CLI commands to ``corral``.

    Called once when the CLI is built, after the core's commands exist. Import heavy libraries only inside
    the command functions: ``corral --help`` runs this hook.

    :param cli: the top-level click group; call ``cli.add_command(...)`` or use ``@cli.command()``.
    """


@hookspec
def register_routes(register: Callable[..., None]) -> None:
    """Add HTTP routes to ``corral serve``.

    Called once when the server's application is built (never by the CLI), so route modules may import
    starlette. Endpoints reach the server's runtime through ``corral.api.service_of(request)`` and
    should run models through ``Service.run`` (the load rules, the queue and its 503 apply).

    :param register: ``register(route, scope="inference", bodies=None)`` with a Starlette route
        (``Route``, ``Mount``, ``WebSocketRoute``); ``scope`` is who may call it when keys are on
        (``management``, ``inference`` or ``public``); ``bodies``: content types it accepts instead of
        JSON (``("*",)``: any).
    """


# --- detect -----------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def detect_model(path: Path) -> Detection | None:
    """Say what the file or directory at ``path`` is.

    Called by ``corral import`` and ``corral scan`` for every candidate path, before the core's own
    detectors (which run last). Read headers only, and bound every length you read: files are untrusted.
    Raise :class:`corral.errors.DetectionError` for a file of your format that is malformed.

    Stops at the first non-None result.

    :param path: an existing file or directory.
    :return: a :class:`corral.records.Detection`, or ``None`` when the path is not in a format this plugin
        knows (the next plugin, and finally the core, is asked).
    """


@hookspec(firstresult=True)
def check_lora(base: Model, lora: Detection) -> bool | None:
    """Decide whether a LoRA adapter fits a base model before it is bound.

    Called by ``corral lora add`` before the core's own check (architecture and tensor shapes) runs.
    Raise :class:`corral.errors.Incompatible` with the reason when it does not fit.

    Stops at the first non-None result.

    :param base: the library model the adapter is for.
    :param lora: the adapter's detection.
    :return: ``True`` when it fits, or ``None`` to leave the decision to the next plugin and the core.
    """


# --- load / run -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def select_driver(model: Model, drivers: list[type[Driver]]) -> type[Driver] | None:
    """Choose the driver that loads ``model`` when several registered drivers could.

    Called before every load. ``drivers`` holds the candidates whose declared categories and formats
    match the model, best first by their ``priority``.

    Stops at the first non-None result.

    :return: one of ``drivers``, or ``None`` to take the first candidate.
    """


@hookspec(firstresult=True)
def place_model(model: Model, settings: dict, candidates: list[Placement]) -> Placement | None:
    """Choose where a model is loaded, among the places an executor offers (a cluster's nodes).

    Called by executors that place models (corral-ray) before each load, after the model's ``node``
    setting (which wins when set). Stops at the first non-None result.

    :param model: the model about to be loaded.
    :param settings: the settings it is loaded with.
    :param candidates: :class:`corral.ext.executor.Placement` for each node that holds the model's files
        and a usable driver, with its free memory and facts.
    :return: one of ``candidates``, or None to leave the choice to the executor's own rule.
    """


@hookspec
def model_loaded(model: Model, loras: list[Lora], memory: dict[str, int]) -> None:
    """Notice that a model was loaded (monitoring, logging, measured-memory records).

    Called after every successful load, in the process that holds the model.

    :param memory: what the load really took, in bytes: ``{"ram": ..., "vram": ...}``.
    """


@hookspec
def model_unloaded(model: Model) -> None:
    """Notice that a model was unloaded. Called after every unload."""
