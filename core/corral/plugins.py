"""Plugin loading and the registries that the registration hooks fill.

Entry points in the ``corral`` group are loaded one by one; a plugin that fails to import or to register
is recorded (``corral plugins`` shows it) and the others keep working. Environment variables:

* ``CORRAL_LOAD_PLUGINS``: comma list of entry-point names; when set (even empty) only those load.
* ``CORRAL_DISABLE_PLUGINS``: comma list of entry-point names that never load.
* ``CORRAL_STRICT_PLUGINS=1``: re-raise plugin failures (for plugin authors).
* ``CORRAL_TRACE_HOOKS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.metadata
import logging
import os
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
import pluggy

from corral import hookspecs
from corral.errors import CorralError
from corral.ext.categories import CategorySpec, FormatSpec
from corral.ext.driver import Driver
from corral.ext.executor import ExecutorSpec
from corral.ext.exporter import Exporter
from corral.ext.gpu import GpuVendor
from corral.ext.layout import StoreLayout
from corral.ext.source import Source
from corral.records import Category, PluginInfo

ENTRY_POINT_GROUP = "corral"

log = logging.getLogger("corral.plugins")

#: Modules of the core that ship as ordinary plugins (they run last: ``trylast`` hookimpls).
BUILTIN_PLUGINS = ("corral.builtin", "corral.detect.builtin")

#: registration hook name -> (registry attribute, what the registered objects must be: a subclass of a
#: base class, or an instance of a spec class)
REGISTRATION_HOOKS: dict[str, tuple[str, type]] = {
    "register_categories": ("categories", CategorySpec),
    "register_formats": ("formats", FormatSpec),
    "register_drivers": ("drivers", Driver),
    "register_sources": ("sources", Source),
    "register_exporters": ("exporters", Exporter),
    "register_gpu_vendors": ("gpu_vendors", GpuVendor),
    "register_store_layouts": ("store_layouts", StoreLayout),
    "register_executors": ("executors", ExecutorSpec),
}

#: Registries that hold instances (specs) rather than classes; a name may be registered once.
SPEC_REGISTRIES = frozenset({"categories", "formats", "executors"})
#: Registries where a name may be registered once (the first plugin in hook order keeps it).
UNIQUE_REGISTRIES = SPEC_REGISTRIES | {"store_layouts"}
_SINGULAR = {"categories": "category", "formats": "format", "store_layouts": "store layout", "executors": "executor"}


def _raised(hook_name: str, exc: BaseException) -> str:
    return f"{hook_name} raised {_describe(exc)}"


#: What the guarded implementations raise during one :meth:`PluginHost.call_one`.
_caught: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar("corral_caught", default=None)

#: Hooks whose implementation raising is a problem of its plugin (kept, shown by ``corral plugins``)
#: rather than a failure that drops it: observers, and the catalog's entries. Each maps to the problem's text.
_PROBLEM_HOOKS: dict[str, Callable[[str, BaseException], str]] = {
    "model_loaded": _raised,
    "model_unloaded": _raised,
    "register_catalog": lambda _hook, exc: f"failed to add catalog entries: {exc}",
}


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _strict() -> bool:
    return os.environ.get("CORRAL_STRICT_PLUGINS", "") not in ("", "0")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@attrs.define
class PluginHost:
    """The plugin manager plus everything plugins registered. Built once per process by :func:`get_host`."""

    pm: pluggy.PluginManager
    categories: list[CategorySpec] = attrs.field(factory=list)
    formats: list[FormatSpec] = attrs.field(factory=list)
    drivers: list[type[Driver]] = attrs.field(factory=list)
    sources: list[type[Source]] = attrs.field(factory=list)
    exporters: list[type[Exporter]] = attrs.field(factory=list)
    gpu_vendors: list[type[GpuVendor]] = attrs.field(factory=list)
    store_layouts: list[type[StoreLayout]] = attrs.field(factory=list)
    executors: list[ExecutorSpec] = attrs.field(factory=list)
    #: plugin name -> info for plugins that failed to import or register.
    failures: dict[str, PluginInfo] = attrs.field(factory=dict)
    #: plugin name -> problems that did not drop the plugin (``corral plugins`` shows them).
    problems: dict[str, list[str]] = attrs.field(factory=dict)
    #: plugin name -> (distribution, version) for entry-point plugins.
    dists: dict[str, tuple[str | None, str | None]] = attrs.field(factory=dict)
    #: registered class or spec -> name of the plugin that registered it.
    owners: dict[Any, str] = attrs.field(factory=dict)

    # --- lookups ---------------------------------------------------------------------------------

    def category(self, name: str) -> CategorySpec | None:
        """The registered category ``name`` (None: no installed plugin declares it)."""
        return next((c for c in self.categories if c.name == name), None)

    def tasks(self, category: str) -> frozenset[str]:
        """What a loaded model of ``category`` can be asked to do (nothing for an unknown category)."""
        spec = self.category(category)
        return spec.tasks if spec else frozenset()

    def load_group(self, category: str) -> str:
        """The exclusive group ``category`` loads in: one loaded model per group."""
        spec = self.category(category)
        return spec.load_group if spec else str(category)

    def task_categories(self, task: str) -> frozenset[Category]:
        """The categories whose models answer ``task``."""
        return frozenset(c.category for c in self.categories if task in c.tasks)

    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def format_names(self) -> list[str]:
        return [f.name for f in self.formats]

    def store_layout(self, name: str) -> type[StoreLayout] | None:
        return next((s for s in self.store_layouts if s.name == name), None)

    def store_layout_names(self) -> list[str]:
        return [s.name for s in self.store_layouts]

    def executor(self, name: str) -> ExecutorSpec | None:
        """The registered executor ``name`` (None: no installed plugin provides it)."""
        return next((e for e in self.executors if e.name == name), None)

    def executor_names(self) -> list[str]:
        return [e.name for e in self.executors]

    def source(self, name: str) -> type[Source] | None:
        return next((s for s in self.sources if s.name == name), None)

    def exporter(self, name: str) -> type[Exporter] | None:
        return next((e for e in self.exporters if e.name == name), None)

    def drivers_for(self, model: Any) -> list[type[Driver]]:
        """The installed drivers that can load ``model``, highest priority first."""
        return sorted((d for d in self.drivers if d.handles(model)), key=lambda d: -d.priority)

    def first_result(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` dispatch hook through pluggy: the first plugin, in pluggy's order, that
        answers something other than None decides.

        A plugin that raises something other than a :class:`CorralError` is recorded as failed and
        skipped, so one broken plugin never breaks detection for the others.
        """
        return self.hook(hook_name)(**kwargs)

    def hook(self, hook_name: str) -> Any:
        """pluggy's caller for ``hook_name``, each implementation guarded (see :meth:`_guard`)."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            if not getattr(impl.function, "corral_guarded", False):
                impl.function = self._guard(hook_name, impl.plugin_name, impl.function)
        return caller

    def call_one(self, hook_name: str, plugin: str, **kwargs: Any) -> BaseException | None:
        """Call one plugin's implementation of ``hook_name`` through pluggy (traced and guarded like
        every call); returns what it raised (recorded in :attr:`failures` or :attr:`problems`), else None."""
        self.hook(hook_name)
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin and p is not None]
        caught: list[BaseException] = []
        token = _caught.set(caught)
        try:
            self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        finally:
            _caught.reset(token)
        return caught[0] if caught else None

    def implementers(self, hook_name: str) -> list[str]:
        """The plugins implementing ``hook_name``, in the order pluggy calls them."""
        return [impl.plugin_name for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls())]

    def _guard(self, hook_name: str, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` (a plugin's hook implementation) made safe for the others: what it raises is
        recorded — as a failure that drops the plugin, or for an observer hook or the catalog as a problem
        of the plugin — and the call goes on as if it had answered None. A dispatch hook's
        :class:`CorralError` (a detector's refusal of an unsafe file, say) is the answer, and is raised."""
        dispatch = bool(getattr(self.pm.hook, hook_name).spec.opts.get("firstresult"))
        problem = _PROBLEM_HOOKS.get(hook_name)

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                if _strict() or (dispatch and isinstance(exc, CorralError)):
                    raise
                seen = _caught.get()
                if seen is not None:
                    seen.append(exc)
                if problem is None:
                    self._fail(plugin, f"{hook_name} raised {_describe(exc)}")
                else:
                    log.warning("plugin %s: %s raised %s", plugin, hook_name, _describe(exc), exc_info=True)
                    self.report_problem(plugin, problem(hook_name, exc))
                return None

        guarded.corral_guarded = True  # type: ignore[attr-defined]
        return guarded

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin, loaded or failed, as ``corral plugins`` lists it."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or name in self.failures:
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            dist, version = self.dists.get(name, (None, None))
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist,
                    version=version,
                    hooks=tuple(hooks),
                    drivers=self._owned(self.drivers, name),
                    sources=self._owned(self.sources, name),
                    categories=self._owned(self.categories, name),
                    formats=self._owned(self.formats, name),
                    store_layouts=self._owned(self.store_layouts, name),
                    gpu_vendors=self._owned(self.gpu_vendors, name),
                    exporters=self._owned(self.exporters, name),
                    problems=tuple(self.problems.get(name, ())),
                    builtin=name in BUILTIN_PLUGINS,
                )
            )
        return infos + list(self.failures.values())

    def report_problem(self, plugin: str, problem: str) -> None:
        """Record something a plugin got wrong that does not drop it (shown once by ``corral plugins``)."""
        found = self.problems.setdefault(plugin, [])
        if problem not in found:
            found.append(problem)

    def _owned(self, registry: Iterable[Any], plugin: str) -> tuple[str, ...]:
        return tuple(item.name for item in registry if self.owners.get(item) == plugin)

    # --- loading ---------------------------------------------------------------------------------

    def _fail(self, name: str, error: str) -> None:
        dist, version = self.dists.get(name, (None, None))
        self.failures[name] = PluginInfo(name=name, distribution=dist, version=version, error=error)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for attr, _base in REGISTRATION_HOOKS.values():
            registry = getattr(self, attr)
            registry[:] = [cls for cls in registry if self.owners.get(cls) != name]

    def load_entry_points(self) -> None:
        """Import each ``corral`` entry point in isolation, honouring the selection env vars."""
        only = _env_list("CORRAL_LOAD_PLUGINS")
        disabled = set(_env_list("CORRAL_DISABLE_PLUGINS") or [])
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (only is not None and ep.name not in only) or ep.name in disabled:
                continue
            if self.pm.get_plugin(ep.name) is not None or ep.name in self.failures:
                continue
            dist = getattr(ep, "dist", None)
            self.dists[ep.name] = (dist.name if dist else None, dist.version if dist else None)
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                if _strict():
                    raise
                self._fail(ep.name, f"failed to load: {_describe(exc)}")

    def collect_registrations(self) -> None:
        """Run every registration hook, plugin by plugin; a plugin whose hook raises is dropped whole."""
        for hook_name, (attr, base) in REGISTRATION_HOOKS.items():
            for plugin in self.implementers(hook_name):
                if plugin in self.failures:
                    continue
                registered: list[Any] = []
                if self.call_one(hook_name, plugin, register=_checked_register(registered, base, plugin)):
                    continue
                registry = getattr(self, attr)
                for item in registered:
                    if attr in UNIQUE_REGISTRIES and any(r.name == item.name for r in registry):
                        owner = next(self.owners[r] for r in registry if r.name == item.name)
                        self.report_problem(plugin, f"{_SINGULAR[attr]} {item.name!r} is already registered "
                                                    f"by {owner}; this one is ignored")
                        continue
                    self.owners[item] = plugin
                    registry.append(item)

    def call_each(self, hook_name: str, kwargs_for: Callable[[str], dict[str, Any]]) -> list[str]:
        """Call ``hook_name`` plugin by plugin with ``kwargs_for(plugin_name)``; a plugin that raises is
        recorded as failed and dropped, the others still run. Returns the plugins that answered."""
        answered = []
        for plugin in self.implementers(hook_name):
            if self.call_one(hook_name, plugin, **kwargs_for(plugin)) is None:
                answered.append(plugin)
        return answered

    def add_commands(self, cli: Any) -> None:
        """Let plugins add CLI commands; a failing plugin is recorded, the CLI still builds."""
        self.call_each("register_commands", lambda _plugin: {"cli": cli})

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Tell every observer (``model_loaded``, ``model_unloaded``) through pluggy. An observer that
        raises is recorded as a problem of its plugin (``corral plugins`` shows it) and logged; it never
        fails the caller."""
        self.hook(hook_name)(**kwargs)


def _checked_register(into: list[Any], base: type, plugin: str) -> Callable[[Any], None]:
    spec = base in (CategorySpec, FormatSpec, ExecutorSpec)

    def register(item: Any) -> None:
        if spec and not isinstance(item, base):
            raise TypeError(f"plugin {plugin!r} registered {item!r}, which is not a {base.__name__}")
        if not spec and not (isinstance(item, type) and issubclass(item, base)):
            raise TypeError(f"plugin {plugin!r} registered {item!r}, which is not a {base.__name__} subclass")
        if not getattr(item, "name", ""):
            raise TypeError(f"plugin {plugin!r} registered {item!r} without a name")
        into.append(item)

    return register


def _trace_enabled() -> bool:
    return os.environ.get("CORRAL_TRACE_HOOKS", "") not in ("", "0")


def _trace_call(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """pluggy's hook-call monitor: one stderr line per implementation a call will reach."""
    for impl in reversed(hook_impls):
        shown = ", ".join(f"{k}={kwargs[k]!r}" for k in impl.argnames if k in kwargs)
        print(f"corral hook: {impl.plugin_name}.{hook_name}({shown})", file=sys.stderr)


def make_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with Corral's hookspecs and nothing registered; with ``CORRAL_TRACE_HOOKS``
    set, every hook call is printed through pluggy's ``add_hookcall_monitoring``."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if _trace_enabled():
        pm.add_hookcall_monitoring(_trace_call, lambda *_: None)
    return pm


def build_host(*, entry_points: bool = True, plugins: Iterable[Any] = ()) -> PluginHost:
    """A fresh host: built-in plugins, then ``plugins`` (objects or modules), then entry points."""
    host = PluginHost(pm=make_plugin_manager())
    for module_name in BUILTIN_PLUGINS:
        host.pm.register(importlib.import_module(module_name), name=module_name)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or getattr(plugin, "name", None) or repr(plugin)
        host.pm.register(plugin, name=name)
    if entry_points:
        host.load_entry_points()
    host.collect_registrations()
    return host


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, built on first use (registries are never rebuilt per lookup)."""
    global _host
    if _host is None:
        _host = build_host()
    return _host


def set_host(host: PluginHost | None) -> None:
    """Replace the process-wide host (tests pass a fresh one; ``None`` rebuilds on next use)."""
    global _host
    _host = host

