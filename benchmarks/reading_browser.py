"""The reading screen in Chromium, on the shipped demo (issue 19, point 9):

- the first start on an empty cache: a real server, the phantoms generated while a progress bar shows,
  until the hanging viewer has drawn its four views (target <= 60 s);
- zoom, pan and window/level: the number of script runs they cause on the server (target: none, the
  viewer draws them in the browser), and the time from the mouse event to the redrawn canvas (including
  Playwright's dispatch of the wheel, drag and right-drag).

Needs Debian's chromium at /usr/bin/chromium and Playwright (never a downloaded browser).

    python benchmarks/reading_browser.py [--events 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from measure import report
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
READY = "#viewer[data-state=ready]"
COUNT_RUNS = """() => {  // count the server's script runs from now on
  window.__runs = 0;
  const app = document.querySelector('[data-testid=stApp]');
  new MutationObserver(() => { if (app.dataset.testScriptState === 'running') window.__runs += 1; })
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cache: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MAMMO_SAE_CACHE": str(cache), "MAMMO_SAE_NOTES": str(cache / "notes")}
    env.pop("MAMMO_SAE_BUNDLE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "Home.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"streamlit did not start; see {log}")


def first_start(page, url: str) -> tuple[float, bool]:
    """Seconds from opening Case review on an empty cache to the drawn viewer, and whether a progress bar
    was shown meanwhile."""
    started = time.perf_counter()
    page.goto(f"{url}/case_review")
    saw_progress = False
    frame = page.frame_locator("iframe[src*=hanging_viewer]").first
    while True:
        saw_progress = saw_progress or page.locator("[data-testid=stProgress]").count() > 0
        if frame.locator(READY).count():
            return time.perf_counter() - started, saw_progress
        if time.perf_counter() - started > 600:
            raise RuntimeError("the viewer did not draw within 10 minutes")
        page.wait_for_timeout(100)


def browser_actions(page, events: int) -> tuple[dict[str, list[float]], int]:
    """Wheel zooms, drag pans and right-drag window changes on the R CC view: seconds from each event to
    the canvas attribute that reports it, and the script runs they caused."""
    frame = page.frame_locator("iframe[src*=hanging_viewer]").first
    canvas = frame.locator('canvas[data-slot="0"]')
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5
    page.evaluate(COUNT_RUNS)
    times: dict[str, list[float]] = {"zoom": [], "pan": [], "window": []}

    def changed(attribute: str, before: str | None) -> None:
        deadline = time.perf_counter() + 10
        while canvas.get_attribute(attribute) == before and time.perf_counter() < deadline:
            pass

    for i in range(events):
        page.mouse.move(x, y)
        before = canvas.get_attribute("data-zoom")
        started = time.perf_counter()
        page.mouse.wheel(0, -120 if i % 2 == 0 else 100)
        changed("data-zoom", before)
        times["zoom"].append(time.perf_counter() - started)
        before = canvas.get_attribute("data-pan")
        started = time.perf_counter()
        page.mouse.down()
        page.mouse.move(x + 25, y + 15, steps=2)
        page.mouse.up()
        changed("data-pan", before)
        times["pan"].append(time.perf_counter() - started)
        page.mouse.move(x, y)
        before = canvas.get_attribute("data-window")
        started = time.perf_counter()
        page.mouse.down(button="right")
        page.mouse.move(x + (30 if i % 2 == 0 else -30), y - 20, steps=2)
        page.mouse.up(button="right")
        changed("data-window", before)
        times["window"].append(time.perf_counter() - started)
    page.wait_for_timeout(1000)  # a late rerun would show here
    return times, int(page.evaluate("window.__runs"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        cache = Path(folder) / "cache"
        cache.mkdir()
        process, url = start_server(cache, Path(folder) / "streamlit.log")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            seconds, progress = first_start(page, url)
            page.wait_for_timeout(1500)
            times, runs = browser_actions(page, args.events)
        finally:
            browser.close()
            process.terminate()
            process.wait(timeout=20)
    print(f"first start on an empty cache -> viewer drawn: {seconds:.1f} s (target <= 60 s)  "
          f"{'PASS' if seconds <= 60 else 'FAIL'}; progress bar shown: {progress}")  # fmt: skip
    for name, values in times.items():  # Playwright's own input dispatch is part of each figure
        report(f"{name} in the browser (event -> redrawn canvas)", values, None)
    print(f"server script runs caused by {3 * args.events} zoom / pan / window events: {runs} (target 0)  "
          f"{'PASS' if runs == 0 else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    main()
