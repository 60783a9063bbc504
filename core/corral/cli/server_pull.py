"""``corral pull`` through the server running for this library, as ``ollama pull`` goes through its server.

The pull becomes one of the server's jobs (``POST /corral/pulls``): the server lists the repository and
chooses the files (:meth:`corral.pull.jobs.PullJobs.submit`, the same selection as a pull in this
process), downloads, verifies and adds the model. This module asks for the job, shows its bytes, speed
and time left with the same meter as a local pull, and pauses the job on Ctrl-C. Running the same pull
again finds the paused (or failed) job and resumes it rather than making a second one.

Only the standard library client is used here, so ``corral pull`` stays quick to start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from corral.pull import Meter, PullResult
    from corral.server.client import Client

#: Seconds between looks at the job.
POLL = 0.1
#: The job states a job ends in.
ENDED = ("done", "failed", "canceled")
#: The job states that will not change by themselves.
FINISHED = (*ENDED, "paused")


def running_server() -> Client | None:
    """A client for the server running for this library, or None (none is ever started here)."""
    from corral.server.client import connect

    return connect()


def job_body(ref: str, *, names: Sequence[str] = (), quant: str | None = None, everything: bool = False,
             mmproj: bool = True, source: str | None = None, dest: Path | None = None, name: str | None = None,
             base: str | None = None, offline: bool = False) -> dict:
    """The ``POST /corral/pulls`` body for ``corral pull``'s options (``resume``: the same pull again
    resumes its paused job). A relative ``--dest`` is made absolute here: the server runs elsewhere."""
    body: dict[str, Any] = {"repo": ref, "files": list(names), "all": everything, "mmproj": mmproj,
                            "offline": offline, "resume": True}
    for key, value in (("source", source), ("quant", quant), ("library_name", name), ("base", base)):
        if value is not None:
            body[key] = value
    if dest is not None:
        body["dest"] = str(Path(dest).expanduser().resolve())
    return body


def pull_through(client: Client, ref: str, meter: Meter, **options: Any) -> PullResult:
    """Pull ``ref`` as a job of the server behind ``client`` and follow it to its end; the pull's result,
    as :func:`corral.pull.pull` gives it. A failed job raises its own error (the same class, so the same
    exit code); Ctrl-C pauses the job and raises :class:`corral.errors.Paused`."""
    from corral.errors import Forbidden

    try:
        job = submit(client, job_body(ref, **options))
    except Forbidden as exc:
        raise Forbidden(f"{exc}; or pull in this process with --local") from None
    except KeyboardInterrupt as stopped:  # while the server listed the repository: pause what it queued
        job = getattr(stopped, "job", None)
        if job is None:
            raise
        job = stop_here(client, job)
    return follow(client, job, meter)


def submit(client: Client, body: dict, wait: float = 60.0) -> dict:
    """``POST /corral/pulls`` from a thread of its own: Ctrl-C while the server lists the repository
    waits for its answer (up to ``wait`` seconds) and is raised with the job it queued (``.job``)."""
    import threading

    answer: dict[str, Any] = {}
    answered = threading.Event()  # not Thread.join: a join that Ctrl-C broke may not wait again

    def send() -> None:
        try:
            answer["job"] = client.post("/corral/pulls", body)
        except BaseException as exc:  # raised again in the command's thread
            answer["error"] = exc
        finally:
            answered.set()

    threading.Thread(target=send, name="corral-pull-submit", daemon=True).start()
    try:
        while not answered.wait(0.1):
            pass
    except KeyboardInterrupt as stopped:
        answered.wait(wait)
        stopped.job = answer.get("job")  # type: ignore[attr-defined]
        raise
    if "error" in answer:
        raise answer["error"]
    return answer["job"]


def pause(client: Client, job: dict) -> dict:
    """Pause ``job`` on the server; the job as it stands then (also when it ended meanwhile)."""
    from corral.errors import CorralError

    path = f"/corral/pulls/{job['id']}"
    try:
        return client.post(path + "/pause", {})
    except CorralError:  # it ended meanwhile
        return client.get(path)


def stop_here(client: Client, job: dict) -> dict:
    """Ctrl-C: pause ``job`` on the server and raise :class:`corral.errors.Paused` saying how to resume;
    a job that ended meanwhile is returned as it ended."""
    from corral.errors import Paused

    job = pause(client, job)
    if job["state"] not in ENDED:
        raise Paused(paused_message(job, client.url)) from None
    return job


def follow(client: Client, job: dict, meter: Meter, poll: float = POLL) -> PullResult:
    """Show ``job`` on ``meter`` until it ends; what it did, or its error."""
    path = f"/corral/pulls/{job['id']}"
    watch = JobWatch(meter, job)
    try:
        while True:
            watch.update(job)
            if job["state"] in FINISHED:
                break
            time.sleep(poll)
            job = client.get(path)
    except KeyboardInterrupt:
        job = stop_here(client, job)
    finally:
        watch.end()
    return outcome(job, client.url)


def paused_message(job: dict, url: str) -> str:
    """What a paused job keeps, in the words of a local pull's pause."""
    from corral.pull.fetch import human_bytes

    kept = f"{human_bytes(job['done'])} of {human_bytes(job['total'])}" if job.get("total") else \
        human_bytes(job["done"])
    return (f"paused after {len(job.get('landed') or [])} of {len(job['files'])} files; pull {job['id']} on the "
            f"server at {url} keeps {kept}. Run the same command again to resume")


