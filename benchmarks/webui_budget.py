"""The web UI's budgets, in headless Chromium: bytes on the first load of the library page, time until
a table of 500 models is rendered, monitor updates per second.

Builds a library of 500 models (five tiny GGUFs, each with 99 more records over links to its files),
serves it with the web UI on a free loopback port, and opens the page in Debian's Chromium (Playwright
for Python; ``apt-get install -y chromium``) with an empty cache. Bytes are what the network layer
counts (headers and bodies, every request the page made); the render time runs from the start of the
navigation to the mark the page sets once the table is drawn (the model list fetched and rendered). The
ratio column is the measurement against its budget (below 1 is within it).

    python benchmarks/webui_budget.py [--models 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "corral-webui" / "tests"))  # the tests' Chromium settings

from ui_helpers import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

BYTES_BUDGET = 300 * 1024
RENDER_BUDGET = 1.0
MONITOR_BUDGET = 1.0  # updates per second, at least


def build(home: Path, count: int):
    import corral_webui

    from corral.testing import build_host, open_library, write_tiny_gguf

    library = open_library(home, build_host(entry_points=False, plugins=[corral_webui]))
    bases = []
    for i, ctx in enumerate((512, 1024, 2048, 4096, 8192)):
        name = f"base-{i}"
        library.import_path(write_tiny_gguf(home / "models" / f"{name}.gguf", context_length=ctx, name=name), name=name)
        bases.append(name)
    n = len(bases)
    while n < count:
        library.copy(bases[n % len(bases)], f"model-{n:04d}")
        n += 1
    return library


def first_load(browser, url: str) -> tuple[int, float, int]:
    """(bytes transferred, seconds until the table is rendered, rows) for one cold load."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    sizes: dict[str, float] = {}
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_load_state("networkidle")
    seconds = page.evaluate("performance.getEntriesByName('corral-library-rendered')[0].startTime") / 1000
    rows = page.locator("#models tbody tr").count()
    context.close()
    return int(sum(sizes.values())), seconds, rows


def monitor_rate(browser, url: str, seconds: float = 5.0) -> float:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "#monitor")
    page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 1")
    start = int(page.get_attribute("#chart", "data-points"))
    began = time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    points = int(page.get_attribute("#chart", "data-points")) - start
    rate = points / (time.monotonic() - began)
    context.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from corral.testing import Runtime, ServerThread

    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp), args.models)
        runtime = Runtime(library)
        with ServerThread(runtime) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first_load(browser, server.url + "/")  # warm the server's own caches, not the browser's
            loads = [first_load(browser, server.url + "/") for _ in range(args.runs)]
            rate = monitor_rate(browser, server.url + "/")
            browser.close()
        runtime.close()
        library.store.close()
    sizes = [b for b, _, _ in loads]
    times = [t for _, t, _ in loads]
    rows = loads[0][2]
    size, render = statistics.median(sizes), statistics.median(times)
    print(f"library page, {rows} models, {args.runs} cold loads in headless Chromium (medians)")
    print(f"{'measure':<34}{'value':>12}{'budget':>12}{'ratio':>8}")
    print(f"{'first load, bytes transferred':<34}{size / 1024:>10.1f} K{BYTES_BUDGET / 1024:>10.0f} K{size / BYTES_BUDGET:>8.2f}")
    print(f"{'table rendered after':<34}{render:>10.3f} s{RENDER_BUDGET:>10.1f} s{render / RENDER_BUDGET:>8.2f}")
    print(f"{'monitor updates':<34}{rate:>8.2f} / s{MONITOR_BUDGET:>8.1f} / s{MONITOR_BUDGET / rate if rate else float('inf'):>8.2f}")
    if rows != args.models:
        sys.exit(f"the table showed {rows} rows, not {args.models}")


if __name__ == "__main__":
    main()
