"""Commands for the server: ``serve`` runs it (``--status``, ``--stop``), ``stop`` stops it; ``load``,
``unload`` and ``ps`` talk to it. Only ``load`` starts one in the background, and only once its model
passed the checks a load makes; ``ps`` and ``unload`` never start one."""

from __future__ import annotations

import time
from pathlib import Path

import click

from corral.cli.base import MODEL_NAME, emit_json, human_size, json_option, table
from corral.records import Category
from corral.server.state import DEFAULT_HOST, DEFAULT_PORT


class Duration(click.ParamType):
    """Seconds, or a duration like 30s / 5m / 1h; negative or "forever" keeps models loaded."""

    name = "duration"

    def convert(self, value, param, ctx):
        from corral.runtime.watchdog import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Percent(click.ParamType):
    name = "percent"

    def convert(self, value, param, ctx):
        try:
            number = float(str(value).strip().rstrip("%"))
        except ValueError:
            self.fail(f"{value!r} is not a percentage (e.g. 90)", param, ctx)
        if not 1 <= number <= 100:
            self.fail(f"{value!r} must be a percentage between 1 and 100", param, ctx)
        return number


class Size(click.ParamType):
    """Bytes, or a size like 32MiB / 64MB / 512KiB."""

    name = "size"
    UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}

    def convert(self, value, param, ctx):
        import re

        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in self.UNITS:
            self.fail(f"{value!r} is not a size (e.g. 32MiB, 64MB, 1048576)", param, ctx)
        return int(float(match.group(1)) * self.UNITS[unit])


def _env_list(name: str, separator: str = ",") -> tuple[str, ...]:
    import os

    return tuple(v.strip() for v in os.environ.get(name, "").split(separator) if v.strip())


@click.command("serve")
@click.option("--host", envvar="CORRAL_HOST", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on (env CORRAL_HOST). 0.0.0.0 exposes the server to the network.")
@click.option("--port", envvar="CORRAL_PORT", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
              show_default=True, help="Port (env CORRAL_PORT); 0 picks a free one.")
@click.option("--api-key", envvar="CORRAL_API_KEY", help="Require Authorization: Bearer KEY on every route "
              "(env CORRAL_API_KEY).")
@click.option("--keep-alive", envvar="CORRAL_KEEP_ALIVE", type=Duration(), default="5m", show_default=True,
              help="Unload a model idle this long (300, 30s, 5m, 1h; -1 or forever: never).")
@click.option("--memory-threshold", envvar="CORRAL_MEMORY_THRESHOLD", type=Percent(), default=90.0,
              show_default=True, help="System memory percent at which idle models are unloaded.")
@click.option("--max-queue", envvar="CORRAL_MAX_QUEUE", type=click.IntRange(0), default=50, show_default=True,
              help="Requests that may wait per model; more are answered 503.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this Host name (* wildcards; env CORRAL_ALLOWED_HOSTS, comma list). "
                   "Other names than the server's own get 403 (DNS rebinding).")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages from this origin call the server, e.g. https://app.example.com or "
                   "https://*.example.com (env CORRAL_ORIGINS, comma list). Local origins are allowed.")
@click.option("--allow-path", "allow_paths", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Folder whose files import and pull requests through the API may name "
                                  "(env CORRAL_ALLOWED_PATHS, os.pathsep list; default: CORRAL_HOME).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Listen beyond loopback without an API key (refused otherwise).")
@click.option("--log-prompts", is_flag=True, help="Write prompts into the request log (CORRAL_HOME/logs).")
@click.option("--max-body", type=Size(), default="32MiB", show_default=True, help="Largest request body.")
@click.option("--max-connections", type=click.IntRange(1), default=1000, show_default=True,
              help="Open connections at once; requests beyond are answered 503.")
@click.option("--executor", "executor_name", metavar="NAME", default=None,
              help="Where loaded models live: runner (default: a process per model), in-process, or one a "
                   "plugin registers (ray: a Ray cluster); also CORRAL_EXECUTOR.")
@click.option("--cluster", "cluster", metavar="NAME", default=None,
              help="Place models on a cluster: --cluster ray is --executor ray (plugin corral-ray).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--status", "show_status", is_flag=True,
              help="Say whether a server runs for this library (pid, address, start time) and exit; "
                   "exit code 12 when none runs.")
