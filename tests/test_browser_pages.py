"""Issue 19 point 8 in a real browser: Interventions, Concept neurons (opened by a latent's link), Training
report and Dataset on the shipped demo at 1600 x 1000 and 1280 x 800, with no traceback or error on the
page; screenshots for a person to look at (test-artifacts/screenshots/pages-*)."""

from __future__ import annotations

import pytest
from test_browser import browser, demo_cache, open_page, server, settle, shoot  # noqa: F401

pytestmark = pytest.mark.slow
VIEWPORTS = ((1600, 1000), (1280, 800))
PAGES = (("Interventions", "interventions"), ("Training report", "training"), ("Dataset", "dataset"))


def assert_clean(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, "a traceback is on the page"
    errors = page.locator("[data-testid=stAlertContentError]")
    assert errors.count() == 0, [errors.nth(i).inner_text() for i in range(errors.count())]


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_point8_pages_draw_cleanly(server: str, browser, size: tuple[int, int]) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        for title, name in PAGES:
            open_page(page, server, title)
            if name == "interventions":
                page.wait_for_selector("text=Before", timeout=120_000)
            assert_clean(page)
            shoot(page, f"pages-{name}-{size[0]}x{size[1]}")
        page.goto(f"{server}/concepts?latent=473")
        settle(page)
        page.wait_for_selector("h2:has-text('#473')", timeout=120_000)
        assert "latent=473" in page.url
        assert_clean(page)
        shoot(page, f"pages-concepts-{size[0]}x{size[1]}")
    finally:
        page.close()
