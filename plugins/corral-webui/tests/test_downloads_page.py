"""The downloads page against the local fake hub (tests/fakehub) with the real huggingface_hub client:
search, the files by quantization with the fits mark, a pull with its progress, pause, resume, the model
in the library table; and a job a stopped server left, resumed by the next one."""

from __future__ import annotations

import pytest

from fakehub import CHAT, MMPROJ, Q8
from fakehub.fixtures import hub, point_here  # noqa: F401
from ui_helpers import build_library, open_ui, served

corral_huggingface = pytest.importorskip("corral_huggingface")

#: Slow enough to watch the bar move and press Pause, quick enough for a test.
RATE = 300_000
PULLED = "corral-test/tiny-chat-GGUF:Q8_0"


@pytest.fixture
def hub_library(hub, tmp_path, monkeypatch):
    """A library with the web UI and the Hugging Face plugin, the client pointed at the fake hub."""
    point_here(monkeypatch, hub, tmp_path)
    library = build_library(tmp_path / "corral", corral_huggingface)
    try:
        yield library
    finally:
        library.store.close()


def job_state(page) -> str:
    return page.get_attribute("#pulls .job", "data-state")


def test_search_pull_pause_resume_and_the_model_in_the_table(page, hub, hub_library, tmp_path):
    hub.throttle(CHAT, Q8, RATE)
    with served(hub_library) as server:
        open_ui(page, server, "#downloads")
        page.wait_for_selector("#hub-source option[value=huggingface]", state="attached")
        page.locator("#page-downloads").get_by_label("Search", exact=True).fill("tiny")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#hub-table tr[data-repo='{CHAT}']")
        page.get_by_role("button", name=f"Files of {CHAT}").click()
        page.wait_for_selector("#variants")
        rows = {r.get_attribute("data-quant"): r.inner_text() for r in page.locator("#variants tbody tr").all()}
        assert set(rows) == {"Q8_0", "F16"}
        assert all("fits" in text for text in rows.values())  # "fits" or "does not fit", with the estimate
        assert "MiB" in rows["Q8_0"] and "tokens of context" in page.get_attribute("#variants tr[data-quant=Q8_0] td:nth-child(3)", "title")
        assert page.is_checked("#pull-mmproj")
        page.uncheck("#pull-mmproj")
        page.get_by_role("button", name="Pull Q8_0").click()

        page.wait_for_selector("#pulls .job[data-state=running]")
        page.wait_for_function("Number(document.querySelector('#pulls progress')?.value) > 5")
        text = page.inner_text("#pulls .job-progress")
        assert " of " in text and "/s" in text and "left" in text, text
        assert "download: running" in page.inner_text("#pulls .steps")

        page.get_by_role("button", name=f"Pause {CHAT} {Q8}").click()
        page.wait_for_selector("#pulls .job[data-state=paused]")
        (part,) = list((tmp_path / "hf").rglob("*.part"))
        kept = part.stat().st_size
        assert 0 < kept < hub.entry(CHAT, Q8).size
        assert hub_library.store.list_models() == []

        hub.throttle(CHAT, Q8, None)
        hub.state.served.clear()
        page.get_by_role("button", name=f"Resume {CHAT} {Q8}").click()
        page.wait_for_selector("#pulls .job[data-state=done]", timeout=60_000)
        assert hub.bodies(CHAT, Q8) == [(kept, hub.entry(CHAT, Q8).size - kept)]  # only the rest
        assert hub.bytes_served(CHAT, MMPROJ) == 0
        steps = page.inner_text("#pulls .steps")
        assert all(f"{step}" in steps for step in ("list", "download", "verify 1/1", "import")) and "pending" not in steps
        assert f"added: {PULLED}" in page.inner_text("#pulls .job-models")

        page.click("#tab-library")
        page.wait_for_selector(f"#models tbody tr:has-text('{PULLED}')")
        assert [m.name for m in hub_library.store.list_models()] == [PULLED]


def test_a_stopped_server_leaves_the_pull_to_the_next_one(page, hub, hub_library, tmp_path):
    hub.throttle(CHAT, Q8, RATE)
    with served(hub_library) as first:
        open_ui(page, first, "#downloads")
        job = first.app.state.pulls.submit(CHAT, quant="Q8_0", mmproj=False)
        page.wait_for_function("Number(document.querySelector('#pulls progress')?.value) > 5")
    # Stopped mid-file: the job waits in the library database, queued, beside its partial file.
    assert hub_library.store.get_job(job.id)["state"] == "queued"
    (part,) = list((tmp_path / "hf").rglob("*.part"))
    kept = part.stat().st_size
    hub.throttle(CHAT, Q8, None)
    hub.state.served.clear()
    with served(hub_library) as second:
        open_ui(page, second, "#downloads")
        page.wait_for_selector("#pulls .job[data-state=done]", timeout=60_000)
        assert "resumed after a server restart" in page.inner_text("#pulls .job")
        assert hub.bodies(CHAT, Q8) == [(kept, hub.entry(CHAT, Q8).size - kept)]
        page.click("#tab-library")
        page.wait_for_selector(f"#models tbody tr:has-text('{PULLED}')")
