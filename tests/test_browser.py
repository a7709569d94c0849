"""The dashboard in a real browser: headless Debian Chromium driven by Playwright against `streamlit run`
on 127.0.0.1, on the shipped demo bundle. Screenshots go to MAMMO_SAE_SCREENSHOTS (README images) or to
test-artifacts/screenshots.

Needs /usr/bin/chromium (Debian package `chromium`) and the `playwright` package; never `playwright
install`. Skipped when Chromium is absent, unless MAMMO_SAE_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_fixtures import identifying_tags, leaked

from mammo_sae.data.dicom import read_mammogram, write_mammogram
from mammo_sae.demo import DEMO_DIR

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("MAMMO_SAE_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")

pytestmark = pytest.mark.slow
if not Path(CHROMIUM).exists() or not (DEMO_DIR / "demo.json").exists():
    if os.environ.get("MAMMO_SAE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(
            f"browser tests need {CHROMIUM} (apt-get install chromium) and the shipped demo bundle"
        )
    pytest.skip(
        f"browser tests need {CHROMIUM} (Debian package chromium) and weights/demo", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the server (and the upload test) regenerate the demo phantoms."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Iterator[str]:
    """`streamlit run app/Home.py` on a free local port; stopped by its own PID."""
    port = free_port()
    env = {**os.environ, "MAMMO_SAE_CACHE": str(demo_cache), "PYTHONUNBUFFERED": "1"}
    env.pop("MAMMO_SAE_BUNDLE", None)
    log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "Home.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
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
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def settle(page, timeout: float = 120_000) -> None:
    """Wait until the app is connected and its script has finished running."""
    page.wait_for_selector("[data-testid=stApp][data-test-connection-state=CONNECTED]", timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout)


def open_page(page, url: str, title: str) -> None:
    page.goto(url)
    settle(page)
    if title != "Overview":
        page.locator("[data-testid=stSidebarNavLink]").filter(has_text=title).first.click()
        settle(page)
    page.wait_for_selector(f"h1:has-text('{title if title != 'Overview' else 'mammo-sae'}')", timeout=60_000)


def shoot(page, name: str) -> Path:
    """A screenshot, once the page's charts have drawn."""
    page.wait_for_timeout(1500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def choose(page, label: str, option: str) -> None:
    """Pick an option of the selectbox labelled ``label`` (a combobox input named by its label)."""
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    settle(page)


def test_pages_open_with_the_banner_and_screenshots(server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    open_page(page, server, "Overview")
    page.wait_for_selector("text=Research use only", timeout=60_000)
    page.wait_for_selector("text=/synthetic phantoms/i", timeout=60_000)
    shoot(page, "overview")
    open_page(page, server, "Case review")
    page.wait_for_selector("[data-testid=stImage]", timeout=60_000)
    assert page.locator("[data-testid=stImage]").count() >= 4
    assert "calcification" in page.content()
    shoot(page, "case_review")
    for title, name in (("Concept neurons", "concepts"), ("Training report", "training")):
        open_page(page, server, title)
        assert "Research use only" in page.content()
        shoot(page, name)
    page.close()


def test_an_intervention_changes_the_probability(server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    open_page(page, server, "Interventions")
    values = page.locator("[data-testid=stMetricValue]")
    before = [values.nth(i).inner_text() for i in range(values.count())]
    choose(page, "Top-k of concept", "calcification")
    page.wait_for_timeout(500)
    after = [values.nth(i).inner_text() for i in range(values.count())]
    assert before != after, "suppressing the top calcification latents moves a probability"
    shoot(page, "interventions")
    page.close()


def test_uploads_good_bad_and_identifying(server: str, browser, demo_cache: Path, tmp_path: Path) -> None:
    from mammo_sae.demo import ensure_demo_dataset

    root = ensure_demo_dataset(cache=demo_cache)
    phantom = next((root / "images").rglob("*.dicom"))
    identifying = tmp_path / "identifying.dcm"
    stored = read_mammogram(phantom).stored
    write_mammogram(identifying, stored, laterality="L", view="CC", tags=identifying_tags())
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom at all" * 50)

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    open_page(page, server, "Upload")
    upload = page.locator("[data-testid=stFileUploaderDropzoneInput]")
    upload.set_input_files(str(bad))
    settle(page)
    page.wait_for_selector("text=not a DICOM file", timeout=60_000)
    shoot(page, "upload_bad")
    upload.set_input_files(str(identifying))
    settle(page)
    page.wait_for_selector("[data-testid=stMetricValue]", timeout=120_000)
    page.get_by_text("Metadata (allow-listed)").click()
    page.wait_for_timeout(500)
    content = page.content()
    assert leaked(content) == [], f"identifying values reached the page: {leaked(content)}"
    assert "mass probability" in content
    shoot(page, "upload")
    page.close()
