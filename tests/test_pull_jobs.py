"""Pulls as background jobs of the server (``/corral/pulls``), end to end: the real huggingface_hub client
through the corral-huggingface plugin against the local fake hub (tests/fakehub), the server in this
process or (for the restart) ``corral serve`` in its own. What the hub sends is counted byte by byte, so
pausing, resuming and restarting are shown by what is *not* sent again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fakehub import CHAT, EMBED, HOSTILE, HUGE, MMPROJ, Q8
from fakehub.fixtures import hub, hub_server, sha256, wait_for  # noqa: F401

corral_huggingface = pytest.importorskip("corral_huggingface")
httpx = pytest.importorskip("httpx")

#: Slow enough to look at the job mid-file, quick enough for a test.
RATE = 400_000


@pytest.fixture
def server(hub, tmp_path, monkeypatch):
    """A server in this process whose library has the Hugging Face plugin, pointed at the fake hub."""
    with hub_server(monkeypatch, hub, tmp_path, tmp_path / "corral") as running:
        yield running


def api(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, timeout=60, **kwargs)


def job_of(server, job_id: str) -> dict:
    answer = api(server, "GET", f"/corral/pulls/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(server, job_id: str, timeout: float = 90.0) -> dict:
    return wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running") else None)(job_of(server, job_id)),
                    timeout, "the pull to end")


def start(server, **body) -> dict:
    answer = api(server, "POST", "/corral/pulls", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def models(server) -> list[dict]:
    from corral.store import Store

    store = Store(server.home / "library.db")
    try:
        return [{"name": m.name, "path": str(m.path), "provenance": m.provenance} for m in store.list_models()]
    finally:
        store.close()


def test_a_pull_job_lands_in_the_library_with_every_step(server, hub):
    job = start(server, repo=CHAT, quant="Q8_0")
    assert job["files"] == sorted([Q8, MMPROJ], key=job["files"].index) and set(job["files"]) == {Q8, MMPROJ}
    assert job["total"] == hub.entry(CHAT, Q8).size + hub.entry(CHAT, MMPROJ).size
    assert job["commit"] == hub.repo(CHAT).refs["main"]
    done = finished(server, job["id"])
    assert done["state"] == "done", done
    assert [s["state"] for s in done["steps"]] == ["done"] * 4
    assert [s["name"] for s in done["steps"]] == ["list", "download", "verify", "import"]
    assert done["done"] == done["total"] and done["percent"] == 100.0 and done["verified"] == 2
    (model,) = done["models"]
    assert model["name"] == "corral-test/tiny-chat-GGUF:Q8_0" and model["added"]
    (record,) = models(server)
    assert record["name"] == model["name"] and sha256(record["path"]) == hub.entry(CHAT, Q8).sha256
    assert record["provenance"].repo == CHAT and record["provenance"].hub == "huggingface"
    assert [j["id"] for j in api(server, "GET", "/corral/pulls").json()["pulls"]] == [job["id"]]
    assert hub.bytes_served(CHAT) == job["total"]
    # Kept in the library database, with what the job did.
    from corral.store import Store

    store = Store(server.home / "library.db")
    assert store.get_job(job["id"])["state"] == "done"
    store.close()
    assert api(server, "DELETE", f"/corral/pulls/{job['id']}").status_code == 200
    assert api(server, "GET", f"/corral/pulls/{job['id']}").status_code == 404


def test_pause_keeps_the_partial_file_and_resume_fetches_only_the_rest(server, hub):
    size = hub.entry(CHAT, Q8).size
    hub.throttle(CHAT, Q8, RATE)
    job = start(server, repo=CHAT, quant="Q8_0", mmproj=False)
    running = wait_for(lambda: (lambda j: j if j["done"] > 300_000 else None)(job_of(server, job["id"])),
                       what="bytes to arrive")
    assert running["state"] == "running" and running["file"] == Q8
    assert running["speed"] and running["speed"] > 0 and running["eta"] and running["eta"] > 0
    assert [s["state"] for s in running["steps"]][:2] == ["done", "running"]

    paused = api(server, "POST", f"/corral/pulls/{job['id']}/pause").json()
    assert paused["state"] == "paused" and paused["speed"] is None
    (part,) = [p for p in (server.home.parent / "hf").rglob("*.part")]
    kept = part.stat().st_size
    assert 300_000 <= kept < size
    assert hub.bytes_served(CHAT, Q8) >= kept
    time.sleep(0.5)
    assert job_of(server, job["id"])["state"] == "paused" and part.stat().st_size == kept
    assert models(server) == []

    hub.throttle(CHAT, Q8, None)
    hub.state.served.clear()
    assert api(server, "POST", f"/corral/pulls/{job['id']}/resume").json()["state"] in ("queued", "running")
    done = finished(server, job["id"])
    assert done["state"] == "done", done
    assert hub.bodies(CHAT, Q8) == [(kept, size - kept)]  # only the missing bytes
    (record,) = models(server)
    assert sha256(record["path"]) == hub.entry(CHAT, Q8).sha256
    assert not part.exists()


def test_cancel_deletes_the_partial_file_and_adds_nothing(server, hub):
    hub.throttle(CHAT, Q8, RATE)
    job = start(server, repo=CHAT, quant="Q8_0", mmproj=False)
    wait_for(lambda: job_of(server, job["id"])["done"] > 100_000, what="bytes to arrive")
    canceled = api(server, "POST", f"/corral/pulls/{job['id']}/cancel").json()
    assert canceled["state"] == "canceled"
    assert not list((server.home.parent / "hf").rglob("*.part*"))
    assert models(server) == []
    again = api(server, "POST", f"/corral/pulls/{job['id']}/resume")
    assert again.status_code == 409 and "canceled" in again.json()["error"]["message"]


def test_a_paused_job_is_canceled_without_its_thread(server, hub):
    hub.throttle(CHAT, Q8, RATE)
    job = start(server, repo=CHAT, quant="Q8_0", mmproj=False)
    wait_for(lambda: job_of(server, job["id"])["done"] > 100_000, what="bytes to arrive")
    api(server, "POST", f"/corral/pulls/{job['id']}/pause")
    assert list((server.home.parent / "hf").rglob("*.part"))
    assert api(server, "POST", f"/corral/pulls/{job['id']}/cancel").json()["state"] == "canceled"
    assert not list((server.home.parent / "hf").rglob("*.part*"))


def test_what_cannot_be_pulled_is_refused_before_any_byte(server, hub):
    several = api(server, "POST", "/corral/pulls", json={"repo": CHAT})
    assert several.status_code == 400 and "--quant" in several.json()["error"]["message"]
    huge = api(server, "POST", "/corral/pulls", json={"repo": HUGE})
    assert huge.status_code >= 400 and "not enough disk space" in huge.json()["error"]["message"]
    hostile = api(server, "POST", "/corral/pulls", json={"repo": HOSTILE})
    assert hostile.status_code >= 400 and "unsafe file names" in hostile.json()["error"]["message"]
    elsewhere = api(server, "POST", "/corral/pulls", json={"repo": "https://example.com/a/b"})
    assert elsewhere.status_code == 403
    outside = api(server, "POST", "/corral/pulls", json={"repo": EMBED, "dest": "/etc/corral"})
    assert outside.status_code == 403
    unknown = api(server, "POST", "/corral/pulls", json={"repo": CHAT, "quant": "Q8_0", "speed": 3})
    assert unknown.status_code == 400 and "'speed'" in unknown.json()["error"]["message"]
    nohub = api(server, "POST", "/corral/pulls", json={"repo": CHAT, "source": "modelscope"})
    assert nohub.status_code >= 400 and "corral-modelscope" in nohub.json()["error"]["message"]
    assert hub.bytes_served() == 0
    assert api(server, "GET", "/corral/pulls").json() == {"pulls": []}
    assert api(server, "GET", "/corral/pulls/nope").status_code == 404


def test_asking_again_with_resume_goes_on_with_the_paused_job(server, hub):
    size = hub.entry(CHAT, Q8).size
    hub.throttle(CHAT, Q8, RATE)
    body = {"repo": CHAT, "quant": "Q8_0", "mmproj": False, "resume": True}
    job = start(server, **body)
    wait_for(lambda: job_of(server, job["id"])["done"] > 300_000, what="bytes to arrive")
    api(server, "POST", f"/corral/pulls/{job['id']}/pause")
    hub.throttle(CHAT, Q8, None)
    again = api(server, "POST", "/corral/pulls", json=body)
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert again.json()["landed"] == [] and again.json()["fetched"] == 0
    done = finished(server, job["id"])
    assert done["state"] == "done" and done["verified"] == 1
    (landed,) = done["landed"]
    assert landed["name"] == Q8 and not landed["reused"] and 0 < landed["fetched"] < size
    assert any(n.startswith(f"Resuming {Q8} at ") for n in done["notes"])
    result = done["result"]  # what `corral pull --json` prints
    assert result["files"] == [Q8] and result["resumed"] == [Q8] and result["fetched"] == landed["fetched"]
    (model,) = result["models"]
    assert model["name"] == "corral-test/tiny-chat-GGUF:Q8_0" and model["id"] == done["models"][0]["id"]
    assert [j["id"] for j in api(server, "GET", "/corral/pulls").json()["pulls"]] == [job["id"]]


def test_a_failed_job_names_its_error_and_offline_refuses_what_is_not_cached(server, hub):
    hub.bad_sha(CHAT, Q8)
    job = start(server, repo=CHAT, quant="Q8_0", mmproj=False)
    failed = finished(server, job["id"])
    assert failed["state"] == "failed" and failed["error_code"] == "integrity_error"
    assert "does not match" in failed["error"] and failed["result"] is None
    offline = api(server, "POST", "/corral/pulls", json={"repo": CHAT, "quant": "Q8_0", "offline": True})
    assert offline.status_code >= 400 and "offline" in offline.json()["error"]["message"]
    assert models(server) == []


def test_the_same_files_are_not_pulled_twice_at_once(server, hub):
    hub.throttle(CHAT, Q8, RATE)
    first = start(server, repo=CHAT, quant="Q8_0", mmproj=False)
    second = api(server, "POST", "/corral/pulls", json={"repo": CHAT, "files": [Q8]})
    assert second.status_code == 409 and first["id"] in second.json()["error"]["message"]
    hub.throttle(CHAT, Q8, None)
    assert finished(server, first["id"])["state"] == "done"


def test_hub_search_and_files_with_the_fit_mark(server, hub):
    assert api(server, "GET", "/corral/hub").json() == {"sources": ["huggingface"], "default": "huggingface"}
    found = api(server, "GET", "/corral/hub/search", params={"q": "tiny", "source": "huggingface"}).json()
    repos = [r["repo"] for r in found["results"]]
    assert CHAT in repos and EMBED in repos
    listing = api(server, "GET", "/corral/hub/files", params={"repo": CHAT}).json()
    by_quant = {v["quant"]: v for v in listing["variants"] if not v["mmproj"]}
    assert set(by_quant) == {"Q8_0", "F16"}
    fits = {f["quant"]: f for f in listing["fits"]}
    for quant, fit in fits.items():
        assert not fit["rough"] and fit["n_ctx"]  # the header was read: KV cache and buffers counted
        assert fit["estimate_bytes"] > by_quant[quant]["size"]
        assert fit["fits"] is (fit["estimate_bytes"] <= fit["free_bytes"])
    assert fits["F16"]["estimate_bytes"] > fits["Q8_0"]["estimate_bytes"]
    assert hub.bytes_served(CHAT, MMPROJ) == 0  # only one model header was read
    assert api(server, "GET", "/corral/hub/search").status_code == 400


def test_a_restarted_server_resumes_the_job_it_was_running(hub, tmp_path):
    """``corral serve`` killed mid-file: the next one resumes the job from the partial file."""
    from corral.testing import serve_process

    hub.reset()
    env = {**hub.env(dict(os.environ), home=tmp_path), "CORRAL_LOAD_PLUGINS": "huggingface"}
    home = Path(env["CORRAL_HOME"])
    size = hub.entry(CHAT, Q8).size
    hub.throttle(CHAT, Q8, RATE)

    def serve() -> tuple[subprocess.Popen, str]:
        process, state = serve_process(home, env=env, log=tmp_path / "serve.log", timeout=60)
        return process, state.url

    first, url = serve()
    try:
        job = httpx.post(url + "/corral/pulls", json={"repo": CHAT, "quant": "Q8_0", "mmproj": False}, timeout=60)
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        wait_for(lambda: httpx.get(f"{url}/corral/pulls/{job_id}").json()["done"] > 300_000, what="bytes")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    (part,) = list((tmp_path / "hf").rglob("*.part"))
    kept = part.stat().st_size
    assert 0 < kept < size
    (home / "server.json").unlink(missing_ok=True)
    hub.throttle(CHAT, Q8, None)
    hub.state.served.clear()

    second, url = serve()
    try:
        done = wait_for(lambda: (lambda j: j if j["state"] == "done" else None)(
            httpx.get(f"{url}/corral/pulls/{job_id}").json()), 90, "the resumed pull")
        assert "resumed after a server restart" in done["notes"]
        assert hub.bodies(CHAT, Q8) == [(kept, size - kept)]  # only the missing bytes
        assert [m["name"] for m in done["models"]] == ["corral-test/tiny-chat-GGUF:Q8_0"]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
