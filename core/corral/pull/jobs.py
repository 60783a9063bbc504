"""Pulls as background jobs of the server, kept in the library database.

:class:`PullJobs` lists the repository and checks the pull when it is asked for one (unsafe names, the
destination, free disk space: those are answered at once), then runs :func:`corral.pull.pull` on a thread
of its own with a :class:`JobMeter` that counts bytes, speed and time left. The same resumable transfers
as ``corral pull`` do the work, so pausing keeps the partial files and resuming asks the hub for the
rest. Every change of state is saved (bytes at most once a second); a server that starts again resumes
the jobs that were queued or running when it stopped, however it stopped.

Pause and cancel take effect at the next chunk the hub sends; cancel also deletes the partial files.
A finished job keeps what the pull did (:class:`corral.pull.PullResult` as data, ``result``), a failed
one its error's message and code, so ``corral pull`` through the server ends as a pull in its own
process would.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs

from corral.convert import to_data
from corral.errors import Conflict, CorralError, NotFound, error_code
from corral.pull.errors import Paused
from corral.pull.fetch import Meter, check_space, human_bytes, note_path, part_path

#: The store's kind for these jobs.
KIND = "pull"
QUEUED, RUNNING, PAUSED, DONE, FAILED, CANCELED = "queued", "running", "paused", "done", "failed", "canceled"
#: States a restarted server picks up again.
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELED)
#: The steps a job goes through, in order.
STEPS = ("list", "download", "verify", "import")
#: Jobs downloading at once; the others wait, queued.
MAX_RUNNING = 2
#: Seconds between saves of a running job's byte count.
SAVE_EVERY = 1.0
#: Seconds of samples the speed is measured over.
SPEED_WINDOW = 3.0


@attrs.define
class PullJob:
    """One pull: what it takes, where it stands. Saved whole (as JSON) in the store's ``jobs`` table."""

    id: str
    source: str
    repo: str
    revision: str | None = None
    commit: str | None = None
    files: list[str] = attrs.Factory(list)
    sizes: list[int | None] = attrs.Factory(list)
    parts: list[str] = attrs.Factory(list)
    dest: str | None = None
    name: str | None = None
    base: str | None = None
    offline: bool = False
    state: str = QUEUED
    step: str = "download"
    total: int | None = None
    done: int = 0
    fetched: int = 0
    file: str | None = None
    verified: int = 0
    #: The files this run has verified, in order: ``{"name", "fetched", "reused"}`` (a follower's meter).
    landed: list[dict] = attrs.Factory(list)
    speed: float | None = None
    eta: float | None = None
    error: str | None = None
    #: The error's class as :func:`corral.errors.error_code` names it (``integrity_error``).
    error_code: str | None = None
    models: list[dict] = attrs.Factory(list)
    #: What the pull did, :class:`corral.pull.PullResult` as data (once done).
    result: dict | None = None
    notes: list[str] = attrs.Factory(list)
    created: float = attrs.Factory(time.time)
    started: float | None = None
    finished: float | None = None

    @classmethod
    def from_data(cls, data: dict) -> "PullJob":
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_data(self) -> dict:
        return attrs.asdict(self)

    def view(self) -> dict:
        """What the HTTP API shows: the saved fields plus the steps with their state."""
        return {**self.to_data(), "steps": self.steps(), "percent": self.percent()}

    def again(self) -> None:
        """Ready to run again (resumed or restarted): this run's counts start from nothing."""
        self.state, self.error, self.error_code, self.step = QUEUED, None, None, "download"
        self.speed = self.eta = self.file = None
        self.verified, self.fetched, self.landed = 0, 0, []

    def takes(self, source: str, repo: str, files: Sequence[str], dest: str | None, name: str | None,
              base: str | None) -> bool:
        """Whether this job is the pull of exactly these files, to the same place under the same name."""
        return ((self.source, self.repo, sorted(self.files), self.dest, self.name, self.base)
                == (source, repo, sorted(files), dest, name, base))

    def percent(self) -> float | None:
        if not self.total:
            return 100.0 if self.state == DONE else None
        return round(100.0 * min(self.done, self.total) / self.total, 1)

    def steps(self) -> list[dict]:
        """``[{"name": "list", "state": "done"}, ...]``: done, current (running, paused, failed...) or pending."""
        current = STEPS.index(self.step) if self.step in STEPS else 1
        out = []
        for i, name in enumerate(STEPS):
            state = "done" if i < current or self.state == DONE else "pending"
            if i == current and self.state != DONE:
                state = {QUEUED: "waiting", RUNNING: "running"}.get(self.state, self.state)
            if name == "verify" and state == "pending" and self.verified:
                state = "partial"
            entry = {"name": name, "state": state}
            if name == "verify":
                entry["files"] = f"{self.verified}/{len(self.files)}"
            out.append(entry)
        return out