@click.option("--stop", "stop", is_flag=True, help="Stop the server running for this library (as `corral stop`).")
@json_option
def serve_cmd(host, port, api_key, keep_alive, memory_threshold, max_queue, allow_hosts, allow_origins, allow_paths,
              insecure_no_auth, log_prompts, max_body, max_connections, executor_name, cluster, log_level,
              show_status, stop, as_json) -> None:
    """Serve the library over an OpenAI-compatible HTTP API until Ctrl-C (or `corral stop`).

    Binding beyond 127.0.0.1 needs an API key (--api-key, CORRAL_API_KEY, CORRAL_API_KEYS or
    `corral keys add`). Figures for Prometheus are at /metrics; one JSON line per request goes to
    CORRAL_HOME/logs/requests.log.

    Example: corral serve --port 8421; corral serve --status
    """
    if show_status and stop:
        raise click.UsageError("give --status or --stop, not both")
    if cluster and executor_name and cluster != executor_name:
        raise click.UsageError("give --cluster or --executor, not both")
    if show_status:
        _status(as_json)
        return
    if stop:
        _stop(as_json)
        return
    import importlib.util
    import os

    from corral.errors import PluginMissing
    from corral.server.guards import GuardOptions
    from corral.server.limits import Limits
    from corral.server.serve import serve

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise PluginMissing(f"corral serve needs {' and '.join(missing)}: pip install {' '.join(missing)}")

    guards = GuardOptions(
        allowed_hosts=allow_hosts + _env_list("CORRAL_ALLOWED_HOSTS"),
        allowed_origins=allow_origins + _env_list("CORRAL_ORIGINS"),
        allowed_paths=tuple(p.expanduser().resolve() for p in allow_paths)
        + tuple(Path(p).expanduser().resolve() for p in _env_list("CORRAL_ALLOWED_PATHS", os.pathsep)),
        limits=Limits(max_body=max_body, max_connections=max_connections),
        log_prompts=log_prompts,
    )
    serve(
        host=host,
        port=port,
        api_key=api_key or None,
        keep_alive=keep_alive,
        memory_threshold=memory_threshold,
        max_waiting=max_queue,
        log_level=log_level,
        announce=lambda line: click.echo(line, err=True),
        guards=guards,
        insecure_no_auth=insecure_no_auth,
        executor_name=cluster or executor_name,
    )


NO_SERVER = "No server is running; `corral serve` starts one."


def _running():
    """A client for the server running for this library, or None (none is ever started here)."""
    from corral.server.client import connect

    return connect()


def _started(started: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))


def _server_line(server: dict) -> str:
    up = _ago(max(0.0, time.time() - server["started"]))
    return (f"Server pid {server['pid']} at {server['address']} ({server['url']}), "
            f"started {_started(server['started'])} ({up} ago)")


def _status(as_json: bool) -> None:
    from corral.errors import ServerUnavailable
    from corral.server.state import read_state

    client = _running()
    if client is None:
        state = read_state()
        if state is not None:  # its process lives but does not answer (starting, or stuck)
            raise ServerUnavailable(f"a server process (pid {state.pid}) is recorded at {state.url} but does not "
                                    f"answer; `corral stop` stops it")
        raise ServerUnavailable("no server is running; `corral serve` starts one")
    answer = client.get("/corral/ps")
    server = answer.get("server") or client.state.describe()
    names = [m["name"] for m in answer["models"]]
    if as_json:
        emit_json({"server": server, "models": names})
        return
    click.echo(_server_line(server) + f", Corral {server['version']}.")
    click.echo(f"Loaded: {', '.join(names)}." if names else "No model is loaded.")


def _stop(as_json: bool) -> None:
    from corral.server.client import stop_server

    state = stop_server()
    if as_json:
        emit_json({"stopped": None if state is None else state.describe()})
    elif state is None:
        click.echo("No server is running.")
    else:
        click.echo(f"Stopped the server (pid {state.pid}, {state.address}); its models are unloaded.")


@click.command("stop")
@json_option
def stop_cmd(as_json) -> None:
    """Stop the server running for this library, unloading its models first.

    Waits for requests in progress. With no server running it says so and exits 0.

    Example: corral stop
    """
    _stop(as_json)


def _check_load(model: str, loras, settings: dict, force: bool) -> None:
    """Every check a load makes before it starts (model and LoRAs in the library, its plugin and backend,
    components, settings, the memory estimate), so a load that would fail starts no server."""
    from corral.cli.base import App
    from corral.loading import check_memory, plan_load
    from corral.runtime.runtime import with_slots

    library = App().library
    try:
        check_memory(with_slots(plan_load(library, model, loras=loras, overrides=settings)), force=force)
    finally:
        library.store.close()


def _parse_sets(values) -> dict:
    settings = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        settings[name.strip().replace("-", "_")] = value
    return settings


