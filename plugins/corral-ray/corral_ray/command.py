"""``corral worker``: join this machine to a Corral cluster as a Ray worker node with an agent."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

#: Seconds the new node has to appear in the cluster after ``ray start``.
JOIN_TIMEOUT = 90.0


def _size(text: str | None) -> int | None:
    if not text:
        return None
    units = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
             "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}
    number = text.strip().upper().rstrip()
    digits = number.rstrip("BKMGTI ")
    unit = number[len(digits):].strip()
    try:
        return int(float(digits) * units[unit])
    except (KeyError, ValueError):
        raise click.BadParameter(f"{text!r} is not a size (like 8GiB or 512MB)") from None


def check_head(address: str, name: str) -> str | None:
    """Connect to the cluster at ``address`` as a driver and refuse (one clear line) what would break it:
    other Ray, Python, Corral or plugin versions than the head's, or a node name already in use. Returns
    a note for the user (None: nothing to say)."""
    import ray

    from corral.api import Incompatible, InvalidSetting, ServerUnavailable
    from corral_ray.executor import head_versions
    from corral_ray.nodes import NAMESPACE, local_versions, node_name, version_problem

    ours = ray.is_initialized()
    if not ours:
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level="error", log_to_driver=False,
                     configure_logging=False)
        except RuntimeError as exc:
            text = str(exc)
            if "ersion mismatch" in text:  # Ray's own check of its and Python's versions
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                raise Incompatible(f"cannot join {address}: Ray or Python differ from the head's ("
                                   f"{' '.join(lines[:3])})") from None
            raise ServerUnavailable(f"cannot join {address}: {text.splitlines()[0] if text else exc}") from None
        except ConnectionError as exc:
            raise ServerUnavailable(f"no Ray cluster answers at {address}: {exc}") from None
    try:
        head = head_versions()
        if head is not None and (problem := version_problem(head, local_versions())) is not None:
            raise Incompatible(f"cannot join {address}: {problem}")
        for node in ray.nodes():
            if node.get("Alive") and node_name(node.get("Resources") or {}) == name:
                raise InvalidSetting(f"a node named {name!r} is in the cluster already; give another --name")
        if head is None:
            return "no `corral serve --cluster ray` has run on this cluster yet: the head checks versions when it starts"
        return None
    finally:
        if not ours:
            ray.shutdown()


def ray_start_command(address: str, name: str, *, node_ip: str | None, num_cpus: int | None,
                      num_gpus: int | None) -> list[str]:
    """The ``ray start`` that joins this machine with Corral's resources, in the foreground."""
    from corral_ray.nodes import node_resources

    ray_exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"
    command = [ray_exe, "start", "--address", address, "--resources", json.dumps(node_resources(name)), "--block"]
    if node_ip:
        command += ["--node-ip-address", node_ip]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        command += ["--num-gpus", str(num_gpus)]
    return command


def _wait_joined(address: str, name: str, process: subprocess.Popen) -> None:
    import ray

    from corral.api import ServerUnavailable
    from corral_ray.nodes import NAMESPACE, node_name

    deadline = time.monotonic() + JOIN_TIMEOUT
    ray.init(address=address, namespace=NAMESPACE, logging_level="error", log_to_driver=False,
             configure_logging=False)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"`ray start` exited with status {process.returncode}; see its output above")
        if any(n.get("Alive") and node_name(n.get("Resources") or {}) == name for n in ray.nodes()):
            return
        time.sleep(0.5)
    raise ServerUnavailable(f"this node did not appear in the cluster at {address} within {JOIN_TIMEOUT:.0f} s")


@click.command("worker")
@click.option("--address", required=True, metavar="HEAD:PORT",
              help="The Ray head's address (what `ray start --head` printed).")
@click.option("--name", default=None, help="This node's name in the cluster (default: the host name).")
@click.option("--models", "roots", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Serve model files only from this folder (repeatable; default: any path the head names).")
@click.option("--memory", "memory", default=None, metavar="SIZE",
              help="Memory the models placed here may take in all (like 16GiB; default: what is free).")
@click.option("--node-ip-address", "node_ip", default=None, help="The address other nodes reach this one at.")
@click.option("--num-cpus", type=click.IntRange(0), default=None, help="CPUs Ray may use here (default: all).")
@click.option("--num-gpus", type=click.IntRange(0), default=None, help="GPUs Ray may use here (default: all).")
def worker_cmd(address, name, roots, memory, node_ip, num_cpus, num_gpus) -> None:
    """Join this machine to a Corral cluster: `ray start` with Corral's resources, and a node agent.

    The head (`corral serve --cluster ray`) then places models here: this node reports its GPUs, free
    memory, usable drivers and the model files it holds. This node never opens a library database;
    its model files come from shared storage at the head's paths, or `corral pull --dest` the same
    folder. A node whose Ray, Python, Corral or plugin versions differ from the head's is refused.
    Runs until Ctrl-C, which takes the node out of the cluster (its models are loaded elsewhere).

    Example: corral worker --address 10.0.0.1:6379 --name gpu-box
    """
    from corral.api import InvalidSetting
    from corral_ray.nodes import check_name

    try:
        name = check_name(name or socket.gethostname().split(".")[0])
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None
    limit = _size(memory)
    note = check_head(address, name)
    if note:
        click.echo(f"note: {note}", err=True)
    process = subprocess.Popen(ray_start_command(address, name, node_ip=node_ip, num_cpus=num_cpus,
                                                 num_gpus=num_gpus))
    try:
        import ray

        from corral_ray.agent import start_agent

        _wait_joined(address, name, process)
        try:
            start_agent(name, roots=[str(r) for r in roots], memory_limit=limit)
        finally:
            ray.shutdown()
        click.echo(f"joined {address} as node {name}; Ctrl-C to leave", err=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.terminate()  # `ray start --block` stops this node's Ray processes as it exits
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