class JobMeter(Meter):
    """Counts a job's bytes, speed and time left; stops the pull (:class:`Paused`) when asked to."""

    def __init__(self, job: PullJob, save: Callable[[], None], stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job, self.save, self.stop, self.clock = job, save, stop, clock
        self.samples: deque[tuple[float, int]] = deque()
        self.saved = 0.0
        self.file_size: int | None = None
        self.file_done = 0

    def _check(self) -> None:
        if self.stop.is_set():
            raise Paused("stopped")

    def begin(self, files: int, total: int | None, have: int) -> None:
        self.job.total, self.job.done, self.job.step = total, have, "download"
        self.samples.append((self.clock(), have))
        self.save()
        self._check()

    def start_file(self, name: str, size: int | None, have: int) -> None:
        self.job.file, self.job.step = name, "download"
        self.file_size, self.file_done = size, have
        if have:
            self.note(f"Resuming {name} at {human_bytes(have)} of {human_bytes(size)}")
        self._check()

    def advance(self, nbytes: int) -> None:
        job = self.job
        job.done += nbytes
        job.fetched += nbytes
        self.file_done += nbytes
        now = self.clock()
        self.samples.append((now, job.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > SPEED_WINDOW:
            self.samples.popleft()
        first_t, first_done = self.samples[0]
        if now - first_t > 0.2:
            job.speed = max(0.0, (job.done - first_done) / (now - first_t))
            job.eta = (job.total - job.done) / job.speed if job.total is not None and job.speed else None
        if self.file_size is not None and self.file_done >= self.file_size:
            job.step = "verify"  # the last byte is in: the sha256 check runs now
        if now - self.saved >= SAVE_EVERY:
            self.saved = now
            self.save()
        self._check()

    def rewind(self, nbytes: int) -> None:
        self.job.done -= nbytes
        self.file_done -= nbytes

    def end_file(self, name: str, fetched: int, reused: bool) -> None:
        self.job.verified += 1
        self.job.landed = [*self.job.landed, {"name": name, "fetched": fetched, "reused": reused}]
        self.job.step = "download"
        if reused:
            self.job.notes.append(f"{name}: already here")
        self.save()

    def note(self, text: str) -> None:
        self.job.notes = [*self.job.notes[-19:], text]

    def end(self) -> None:
        self.job.step = "import"  # on success pull() adds the files to the library next
        self.job.speed = self.job.eta = None


class _Run:
    """A job's thread and the flag that stops it, with why (pause, cancel, shutdown)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.why = PAUSED
        self.thread: threading.Thread | None = None


class PullJobs:
    """The server's pull jobs. ``library_for()`` gives the calling thread's library (the runtime's
    :meth:`~corral.runtime.runtime.Runtime.lib`: SQLite connections stay in their thread)."""

    def __init__(self, library_for: Callable[[], Any], *, max_running: int = MAX_RUNNING) -> None:
        self.library_for = library_for
        self._lock = threading.RLock()
        self._jobs: dict[str, PullJob] = {}
        self._runs: dict[str, _Run] = {}
        self._slots = threading.Semaphore(max_running)
        self._closed = False
        #: The listing a new job was checked against, for its first run (the hub is not asked twice).
        self._listed: dict[str, Any] = {}

    @property
    def store(self) -> Any:
        return self.library_for().store

    def _save(self, job: PullJob) -> None:
        self.store.save_job(job.id, KIND, job.state, job.to_data())

    # --- start and stop --------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Resume every job that was queued or running when the server stopped; their ids."""
        resumed = []
        for data in self.store.list_jobs(KIND, ACTIVE):
            job = PullJob.from_data(data)
            job.again()
            job.notes = [*job.notes[-19:], "resumed after a server restart"]
            with self._lock:
                self._jobs[job.id] = job
                self._save(job)
                self._spawn(job)
            resumed.append(job.id)
        return resumed

    def close(self, timeout: float = 5.0) -> None:
        """Stop every job for a shutdown; they stay queued in the database for the next start."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
            for run in runs:
                run.why = QUEUED
                run.stop.set()
        deadline = time.monotonic() + timeout
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))

    # --- asking -----------------------------------------------------------------------------------------

    def submit(self, ref: str, *, source: str | None = None, files: Sequence[str] = (), quant: str | None = None,
               everything: bool = False, mmproj: bool = True, dest: Path | None = None, name: str | None = None,
               base: str | None = None, offline: bool = False, resume: bool = False) -> PullJob:
        """List ``ref`` (``REPO[:REV]`` or a hub link), choose its files as ``corral pull`` does, check
        the names, the destination and the free space, then queue the download. Errors come at once.

        ``offline``: list the local download cache only, and refuse files that are not there.
        ``resume``: a job that takes exactly these files (same destination, name and base) and is paused
        or failed is resumed instead (one queued or running is returned as it is), as running the same
        ``corral pull`` again resumes; without it such a job is a :class:`Conflict`.
        """
        from corral.pull import check_offline, get_source, parse_ref, plan, select_files
        from corral.store import new_id

        host = self.library_for().host
        wanted = parse_ref(ref, host.sources, source)
        hub = get_source(host, wanted.source)
        snapshot = hub.snapshot(wanted.repo, wanted.revision, offline=offline)
        chosen = select_files(snapshot, names=tuple(files) + wanted.files, quant=quant, everything=everything,
                              mmproj=mmproj)
        if not chosen:
            raise CorralError(f"{wanted.repo} on {hub.name} has no files to download")
        if dest is not None:
            dest = Path(dest).expanduser().resolve()
        transfers = plan(hub, snapshot, chosen, dest)
        if offline:
            check_offline(transfers, snapshot.repo)
        check_space(transfers, snapshot.commit or snapshot.revision)
        names = [f.name for f in chosen]
        with self._lock:
            if resume:
                same = [j for j in self.list() if j.state in (*ACTIVE, PAUSED, FAILED) and j.offline == offline
                        and j.takes(hub.name, snapshot.repo, names, str(dest) if dest else None, name, base)]
                if same:
                    return self.resume(max(same, key=lambda j: j.created).id)
            for other in self._jobs.values():
                shared = set(other.files) & set(names)
                if other.state in (*ACTIVE, PAUSED) and (other.source, other.repo) == (hub.name, snapshot.repo) \
                        and shared:
                    raise Conflict(f"pull {other.id} ({other.state}) already takes {sorted(shared)[0]} of "
                                   f"{snapshot.repo}; resume or cancel it")
            job = PullJob(id=new_id(), source=hub.name, repo=snapshot.repo, revision=snapshot.revision,
                          commit=snapshot.commit, files=names, sizes=[f.size for f in chosen],
                          parts=[str(t.target) for t in transfers if t.url is not None],
                          dest=str(dest) if dest else None, name=name, base=base, offline=offline,
                          total=None if any(f.size is None for f in chosen) else sum(f.size for f in chosen))
            self._jobs[job.id] = job
            self._listed[job.id] = snapshot
            self._save(job)
            self._spawn(job)
        return job

    def list(self) -> list[PullJob]:
        """Every job, live ones as they stand now, oldest first."""
        with self._lock:
            saved = [PullJob.from_data(d) for d in self.store.list_jobs(KIND)]
            return [self._jobs.get(j.id, j) for j in saved]

    def get(self, job_id: str) -> PullJob:
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id]
            data = self.store.get_job(job_id)
        if data is None:
            raise NotFound(f"no pull job {job_id!r}; see GET /corral/pulls")
        return PullJob.from_data(data)

    def pause(self, job_id: str) -> PullJob:
        """Stop a queued or running job, keeping its partial files."""
        return self._stop(job_id, PAUSED)

    def cancel(self, job_id: str) -> PullJob:
        """Stop a job and delete its partial files (finished files stay where they landed)."""
        with self._lock:
            job = self.get(job_id)
            if job.state == PAUSED:
                self._discard(job)
                return job
        return self._stop(job_id, CANCELED)

    def resume(self, job_id: str) -> PullJob:
        """Queue a paused or failed job again; it goes on from its partial files."""
        with self._lock:
            job = self.get(job_id)
            if job.state in ACTIVE:
                return job
            if job.state not in (PAUSED, FAILED):
                raise Conflict(f"pull {job_id} is {job.state}; only a paused or failed pull resumes")
            job.again()
            self._jobs[job.id] = job
            self._save(job)
            self._spawn(job)
            return job

    def forget(self, job_id: str) -> None:
        """Remove a finished, failed, canceled or paused job's record (a paused one keeps its files)."""
        with self._lock:
            job = self.get(job_id)
            if job.state in ACTIVE:
                raise Conflict(f"pull {job_id} is {job.state}; pause or cancel it first")
            self._jobs.pop(job_id, None)
            self.store.delete_job(job_id)

    def _stop(self, job_id: str, why: str) -> PullJob:
        with self._lock:
            job = self.get(job_id)
            if job.state not in ACTIVE:
                raise Conflict(f"pull {job_id} is {job.state}, not queued or running")
            run = self._runs.get(job_id)
            if run is None:  # queued with no thread (the server is stopping)
                if why == CANCELED:
                    self._discard(job)
                else:
                    job.state = why
                    self._save(job)
                return job
            run.why = why
            run.stop.set()
        if run is not None and run.thread is not None and run.thread is not threading.current_thread():
            run.thread.join(30)
        return self.get(job_id)

    def _discard(self, job: PullJob) -> None:
        for target in job.parts:
            for path in (part_path(Path(target)), note_path(Path(target))):
                path.unlink(missing_ok=True)
        job.state, job.finished, job.speed, job.eta = CANCELED, time.time(), None, None
        self._save(job)

    # --- running ------------------------------------------------------------------------------------------

    def _spawn(self, job: PullJob) -> None:
        if self._closed:
            return
        run = _Run()
        run.thread = threading.Thread(target=self._run, args=(job, run), name=f"corral-pull-{job.id}", daemon=True)
        self._runs[job.id] = run
        run.thread.start()

    def _run(self, job: PullJob, run: _Run) -> None:
        try:
            while not self._slots.acquire(timeout=0.2):
                if run.stop.is_set():
                    self._stopped(job, run)
                    return
            try:
                self._download(job, run)
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._listed.pop(job.id, None)
                if self._runs.get(job.id) is run:
                    del self._runs[job.id]

    def _download(self, job: PullJob, run: _Run) -> None:
        from corral.pull import get_source, pull

        library = self.library_for()
        with self._lock:
            if run.stop.is_set():
                return self._stopped(job, run)
            job.state, job.started, job.error = RUNNING, job.started or time.time(), None
            self._save(job)
            listed = self._listed.pop(job.id, None)
        meter = JobMeter(job, lambda: self._save(job), run.stop)
        try:
            hub = get_source(library.host, job.source)
            result = pull(library, hub, job.repo, revision=job.commit or job.revision, names=job.files,
                          mmproj=False, dest=Path(job.dest) if job.dest else None, name=job.name, base=job.base,
                          offline=job.offline, meter=meter, listed=listed)
        except Paused:
            with self._lock:
                self._stopped(job, run)
            return
        except CorralError as exc:
            self._end(job, FAILED, error=str(exc), code=error_code(type(exc)))
        except Exception as exc:  # a plugin's bug: the job fails with it, the server goes on
            self._end(job, FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            job.models = [{"id": m.id, "name": m.name, "added": True} for m in result.models] + [
                {"id": m.id, "name": m.name, "added": False} for m in result.existing]
            job.notes = [*job.notes, *result.offers, *(f"bound LoRA {lora.name}" for lora in result.loras)]
            job.done = job.total if job.total is not None else job.done
            # The run asked for the pinned commit; the result names the revision the pull was asked for.
            job.result = to_data(attrs.evolve(result, revision=job.revision or result.revision))
            self._end(job, DONE)

    def _stopped(self, job: PullJob, run: _Run) -> None:
        job.speed = job.eta = None
        if run.why == CANCELED:
            self._discard(job)
        else:
            job.state = run.why  # paused, or queued again by a shutdown
            self._save(job)

    def _end(self, job: PullJob, state: str, error: str | None = None, code: str | None = None) -> None:
        with self._lock:
            job.state, job.error, job.finished, job.speed, job.eta = state, error, time.time(), None, None
            job.error_code = code
            if state == DONE:
                job.step = "import"
            self._save(job)
