"""The contract every Corral plugin meets, as tests a plugin's test class inherits.

A plugin opts in with one test file (``tests/test_conformance.py``)::

    from corral.testing import Conformance

    class TestConformance(Conformance):
        plugin = "mybackend"  # the entry-point name in group "corral"

and, when it registers drivers, a ``corral_sample`` fixture returning a :class:`corral.testing.Sample`
(or a list of them): a small model of its own that the round-trip tests import, load, run and unload.
The fixtures the tests use come from :mod:`corral.testing.plugin`, which pytest loads through the
``pytest11`` entry point of the ``corral`` distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from corral.driver import Driver, GpuVendor
from corral.errors import CorralError
from corral.loading import driver_for, open_model
from corral.plugins import REGISTRATION_HOOKS, PluginHost
from corral.records import BackendStatus, Category, Format, GpuInfo, SettingSpec
from corral.testing.sample import (
    Sample,
    call_task,
    check_answer,
    check_stream,
    stream_task,
    unsupported_task,
)
from corral.words import a_or_an


def owned(host: PluginHost, plugin: str, registry: str) -> list[type]:
    """The classes ``plugin`` registered in ``registry`` (``drivers``, ``sources``, ...)."""
    return [cls for cls in getattr(host, registry) if host.owners.get(cls) == plugin]


def own_hookimpls(host: PluginHost, plugin: str, hook: str) -> list[Any]:
    return [impl for impl in getattr(host.pm.hook, hook).get_hookimpls() if impl.plugin_name == plugin]


def normalized(distribution: str | None) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return (distribution or "").lower().replace("_", "-").replace(".", "-")


def samples_of(request: pytest.FixtureRequest) -> list[Sample]:
    value = request.getfixturevalue("corral_sample")
    samples = list(value) if isinstance(value, (list, tuple)) else [value]
    assert samples and all(isinstance(s, Sample) for s in samples), (
        f"corral_sample must return a corral.testing.Sample or a list of them, not {value!r}"
    )
    return samples


def truncated_copy(src: Path, dest_dir: Path) -> Path:
    """A copy of ``src`` cut in half (a folder: its top-level files cut in half), at most 4 KiB each."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file())
    if src.is_dir():
        dest.mkdir(parents=True)
    for file in files:
        with open(file, "rb") as f:
            head = f.read(min(file.stat().st_size // 2, 4096))
        (dest if src.is_file() else dest / file.name).write_bytes(head)
    return dest


def garbage_copy(src: Path, dest_dir: Path) -> Path:
    """Same name(s) as ``src``, filled with text that is no model format."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    junk = b"this is not a model file\n" * 8
    if src.is_file():
        dest.write_bytes(junk)
        return dest
    dest.mkdir(parents=True)
    for file in (p for p in src.iterdir() if p.is_file()):
        (dest / file.name).write_bytes(junk)
    return dest


class Conformance:
    """Inherit in a ``Test*`` class and set :attr:`plugin`; every test below then runs for the plugin.

    A test that does not apply (no driver registered, no ``detect_model``) is skipped with the reason.
    """

    #: The plugin's entry-point name in the ``corral`` group.
    plugin: str = ""

    pytestmark = pytest.mark.corral_conformance

    # --- registration --------------------------------------------------------------------------

    def test_registers_without_heavy_imports(self, corral_plugin: str) -> None:
        """In a fresh process, importing the plugin, registering it and building the CLI import no backend."""
        env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_STRICT_PLUGINS", "CORRAL_TRACE_HOOKS")}
        out = subprocess.run(
            [sys.executable, "-m", "corral.testing.startup_probe", corral_plugin],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["found"], (
            f"no entry point {corral_plugin!r} in group 'corral': is the plugin installed (pip install -e .)?"
        )
        assert report["failure"] is None, f"plugin {corral_plugin!r} failed to load: {report['failure']}"
        assert not report["heavy"], (
            f"registering plugin {corral_plugin!r} imported {', '.join(report['heavy'])}: import backends only "
            "inside the functions that need them (load, the LoadedModel methods, download, export, probe)"
        )

    def test_declares_capabilities(self, corral_plugin_host: PluginHost, corral_plugin: str) -> None:
        """Every registered class declares what it handles through its class attributes."""
        host, plugin = corral_plugin_host, corral_plugin
        assert host.pm.get_hookcallers(host.pm.get_plugin(plugin)), f"plugin {plugin!r} implements no hook"
        installed = normalized(host.dists.get(plugin, (None, None))[0])
        problems: list[str] = []
        for registry in (attr for attr, _base in REGISTRATION_HOOKS.values()):
            classes = owned(host, plugin, registry)
            names = [cls.name for cls in classes]
            if len(set(names)) != len(names):
                problems.append(f"{registry} names repeat: {names}")
            for cls in classes:
                problems += [f"{registry[:-1]} {cls.__name__}: {p}" for p in _class_problems(cls, installed)]
        assert not problems, f"plugin {plugin!r} declares too little: " + "; ".join(problems)

    # --- detection -----------------------------------------------------------------------------

    def test_detection_ignores_foreign_files(
        self, corral_plugin_host: PluginHost, corral_plugin: str, corral_foreign_paths: dict[str, Path]
    ) -> None:
        """``detect_model`` answers ``None`` for files and folders in formats the plugin does not own."""
        impls = own_hookimpls(corral_plugin_host, corral_plugin, "detect_model")
        if not impls:
            pytest.skip(f"plugin {corral_plugin!r} does not implement detect_model")
        claimed = []
        for kind, path in corral_foreign_paths.items():
            for impl in impls:
                try:
                    answer = impl.function(**{arg: path for arg in impl.argnames})
                except Exception as exc:  # any raise stops detection for every later plugin and the core
                    claimed.append(f"{kind} {path.name}: raised {_name(exc)}: {exc}")
                    continue
                if answer is not None:
                    claimed.append(f"{kind} {path.name}: answered {answer!r}")
        assert not claimed, "detect_model must return None for what it does not own; " + "; ".join(claimed)

    def test_detection_errors_are_corral_errors(
        self, request: pytest.FixtureRequest, corral_plugin_host: PluginHost, corral_plugin: str, tmp_path: Path
    ) -> None:
        """A truncated copy of the plugin's own sample is ``None`` or a ``CorralError``, never a crash."""
        impls = own_hookimpls(corral_plugin_host, corral_plugin, "detect_model")
        if not impls:
            pytest.skip(f"plugin {corral_plugin!r} does not implement detect_model")
        for n, sample in enumerate(samples_of(request)):
            broken = truncated_copy(sample.path, tmp_path / f"cut{n}")
            for impl in impls:
                try:
                    impl.function(**{arg: broken for arg in impl.argnames})
                except CorralError:
                    pass
                except Exception as exc:
                    pytest.fail(
                        f"detect_model crashed on a truncated {sample.path.name} with {_name(exc)}: {exc}; "
                        "raise corral.errors.DetectionError naming the file instead"
                    )

    # --- load / run ----------------------------------------------------------------------------

    def test_round_trip(self, request: pytest.FixtureRequest, corral_plugin: str, corral_library: Any) -> None:
        """Each sample imports, loads, answers its task (plain and streamed), refuses a task its category
        cannot do with a Corral error, reports its memory and unloads -- twice, so unloading leaves
        nothing behind that breaks the next load."""
        self._need_drivers(corral_library.host, corral_plugin)
        for sample in samples_of(request):
            model = self._import(corral_library, sample)
            self._driver(corral_library, corral_plugin, model)
            task = sample.task_for(model.category)
            for _ in range(2):
                with open_model(corral_library, model.id, overrides=sample.settings) as handle:
                    answer = call_task(handle, task, sample.params)
                    check_answer(task, answer)
                    if task in ("chat", "complete"):
                        check_stream(task, stream_task(handle, task, sample.params))
                    if sample.check is not None:
                        sample.check(answer)
                    _expect_unsupported(handle, unsupported_task(model.category))
                    memory = handle.memory()
                    assert isinstance(memory, dict) and all(
                        isinstance(v, int) and v >= 0 for v in memory.values()
                    ), f"memory() returned {memory!r}, not {{'ram': bytes, 'vram': bytes}}"

    def test_bad_model_path_raises_corral_error(
        self, request: pytest.FixtureRequest, corral_plugin: str, corral_library: Any, tmp_path: Path
    ) -> None:
        """Loading a model whose files are missing or garbage raises a ``CorralError`` naming the file."""
        self._need_drivers(corral_library.host, corral_plugin)
        for n, sample in enumerate(samples_of(request)):
            model = self._import(corral_library, sample)
            driver = self._driver(corral_library, corral_plugin, model)
            task = sample.task_for(model.category)
            missing = tmp_path / f"missing{n}" / sample.path.name
            garbage = garbage_copy(sample.path, tmp_path / f"garbage{n}")
            for label, path in (("missing", missing), ("garbage", garbage)):
                bad = attrs.evolve(model, path=path, paths=(path,))
                _expect_corral_error(driver, bad, label, task, sample)

    # --- monitor -------------------------------------------------------------------------------

    def test_gpu_vendors_probe(self, corral_plugin_host: PluginHost, corral_plugin: str) -> None:
        """``probe()`` returns a list of ``GpuInfo``: empty where the vendor has no GPU, never an error."""
        vendors = owned(corral_plugin_host, corral_plugin, "gpu_vendors")
        if not vendors:
            pytest.skip(f"plugin {corral_plugin!r} registers no GPU vendor")
        for vendor in vendors:
            gpus = vendor().probe()
            assert isinstance(gpus, list) and all(isinstance(g, GpuInfo) for g in gpus), (
                f"{vendor.__name__}.probe() returned {gpus!r}, not a list of GpuInfo"
            )

    def test_reported_by_cli(self, corral_plugin_host: PluginHost, corral_plugin: str, corral_home: Path) -> None:
        """``corral plugins --json`` lists the plugin and what it registered; ``corral env`` reports it."""
        from click.testing import CliRunner

        from corral.cli import build_cli

        host, plugin = corral_plugin_host, corral_plugin
        cli = build_cli()
        result = CliRunner().invoke(cli, ["plugins", "--json"])
        assert result.exit_code == 0, result.output
        infos = {info["name"]: info for info in json.loads(result.stdout)}
        assert plugin in infos, f"corral plugins does not list {plugin!r}: {sorted(infos)}"
        info = infos[plugin]
        assert not info.get("error"), f"corral plugins reports {plugin!r} as failed: {info['error']}"
        for registry in ("drivers", "sources", "exporters", "gpu_vendors"):
            registered = sorted(c.name for c in owned(host, plugin, registry))
            assert sorted(info[registry]) == registered, f"corral plugins shows {registry} {info[registry]}, not {registered}"
        if cli.get_command(None, "env") is None:
            return
        result = CliRunner().invoke(cli, ["env", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        entries = [d for d in _dicts(report) if d.get("name") == plugin]
        assert entries, f"corral env --json does not report plugin {plugin!r}"
        assert not any(d.get("error") for d in entries), f"corral env reports plugin {plugin!r} as failed: {entries}"
        shown = {d.get("name") for d in _dicts(report)}
        for registry in ("drivers", "sources", "gpu_vendors"):
            for cls in owned(host, plugin, registry):
                assert cls.name in shown, f"corral env --json does not report {registry[:-1]} {cls.name!r}"

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _need_drivers(host: PluginHost, plugin: str) -> None:
        if not owned(host, plugin, "drivers"):
            pytest.skip(f"plugin {plugin!r} registers no driver")

    @staticmethod
    def _driver(library: Any, plugin: str, model: Any) -> type[Driver]:
        """The plugin's driver for ``model`` (its environment checked), or a failure that says why not."""
        mine = [d for d in owned(library.host, plugin, "drivers") if d.handles(model)]
        assert mine, (
            f"sample {model.path.name} imports as {a_or_an(model.category)} model in {model.format} format, which no "
            f"driver of plugin {plugin!r} declares: " + "; ".join(
                f"{d.name}: {sorted(map(str, d.categories))} x {sorted(map(str, d.formats))}"
                for d in owned(library.host, plugin, "drivers")
            )
        )
        return driver_for(library.host, model)

    @staticmethod
    def _import(library: Any, sample: Sample) -> Any:
        assert sample.path.exists(), f"sample {sample.path} does not exist"
        result = library.import_path(sample.path, category=sample.category)
        assert result.model is not None, f"sample {sample.path} is not a model of its own: {result.offer}"
        return result.model


def _class_problems(cls: type, installed: str) -> Iterator[str]:
    """What a registered class fails to declare (``installed``: the plugin's distribution, normalized)."""
    if not isinstance(cls.name, str) or not cls.name.strip():
        yield "name is empty"
    distribution = getattr(cls, "distribution", "")
    if issubclass(cls, Driver):
        if not distribution:
            yield "distribution is empty: users are told to `pip install` it when the driver is missing"
        if not cls.categories or not all(isinstance(c, Category) for c in cls.categories):
            yield f"categories {cls.categories!r} is not a non-empty set of corral.records.Category"
        if not cls.formats or not all(isinstance(f, Format) for f in cls.formats):
            yield f"formats {cls.formats!r} is not a non-empty set of corral.records.Format"
        if cls.max_loras is not None and not (isinstance(cls.max_loras, int) and cls.max_loras >= 0):
            yield f"max_loras {cls.max_loras!r} is not 0, 1, ... or None"
        if not all(isinstance(s, SettingSpec) for s in cls.settings):
            yield "settings holds something other than corral.records.SettingSpec"
    if distribution and installed and normalized(distribution) != installed:
        yield f"distribution {distribution!r} is not the installed distribution {installed!r}"
    requires = getattr(cls, "requires", ())
    if not isinstance(requires, tuple) or not all(isinstance(r, str) and r for r in requires):
        yield f"requires {requires!r} is not a tuple of import names"
    if not issubclass(cls, GpuVendor):
        status = cls.check()
        if not isinstance(status, BackendStatus):
            yield f"check() returned {status!r}, not a BackendStatus"


def _expect_unsupported(handle: Any, task: str) -> None:
    try:
        call_task(handle, task)
    except CorralError:
        return
    except Exception as exc:
        pytest.fail(f"asked to {task}, {a_or_an(handle.model.category)} model raised {_name(exc)}: {exc}, not Unsupported")
    pytest.fail(f"asked to {task}, {a_or_an(handle.model.category)} model answered instead of raising Unsupported")


def _expect_corral_error(driver: type[Driver], model: Any, label: str, task: str, sample: Sample) -> None:
    handle = None
    try:
        handle = driver().load(model, dict(sample.settings), ())
        call_task(handle, task, sample.params)
    except CorralError as exc:
        named = model.path.name in str(exc) or model.name in str(exc)
        assert named, f"{driver.name}: the error for a {label} {model.path} names neither file nor model: {exc}"
        return
    except Exception as exc:
        pytest.fail(
            f"{driver.name} answered a {label} model file ({model.path}) with {_name(exc)}: {exc}; "
            "raise a corral.errors.CorralError subclass that names the file and says what to do"
        )
    finally:
        if handle is not None:
            handle.unload()
    pytest.fail(f"{driver.name} loaded and ran a {label} model file ({model.path}) without an error")


def _name(exc: BaseException) -> str:
    """``ValueError``, ``struct.error``: the exception's type as its author would look it up."""
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _dicts(data: Any) -> Iterator[dict]:
    """Every JSON object inside ``data``, depth first."""
    if isinstance(data, dict):
        yield data
        data = list(data.values())
    if isinstance(data, list):
        for value in data:
            yield from _dicts(value)


__all__ = ["Conformance", "garbage_copy", "owned", "own_hookimpls", "samples_of", "truncated_copy"]
