"""The monitor page: the uPlot chart (vendored, served by the plugin) receives new points over SSE."""

from __future__ import annotations

from ui_helpers import open_ui


def test_the_chart_receives_new_points(page, ui_server, traffic):
    open_ui(page, ui_server)
    page.click("#tab-monitor")
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 3", timeout=30_000)
    assert page.locator("#chart .uplot canvas").count() >= 1
    legend = page.inner_text("#chart")
    assert "CPU %" in legend and "RAM %" in legend and "Watchdog threshold %" in legend
    assert page.inner_text("#monitor-now").startswith("CPU ")
    first = int(page.get_attribute("#chart", "data-points"))
    page.wait_for_function(f"Number(document.getElementById('chart').dataset.points) > {first}")
    assert any(u.endswith("/ui/vendor/uplot/uPlot.iife.min.js") for u in traffic.urls)
    # Leaving the page stops the stream; coming back goes on with the same chart.
    page.click("#tab-library")
    page.click("#tab-monitor")
    page.wait_for_function(f"Number(document.getElementById('chart').dataset.points) > {first + 1}")
    assert page.locator("#chart .uplot").count() == 1