def outcome(job: dict, url: str) -> PullResult:
    """A finished job as the result of a pull, or the error it ended with."""
    from corral.convert import from_data
    from corral.errors import CorralError, Paused
    from corral.pull import PullResult
    from corral.server.client import error_for

    state = job["state"]
    if state == "done":
        if job.get("result") is None:
            raise CorralError(f"pull {job['id']} is done but the server at {url} does not say what it added "
                              f"(an older Corral?); see corral ls")
        return from_data(job["result"], PullResult)
    if state == "failed":
        raise error_for(job.get("error_code"), job.get("error") or f"pull {job['id']} failed")
    if state == "paused":
        raise Paused(f"pull {job['id']} was paused on the server at {url}. Run the same command again to resume")
    raise CorralError(f"pull {job['id']} was {state} on the server at {url}; nothing was added")


def new_notes(before: Sequence[str], now: Sequence[str]) -> list[str]:
    """The notes of ``now`` that ``before`` lacked (the job keeps only its last ones, so the oldest of
    ``before`` may be gone)."""
    for k in range(min(len(before), len(now)), 0, -1):
        if list(before[len(before) - k:]) == list(now[:k]):
            return list(now[k:])
    return list(now)


class JobWatch:
    """Turns what a job says, look after look, into the meter calls a local pull makes."""

    def __init__(self, meter: Meter, job: dict) -> None:
        self.meter = meter
        self.notes = list(job.get("notes") or [])  # from earlier runs: shown before
        self.begun = False
        self.shown = 0
        self.landed = 0
        self.current: str | None = None

    def _size(self, job: dict, name: str) -> int | None:
        sizes = job.get("sizes") or []
        files = job["files"]
        return sizes[files.index(name)] if name in files and len(sizes) == len(files) else None

    def update(self, job: dict) -> None:
        if job["state"] == "queued" and not self.begun:
            return
        landed = job.get("landed") or []
        if not self.begun:
            if job["state"] in ("failed", "canceled") or (job["state"] == "paused" and not landed):
                return
            self.begun = True
            self.shown = max(0, job["done"] - job.get("fetched", 0))  # what was there before this run
            self.meter.begin(len(job["files"]), job.get("total"), self.shown)
        quiet = {f"{name}: already here" for name in job["files"]}  # end_file says so itself
        for text in new_notes(self.notes, job.get("notes") or []):
            if text not in quiet:
                self.meter.note(text)
        self.notes = list(job.get("notes") or [])
        delta, self.shown = job["done"] - self.shown, job["done"]
        if delta > 0:
            self.meter.advance(delta)
        elif delta < 0:
            self.meter.rewind(-delta)
        for entry in landed[self.landed:]:
            if entry["name"] != self.current:
                self.meter.start_file(entry["name"], self._size(job, entry["name"]), 0)
            self.meter.end_file(entry["name"], entry["fetched"], entry["reused"])
            self.current = None
        self.landed = len(landed)
        name = job.get("file")
        if job["state"] == "running" and name and name != self.current \
                and name not in {e["name"] for e in landed}:
            self.meter.start_file(name, self._size(job, name), 0)
            self.current = name

    def end(self) -> None:
        if self.begun:
            self.meter.end()
