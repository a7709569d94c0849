"""The hanging viewer component in a real browser (headless Debian Chromium, Playwright) on the test app
tests/apps/viewer_app.py (synthetic DICOMs, no bundle): the four slots fit the viewport; wheel zooms and
drag pans; window/level changes grey levels, never the orientation; invert changes grey levels, never the
mirroring; keys typed on the page (outside the iframe) step studies and hide overlays; a click sends the
point in original pixels with its token; the display survives a rerun of the same study."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from test_browser import REPO, SHOTS, browser, free_port, settle  # noqa: F401 (browser is a fixture)
from test_browser import viewer_iframe as viewer_frame

pytestmark = pytest.mark.slow
APP = REPO / "tests" / "apps" / "viewer_app.py"
VIEWPORTS = ((1600, 1000), (1280, 800))
ROWS, COLS, GRID = 360, 280, (10, 7)  # the test app's images and model grid


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run tests/apps/viewer_app.py` on a free local port, stopped by its own PID."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("viewer-server") / "streamlit.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the viewer test app did not start; see {log_path}")
                time.sleep(0.5)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def open_viewer(browser, url: str, size: tuple[int, int] = (1600, 1000)):  # noqa: F811
    """A fresh page on the app with the viewer's pixels drawn; returns (page, the viewer's frame)."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(url)
    settle(page)
    frame = viewer_frame(page)
    frame.wait_for_selector("#viewer[data-state=ready]", timeout=60_000)
    page.wait_for_timeout(300)
    return page, frame


def grey(frame, slot: int) -> np.ndarray:
    """The slot canvas's red channel (device pixels) as a 2-D array."""
    frame.wait_for_timeout(150)  # the next animation frame has drawn
    data = frame.evaluate(
        """(slot) => {
            const c = document.querySelector(`canvas[data-slot="${slot}"]`);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const out = new Array(c.width * c.height);
            for (let i = 0; i < out.length; i++) out[i] = d[4 * i];
            return {w: c.width, h: c.height, v: out};
        }""",
        slot,
    )
    return np.asarray(data["v"], dtype=np.float64).reshape(data["h"], data["w"])


def attr(frame, slot: int, name: str) -> str:
    return frame.locator(f'canvas[data-slot="{slot}"]').get_attribute(f"data-{name}")


def centre_of(page, frame, slot: int) -> tuple[float, float]:
    """The page coordinates of a slot canvas's centre (Playwright's boxes in a frame are page coordinates)."""
    box = frame.locator(f'canvas[data-slot="{slot}"]').bounding_box()
    assert box
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def events(page) -> list[dict]:
    text = page.locator("[data-testid=stCode]").last.inner_text()
    return json.loads(text)


def events_once(page, count: int, timeout_s: float = 30) -> list[dict]:
    """The event log once it holds `count` events (the rerun an event starts may begin after a settle)."""
    deadline = time.monotonic() + timeout_s
    logged = events(page)
    while len(logged) < count and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        settle(page)
        logged = events(page)
    return logged


def press_outside(page, key: str) -> None:
    """A key typed with the focus on the page around the iframe (where it usually is)."""
    page.locator("[data-testid=stSidebar]").click(position={"x": 20, "y": 300})
    page.keyboard.press(key)
    drawn(page)


TWO_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def drawn(page) -> None:
    """Wait until every viewer on the page has run the draw a key or event asked for (one animation frame;
    two, so a draw queued during the first has run too). A viewer replaced meanwhile (a new study) is skipped."""
    for frame in page.frames:
        if "hanging_viewer" in frame.url:
            with contextlib.suppress(Exception):  # the frame went away with a rerun: nothing to wait on
                frame.evaluate(TWO_FRAMES)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def tissue_side(image: np.ndarray) -> str:
    """Which half of a view has more bright pixels (the chest wall's side, for the synthetic breast)."""
    half = image.shape[1] // 2
    return "left" if image[:, :half].mean() > image[:, -half:].mean() else "right"


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_four_slots_fit_the_viewport_and_hang_back_to_back(browser, viewer_server: str, size) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server, size)
    for slot in range(4):
        box = frame.locator(f'canvas[data-slot="{slot}"]').bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200, (slot, box)
        top, bottom = box["y"], box["y"] + box["height"]  # page coordinates, the iframe's offset in
        left, right = box["x"], box["x"] + box["width"]
        assert top >= 0 and left >= 0, (slot, box)
        assert bottom <= size[1] and right <= size[0], (slot, box)
        dpr = frame.evaluate("window.devicePixelRatio")
        width = frame.evaluate(f"document.querySelector('canvas[data-slot=\"{slot}\"]').width")
        assert width == round(box["width"] * dpr), "the canvas is drawn at its CSS size times the pixel ratio"
    # every file has its breast on the left: the R views are mirrored to meet the L views in the middle
    press_outside(page, "o")
    assert tissue_side(grey(frame, 0)) == "right" and tissue_side(grey(frame, 2)) == "right"
    assert tissue_side(grey(frame, 1)) == "left"
    assert "not in this study" in frame.locator('.slot[data-slot="3"]').inner_text()
    press_outside(page, "o")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"viewer-{size[0]}x{size[1]}.png"))
    page.context.close()


