"""The Overview's calibration panel in Chromium on the shipped demo: the reliability diagram draws (a
non-blank chart, one panel per head) with the operating-point table under it, at 1600 x 1000 and at
1280 x 800 (screenshots in test-artifacts/screenshots, or MAMMO_SAE_SCREENSHOTS)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_browser import SHOTS, browser, demo_cache, open_page, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 800)])
def test_the_reliability_diagram_draws_with_the_operating_points(server: str, browser, size) -> None:  # noqa: F811
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        open_page(page, server, "Overview")
        heading = page.locator("h3:has-text('Calibration and operating points')")
        heading.wait_for(timeout=60_000)
        page.wait_for_selector("text=/Calibrated on the analysed split, 320 images/", timeout=60_000)
        assert page.locator("text=/not a held-out estimate/").count() == 1
        chart = page.locator("[data-testid=stVegaLiteChart]").filter(has=page.locator("canvas, svg")).first
        chart.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # vega draws after the element appears
        box = chart.bounding_box()
        assert box and box["width"] > 400 and box["height"] > 200, box
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, "the diagram fits the page's width"
        pixels = np.asarray(Image.open(io.BytesIO(chart.screenshot())).convert("RGB"), dtype=np.int16)
        ink = np.abs(pixels - pixels[0, 0]).sum(axis=2) > 60
        assert ink.mean() > 0.01, "the chart drew lines, points and axes"
        orange = (np.abs(pixels - np.array([0xE0, 0xA0, 0x40])).sum(axis=2) < 60).sum()
        assert orange > 50, "the calibrated series is drawn"
        table = page.locator("[data-testid=stDataFrame]").last
        assert table.is_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        heading.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"overview_calibration_{width}x{height}.png"))
        table.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"overview_points_{width}x{height}.png"))
    finally:
        page.close()