@click.command("load")
@click.argument("model", type=MODEL_NAME)
@click.option("--lora", "loras", multiple=True, metavar="NAME[=WEIGHT]", help="LoRA to apply.")
@click.option("--n-ctx", type=click.IntRange(0), help="Context length for this load (0: the model's own).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Another load setting for this load.")
@click.option("--keep-alive", type=Duration(), help="Idle time before this model is unloaded.")
@click.option("--force", is_flag=True, help="Load even when the memory estimate does not fit.")
@json_option
def load_cmd(model, loras, n_ctx, sets, keep_alive, force, as_json) -> None:
    """Load MODEL in the server, and say which models the load rules unloaded for it.

    With no server running, the load is checked first (the model, its plugin, settings, memory) and a
    server is started in the background only when the checks pass; `corral stop` stops it.

    Example: corral load gemma3 --n-ctx 8192
    """
    from corral.server.client import connect_or_start

    settings = _parse_sets(sets)
    if n_ctx is not None:
        settings["n_ctx"] = n_ctx
    body = {"model": model, "loras": list(loras), "settings": settings, "force": force}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    client = _running()
    if client is None:
        _check_load(model, list(loras), settings, force)
        client = connect_or_start()
    answer = client.post("/corral/load", body)
    answer.setdefault("unloaded", [])
    if as_json:
        emit_json(answer)
        return
    for old in answer["unloaded"]:
        click.echo(f"Unloaded {old['name']} ({old['reason']}).")
    info = answer["model"]
    if answer["reused"]:
        click.echo(f"{info['name']} is already loaded with this configuration.")
        return
    ram, vram = info["ram_bytes"], info["vram_bytes"]
    memory = f"RAM {human_size(ram)}" + (f", VRAM {human_size(vram)}" if vram else "")
    click.echo(f"Loaded {info['name']} ({info['category']}, {info['driver']}) in {answer['seconds']:.1f} s; {memory}.")


@click.command("unload")
@click.argument("model", required=False, type=MODEL_NAME)
@click.option("--category", type=click.Choice([c.value for c in Category]), help="Unload this category's model.")
@click.option("--all", "everything", is_flag=True, help="Unload every model.")
@json_option
def unload_cmd(model, category, everything, as_json) -> None:
    """Unload MODEL (or the model of --category, or --all) from the server (never starts one).

    Example: corral unload gemma3
    """
    if sum(bool(x) for x in (model, category, everything)) != 1:
        raise click.UsageError("give MODEL, --category C or --all")
    body = {"model": model} if model else {"category": category} if category else {"all": True}
    client = _running()
    if client is None:
        if model:
            _not_loaded(model)
        answer = {"unloaded": [], "server": None}
    else:
        answer = client.post("/corral/unload", body)
    if as_json:
        emit_json(answer)
        return
    if not answer["unloaded"]:
        click.echo("Nothing was loaded.")
    for name in answer["unloaded"]:
        click.echo(f"Unloaded {name}.")


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _not_loaded(ref: str) -> None:
    """With no server running: NotFound for ``ref``, naming the process that holds it where one does."""
    from corral.cli.base import App
    from corral.errors import NotFound
    from corral.store.leases import describe_holders

    library = App().library
    try:
        record = library.store.get_model(ref)
        holders = library.store.lease_holders(record.id)
    finally:
        library.store.close()
    if holders:
        raise NotFound(f"{record.name} is not loaded in a server (none is running); "
                       f"{describe_holders(holders)} holds it")
    raise NotFound(f"{record.name} is not loaded: no server is running")


@click.command("ps")
@json_option
def ps_cmd(as_json) -> None:
    """List the models the server holds loaded, with their memory and queues (never starts a server).

    The first line names the server: its pid, address and start time.

    Example: corral ps --json
    """
    client = _running()
    answer = {"server": None, "models": []} if client is None else client.get("/corral/ps")
    server, models = answer.get("server"), answer["models"]
    if client is not None and server is None:  # an older server
        server = client.state.describe()
    if as_json:
        emit_json({"server": server, "models": models})
        return
    if server is None:
        click.echo(NO_SERVER)
        return
    click.echo(_server_line(server) + ".")
    if not models:
        click.echo("No model is loaded.")
        return
    now = time.time()
    rows = []
    for m in models:
        until = "never" if m["expires_in"] is None else _ago(m["expires_in"])
        rows.append((m["name"], m["category"], m["driver"], ",".join(m["loras"]) or "-", human_size(m["ram_bytes"]),
                     human_size(m["vram_bytes"]), f"{m.get('running', int(m['busy']))}/{m.get('parallel', 1)}",
                     m["waiting"], _ago(now - m["last_used"]), until))
    headers = ["NAME", "CATEGORY", "DRIVER", "LORAS", "RAM", "VRAM", "RUNNING", "WAITING", "IDLE", "UNLOAD IN"]
    if any(m.get("node") for m in models):  # placed on a cluster's nodes (corral serve --cluster ray)
        rows = [(row[0], models[i].get("node") or "-", *row[1:]) for i, row in enumerate(rows)]
        headers.insert(1, "NODE")
    table(rows, headers)


COMMANDS = (serve_cmd, stop_cmd, load_cmd, unload_cmd, ps_cmd)