def test_wheel_zooms_about_the_cursor_and_drag_pans(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    before = grey(frame, 0)
    x, y = centre_of(page, frame, 0)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(300)
    assert float(attr(frame, 0, "zoom")) > 1.5
    zoomed = grey(frame, 0)
    assert np.abs(zoomed - before).mean() > 2, "the zoomed view shows other pixels"
    assert attr(frame, 1, "zoom") == "1.000", "views are not linked by default"
    pan = attr(frame, 0, "pan")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=6)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert attr(frame, 0, "pan") != pan
    assert np.abs(grey(frame, 0) - zoomed).mean() > 1, "the panned view moved"
    assert events(page) == [], "zoom and pan never talk to the server"
    # the same study re-rendered (a rerun after a view is selected) keeps the zoom
    press_outside(page, "2")
    settle(page)
    assert [e["event"] for e in events_once(page, 1)] == ["select"]
    assert float(attr(viewer_frame(page), 0, "zoom")) > 1.5
    press_outside(page, "r")
    page.wait_for_timeout(300)
    assert attr(frame, 0, "zoom") == "1.000"
    page.context.close()


def test_window_level_changes_grey_levels_not_orientation(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    press_outside(page, "o")  # overlays off: compare the image alone
    before = grey(frame, 0)
    window = attr(frame, 0, "window")
    x, y = centre_of(page, frame, 0)
    page.mouse.move(x, y)
    page.keyboard.down("Shift")
    page.mouse.down()
    page.mouse.move(x - 80, y + 50, steps=8)  # narrower and higher: more contrast, background stays black
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_timeout(300)
    after = grey(frame, 0)
    assert attr(frame, 0, "window") != window
    assert np.abs(after - before).mean() > 2, "the window changed the displayed pixels"
    assert tissue_side(before) == tissue_side(after) == "right", "the view hangs the same way"
    same, mirrored = correlation(before, after), correlation(before, after[:, ::-1])
    assert same > 0.8 and same > mirrored + 0.2, (same, mirrored)
    assert events(page) == []
    # presets by name, as the file names them
    names = frame.locator("#preset option").all_inner_texts()
    assert names[:3] == ["SOFT", "HARD", "FULL RANGE"]
    frame.select_option("#preset", "HARD")
    page.wait_for_timeout(300)
    assert attr(frame, 0, "window") == "2600.0,900.0"
    page.context.close()


def test_invert_changes_grey_levels_not_mirroring(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    press_outside(page, "o")
    before = grey(frame, 0)
    press_outside(page, "i")
    after = grey(frame, 0)
    assert frame.locator("#viewer").get_attribute("data-invert") == "true"
    x0, y0, x1, y1 = (int(v) for v in attr(frame, 0, "image-rect").split(","))
    assert x1 - x0 > 100 and y1 - y0 > 100
    inside = (after + before - 255)[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
    assert np.abs(inside).mean() < 1.5, "invert is 255 - grey, pixel for pixel (same geometry)"
    press_outside(page, "i")
    assert np.abs(grey(frame, 0) - before).mean() < 0.5
    page.context.close()


def test_overlays_hide_with_one_key_and_each_with_its_own(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    shown = grey(frame, 0)
    press_outside(page, "o")
    assert "all" not in frame.locator("#viewer").get_attribute("data-overlays")
    hidden = grey(frame, 0)
    assert np.abs(shown - hidden).max() > 50, "boxes, mark and heatmap were drawn and are gone"
    press_outside(page, "o")
    for key in ("b", "h", "m"):
        press_outside(page, key)
        page.wait_for_timeout(200)
    assert frame.locator("#viewer").get_attribute("data-overlays") == "all"
    assert np.abs(grey(frame, 0) - hidden).mean() < 0.5, "b, h and m together hide what o hides"
    page.context.close()


def test_keys_on_the_page_step_studies_and_a_click_sends_the_point(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    press_outside(page, "i")
    x, y = centre_of(page, frame, 0)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -300)
    press_outside(page, "j")
    settle(page)
    page.wait_for_selector("text=study: study-b")
    frame = viewer_frame(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('iframe')].some(f => "
        "f.contentDocument?.querySelector('#viewer')?.dataset.study === 'study-b')"
    )
    assert [e["event"] for e in events_once(page, 1)] == ["next"]
    assert attr(frame, 0, "zoom") == "1.000", "a new study starts unzoomed"
    assert frame.locator("#viewer").get_attribute("data-invert") == "true", "but keeps invert"
    press_outside(page, "k")
    settle(page)
    page.wait_for_selector("text=study: study-a")
    frame.locator("#viewer[data-study=study-a][data-state=ready]").wait_for(timeout=60_000)
    # a click near the centre line of the mirrored R CC is near the chest wall: small original x
    canvas = frame.locator('canvas[data-slot="0"]').bounding_box()  # page coordinates
    page.mouse.click(canvas["x"] + canvas["width"] - 30, canvas["y"] + canvas["height"] / 2)
    settle(page)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stCode]')?.innerText.includes('point')"
    )
    point = events(page)[-1]
    assert point["event"] == "point" and point["slot"] == 0
    assert 0 <= point["x"] < COLS / 4 and abs(point["y"] - ROWS / 2) < ROWS / 8
    row, col = int(point["y"] / ROWS * GRID[0]), int(point["x"] / COLS * GRID[1])
    assert point["token"] == row * GRID[1] + col
    nonces = [e["nonce"] for e in events(page)]
    assert nonces == sorted(set(nonces)), "each event has a new, increasing nonce"
    page.context.close()


def test_display_state_survives_leaving_and_reopening(browser, viewer_server: str) -> None:  # noqa: F811
    page, frame = open_viewer(browser, viewer_server)
    press_outside(page, "i")
    x, y = centre_of(page, frame, 0)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    zoom = attr(frame, 0, "zoom")
    page.reload()  # a new iframe in the same tab: sessionStorage carries the display over
    settle(page)
    frame = viewer_frame(page)
    frame.wait_for_selector("#viewer[data-state=ready]", timeout=60_000)
    assert attr(frame, 0, "zoom") == zoom
    assert frame.locator("#viewer").get_attribute("data-invert") == "true"
    page.context.close()
