"""Works offline: every page of the UI loads from the server alone (no CDN, no font host), and the
blocker the ``page`` fixture installs really refuses and records a request beyond this machine."""

from __future__ import annotations

from urllib.parse import urlsplit

from ui_helpers import open_ui


def test_every_page_asks_only_the_server(page, ui_server, traffic):
    open_ui(page, ui_server)
    for tab in ("runtime", "playground", "monitor", "import", "downloads", "library"):
        page.click(f"#tab-{tab}")
        page.wait_for_selector(f"#page-{tab}:not([hidden])")
        if tab == "monitor":  # its chart library and first point, before the stream stops on leaving
            page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 1")
    server = urlsplit(ui_server.url).netloc
    assert traffic.urls and {urlsplit(u).netloc for u in traffic.urls} == {server}
    assert any(u.endswith("/ui/vendor/uplot/uPlot.min.css") for u in traffic.urls)


def test_the_blocker_refuses_other_hosts(page, ui_server, traffic):
    open_ui(page, ui_server)
    outcome = page.evaluate("fetch('https://cdn.example.com/x.js').then(() => 'answered', () => 'refused')")
    assert outcome == "refused"
    assert traffic.foreign == ["https://cdn.example.com/x.js"]
    traffic.foreign.clear()  # seen; the fixture's own check is for requests nobody expected
