"""The dashboard in a real browser: headless Debian Chromium driven by Playwright against `streamlit run`
on 127.0.0.1, on the shipped demo bundle (notes go to a temporary notes folder, never into the bundle),
and, for what needs evidence maps, flags and the shortcut audit, on the small analysis bundle the tests
build. Nothing a page loads may come from another host than the server. Screenshots go to
MAMMO_SAE_SCREENSHOTS (README images) or to test-artifacts/screenshots.

Needs /usr/bin/chromium (Debian package `chromium`) and the `playwright` package; never `playwright
install`. Skipped when Chromium is absent, unless MAMMO_SAE_REQUIRE_BROWSER=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import untrusted_fixtures as untrusted
from demo_fixtures import linked_demo_cache
from dicom_fixtures import identifying_tags, leaked

from mammo_sae.bundle import Bundle, intervention_views
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle.cases import hanging_views, study_table
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import NOTES_ENV, notes_folder
from mammo_sae.bundle.queries import case_intervention, intervention_scale
from mammo_sae.data.dicom import DicomEncoding, read_mammogram, write_mammogram
from mammo_sae.demo import DEMO_DIR, demo_bundle_dir, ensure_demo_dataset

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("MAMMO_SAE_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
PAGE_TITLES = (
    "Overview",
    "Case review",
    "Concept neurons",
    "Interventions",
    "Shortcut audit",
    "Upload",
    "Training report",
    "Dataset",
)

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
def demo_cache(tmp_path_factory: pytest.TempPathFactory, demo_phantoms: Path) -> Path:
    """Where the server (and the upload test) find the demo phantoms, made before any server starts (a
    first start under load can outlast a page wait; tests/test_app_demo.py covers it): this module's own
    folder, so notes and verdicts saved here stay here."""
    return linked_demo_cache(demo_phantoms, tmp_path_factory.mktemp("cache"))


@contextlib.contextmanager
def streamlit_server(
    cache: Path, log_dir: Path, notes: Path | None = None, bundle: Path | None = None
) -> Iterator[str]:
    """`streamlit run app/Home.py` on a free local port, on the shipped demo (or ``bundle``), keeping latent
    notes in ``notes`` (default: the cache's); stopped by its own PID."""
    port = free_port()
    env = {**os.environ, "MAMMO_SAE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env.pop("MAMMO_SAE_BUNDLE", None)
    env.pop(NOTES_ENV, None)
    if bundle is not None:
        env["MAMMO_SAE_BUNDLE"] = str(bundle)
    if notes is not None:
        env[NOTES_ENV] = str(notes)
    log = open(log_dir / "streamlit.log", "w")  # noqa: SIM115
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
def server(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Iterator[str]:
    """The app on the shipped demo bundle (read only: tests here never write into weights/demo)."""
    with streamlit_server(demo_cache, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def evidence_bundle(analysis_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small analysis bundle (evidence maps, regions, flags, shortcut audit) with its inputs, copied."""
    root = tmp_path_factory.mktemp("evidence-bundle")
    for name in ("bundle", "phantoms", "classifier.safetensors", "sae-relu"):
        src = analysis_bundle_path.parent / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root / "bundle"


@pytest.fixture(scope="module")
def evidence_server(
    tmp_path_factory: pytest.TempPathFactory, demo_cache: Path, evidence_bundle: Path
) -> Iterator[str]:
    """The app on the small analysis bundle."""
    log_dir = tmp_path_factory.mktemp("evidence-server")
    with streamlit_server(
        demo_cache, log_dir, tmp_path_factory.mktemp("evidence-notes"), evidence_bundle
    ) as url:
        yield url


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the notes server keeps latent notes (MAMMO_SAE_NOTES)."""
    return tmp_path_factory.mktemp("notes")


@pytest.fixture(scope="module")
def notes_server(
    tmp_path_factory: pytest.TempPathFactory, demo_cache: Path, notes_dir: Path
) -> Iterator[str]:
    """The app on the shipped demo, keeping the notes the tests save in ``notes_dir``."""
    with streamlit_server(demo_cache, tmp_path_factory.mktemp("notes-server"), notes_dir) as url:
        yield url


def demo_notes(notes_dir: Path) -> dict:
    """The notes the app saved for the shipped demo."""
    folder = notes_folder(read_manifest(demo_bundle_dir()), notes_dir)
    return json.loads((folder / "latent_notes.json").read_text())


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
    if title == "Case review":
        wait_for_viewer(page)
        return
    page.wait_for_selector(f"h1:has-text('{title if title != 'Overview' else 'mammo-sae'}')", timeout=60_000)


def viewer_frame(page):
    return page.frame_locator("iframe[src*=hanging_viewer]").first


def viewer_iframe(page, timeout_s: float = 60):
    """The hanging viewer's frame itself (for its attributes), once the page has one; AssertionError after
    ``timeout_s`` seconds without it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "hanging_viewer" in frame.url:
                return frame
        page.wait_for_timeout(200)
    raise AssertionError("no hanging viewer iframe on the page")


def wait_for_viewer(page, timeout: float = 120_000) -> None:
    """Case review is ready when its hanging viewer has decoded the study's views."""
    viewer_frame(page).locator("#viewer[data-state=ready]").wait_for(timeout=timeout)


def query(page) -> dict[str, str]:
    """The page's query parameters (the reading screen keeps its study, view, latent and head there)."""
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).items()}


def panel(page, name: str) -> None:
    """Show one of the reading screen's side panels."""
    page.locator("[data-testid=stButtonGroup] button").filter(has_text=name).first.click()
    settle(page)


def shoot(page, name: str, full_page: bool = True) -> Path:
    """A screenshot, once the page's charts have drawn (``full_page=False``: the screen as the user sees it)."""
    page.wait_for_timeout(1500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
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
    for size, name in (((1600, 1000), "case_review"), ((1280, 800), "case_review_1280")):
        screen = browser.new_page(viewport={"width": size[0], "height": size[1]})
        open_page(screen, server, "Case review")
        assert viewer_frame(screen).locator("canvas[data-ready=true]").count() == 4, "four views hung"
        assert "calcification" in screen.content()
        shoot(screen, name, full_page=False)  # the reading screen fills the window: no scrolling
        screen.close()
    for title, name in (
        ("Concept neurons", "concepts"),
        ("Shortcut audit", "shortcuts"),
        ("Training report", "training"),
    ):
        open_page(page, server, title)
        assert "Research use only" in page.content()
        shoot(page, name)
    page.close()


def test_nothing_is_fetched_from_outside_the_server(server: str, browser) -> None:
    """Every request of a page load and a click through every page goes to the server itself (a
    `:material/` page icon, for one, makes the browser fetch a font from an outside host)."""
    own = urllib.parse.urlsplit(server).netloc
    requested: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda socket: requested.append(socket.url))
    try:
        page.goto(server)
        settle(page)
        page.wait_for_selector("text=Research use only", timeout=60_000)
        for title in PAGE_TITLES[1:]:
            go_to(page, title)
            settle(page)
            if title == "Case review":  # the reading screen has no heading: its viewer is the page
                wait_for_viewer(page)
            else:
                page.wait_for_selector(f"h1:has-text('{title.split()[0]}')", timeout=120_000)
        page.wait_for_timeout(1500)  # late requests: fonts, icons, images
    finally:
        context.close()
    assert requested, "the recorder saw the page load"
    outside = sorted({url for url in requested if urllib.parse.urlsplit(url).netloc != own})
    assert outside == [], f"requests left the machine: {outside}"


def bar_labels(page) -> list[str]:
    """The y-axis labels (``#latent``) of the page's last chart, top to bottom."""
    chart = page.locator("[data-testid=stVegaLiteChart]").last
    return chart.evaluate(
        """e => [...e.querySelectorAll('g.role-axis-label text')]
            .filter(t => t.textContent.startsWith('#'))
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
            .map(t => t.textContent)"""
    )


def test_contribution_bars_stay_ranked_when_the_view_changes(server: str, browser, demo_cache: Path) -> None:
    """Vega keeps a previous dataset's axis order when a chart is redrawn with new data, unless the order
    is in the spec: every view of the case must show its largest contributions first."""
    from mammo_sae.analysis.interventions import contributions

    ensure_demo_dataset(cache=demo_cache)
    bundle = Bundle.open(demo_bundle_dir())
    flags = evq.latent_flags(bundle)
    study = study_table(bundle)["study_id"].iloc[0]
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_page(page, server, "Case review")
    assert shown_study(page) == study[:8]
    panel(page, "Drivers")
    head = page.get_by_role("combobox", name="Head").first.input_value()
    views = [v for v in hanging_views(bundle, study) if v.position is not None]
    for view in [*views[1:], views[0]]:
        choose_view(page, f"{view.laterality} {view.view}")
        ranked = contributions(bundle.mean_latents[view.position], bundle.heads, head).head(15)
        expected = [f"#{t}{evq.badge_suffix(flags[t])}" for t in ranked["latent"]]
        assert bar_labels(page) == expected, f"{view.laterality} {view.view}"
    page.close()


def shown_study(page) -> str:
    """The first eight characters of the study the reading screen shows (its picker's label)."""
    return page.get_by_role("combobox", name="Study").first.input_value()[:8]


def choose_view(page, name: str) -> None:
    """Pick a view (the sidebar's View box)."""
    box = page.get_by_role("combobox", name="View", exact=True).first
    box.click()
    box.fill(name)
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    settle(page)
    page.wait_for_timeout(1000)


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
    source = read_mammogram(phantom)
    display = DicomEncoding(  # the phantom's own display attributes: a MONOCHROME1 file stays inverted
        photometric=source.photometric,
        bits_stored=source.bits_stored,
        windows=tuple(source.window_presets),
        voi_lut_function=None if source.voi_lut_function == "LINEAR" else source.voi_lut_function,
    )
    write_mammogram(
        identifying, source.stored, laterality="L", view="CC", encoding=display, tags=identifying_tags()
    )
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
    shoot(page, "upload")  # before opening the metadata, which scrolls the page down to it
    page.get_by_text("Metadata (allow-listed)").click()
    page.wait_for_timeout(500)
    content = page.content()
    assert leaked(content) == [], f"identifying values reached the page: {leaked(content)}"
    assert "mass probability" in content
    page.close()


# --- several users at once -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One user's choices on the Interventions page."""

    study: str
    mode: str
    concept: str


def pick(page, label: str, option: str) -> None:
    """Type ``option`` into the selectbox labelled ``label`` and choose it (no wait for the rerun)."""
    for _ in range(3):  # a rerun that redraws the widget while its list is open detaches the option: again
        box = page.get_by_role("combobox", name=label).first
        box.click()
        box.fill(option)
        try:
            page.get_by_role("option", name=option, exact=True).first.click(timeout=10_000)
            return
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
            settle(page)
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def settle_all(pages: list) -> None:
    for page in pages:
        settle(page)


def go_to(page, title: str) -> None:
    """Switch page inside the same session (a new URL would start a new session)."""
    page.locator("[data-testid=stSidebarNavLink]").filter(has_text=title).first.click()


def shown_metrics(page) -> dict[str, tuple[float, float]]:
    """``{head: (value, delta)}`` of the page's probability metrics."""
    out = {}
    metrics = page.locator("[data-testid=stMetric]")
    for i in range(metrics.count()):
        metric = metrics.nth(i)
        label = metric.locator("[data-testid=stMetricLabel]").inner_text().strip()
        value = float(metric.locator("[data-testid=stMetricValue]").inner_text())
        delta = float(re.sub(r"[^0-9+.\-]", "", metric.locator("[data-testid=stMetricDelta]").inner_text()))
        out[label.removesuffix(" probability")] = (value, delta)
    return out


def wait_for_metrics(page, expected: dict[str, tuple[float, float]], timeout: float = 60) -> None:
    """Poll until the metrics show ``expected`` (3 decimals), then assert (a fragment may still be drawing)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = shown_metrics(page)
        close = shown.keys() == expected.keys() and all(
            abs(shown[h][0] - v) <= 1.5e-3 and abs(shown[h][1] - d) <= 1.5e-3
            for h, (v, d) in expected.items()
        )
        if close or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert close, f"shown {shown}, the library computes {expected}"


def assert_no_errors(page, page_errors: list[str]) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, "a traceback is on the page"
    errors = page.locator("[data-testid=stAlertContentError]")
    assert errors.count() == 0, [errors.nth(i).inner_text() for i in range(errors.count())]
    assert page_errors == [], page_errors


def intervention_numbers(bundle, session: Session) -> dict[str, tuple[float, float]]:
    """What the library computes for the view Interventions opens the session's study on (its finding)."""
    positions = [v.position for v in hanging_views(bundle, session.study) if v.position is not None]
    position = intervention_views.finding_view(
        bundle, positions, intervention_views.finding_head(bundle, positions)
    )
    scale = intervention_scale(bundle, concept=session.concept, k=10, mode=session.mode)
    table = case_intervention(bundle, position, scale)
    return {r.head: (r.after, r.change) for r in table.itertuples()}


def test_four_sessions_at_once_see_only_their_own_case_and_numbers(
    server: str, browser, demo_cache: Path
) -> None:
    ensure_demo_dataset(cache=demo_cache)  # the phantoms Case review shows, made before the clock starts
    bundle = Bundle.open(demo_bundle_dir())
    studies = study_table(bundle)["study_id"].tolist()
    sessions = [
        Session(studies[3], "suppress", "calcification"),
        Session(studies[11], "keep", "calcification"),
        Session(studies[19], "suppress", "mass"),
        Session(studies[27], "keep", "mass"),
    ]
    expected = [intervention_numbers(bundle, s) for s in sessions]
    afters = {tuple(round(v, 3) for v, _ in e.values()) for e in expected}
    assert len(afters) == len(sessions), "each session's numbers differ, so cross-talk would show"
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in sessions]
    pages = [context.new_page() for context in contexts]
    page_errors: list[list[str]] = [[] for _ in pages]
    for page, errors in zip(pages, page_errors, strict=True):
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
    try:
        for page in pages:  # every step is sent to all four sessions before waiting for any
            page.goto(f"{server}/interventions")
        settle_all(pages)
        for page, session in zip(pages, sessions, strict=True):
            pick(page, "Case", session.study)
        settle_all(pages)
        for page, session in zip(pages, sessions, strict=True):
            pick(page, "Top-k of concept", session.concept)
        settle_all(pages)
        for page, session in zip(pages, sessions, strict=True):
            if session.mode == "keep":
                page.locator("[data-testid=stRadio]").filter(has_text="Intervention").get_by_text(
                    "keep", exact=True
                ).click()
        settle_all(pages)
        for page, session, numbers, errors in zip(pages, sessions, expected, page_errors, strict=True):
            assert page.get_by_role("combobox", name="Case").first.input_value() == session.study
            wait_for_metrics(page, numbers)
            assert_no_errors(page, errors)
        for page in pages:
            go_to(page, "Case review")
        settle_all(pages)
        for page, session, errors in zip(pages, sessions, page_errors, strict=True):
            wait_for_viewer(page)
            assert shown_study(page) == session.study[:8], "Case review opens on the session's own case"
            assert viewer_frame(page).locator("#viewer").get_attribute("data-study") == session.study
            assert_no_errors(page, errors)
    finally:
        for context in contexts:
            context.close()


def name_latent(page, latent: int, name: str | None = None, note: str | None = None) -> None:
    """On Concept neurons: show ``latent`` and fill its form (no save, no wait for the rerun)."""
    number = page.get_by_role("spinbutton", name="Latent").first
    number.fill(str(latent))
    number.press("Enter")
    settle(page)
    page.wait_for_selector(f"h2:has-text('#{latent}')", timeout=60_000)
    for label, text in (("Name", name), ("Note", note)):
        if text is not None:
            fill_until_held(page, label, text)


def fill_until_held(page, label: str, text: str) -> None:
    """Fill a text box and check it kept the text: a rerun that redraws the form meanwhile drops what was typed."""
    for _ in range(3):
        box = page.get_by_role("textbox", name=label, exact=True).first
        box.fill(text)
        page.wait_for_timeout(300)
        if box.input_value() == text:
            return
        settle(page)
    raise AssertionError(f"the {label} box did not keep {text!r}")


def save_form(page) -> None:
    page.get_by_role("button", name="Save").first.click()


def test_two_sessions_naming_at_once_keep_both_edits(notes_server: str, browser, notes_dir: Path) -> None:
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    first, second = pages = [context.new_page() for context in contexts]
    try:
        for page in pages:
            page.goto(f"{notes_server}/concepts")
        settle_all(pages)
        name_latent(first, 101, name="ducts")
        name_latent(second, 202, name="skin line")
        for page in pages:
            save_form(page)
        settle_all(pages)
        name_latent(first, 303, name="specks")  # both forms open latent 303 before either saves
        name_latent(second, 303, note="fine, clustered")
        for page in pages:
            save_form(page)
        settle_all(pages)
        for page in pages:
            page.wait_for_selector("text=Saved #303", timeout=60_000)
            assert_no_errors(page, [])
    finally:
        for context in contexts:
            context.close()
    saved = demo_notes(notes_dir)
    assert saved["101"]["name"] == "ducts" and saved["202"]["name"] == "skin line"
    assert (saved["303"]["name"], saved["303"]["note"]) == ("specks", "fine, clustered")


# --- untrusted text --------------------------------------------------------------------------------------


def assert_shown_as_text(page, *texts: str) -> None:
    """Nothing a payload could create is in the DOM, and each of ``texts`` is shown literally."""
    report = untrusted.payload_dom_report(page)
    assert report == {k: [] for k in report}, report
    body = page.inner_text("body")
    missing = [t for t in texts if t not in body]
    assert not missing, f"not shown literally: {missing}"


def test_untrusted_names_notes_and_dicom_strings_are_shown_as_text(
    notes_server: str, browser, demo_cache: Path, tmp_path: Path
) -> None:
    phantom = next((ensure_demo_dataset(cache=demo_cache) / "images").rglob("*.dicom"))
    hostile = untrusted.hostile_dicom(phantom, tmp_path / untrusted.UPLOAD_NAME)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(f"{notes_server}/concepts")
        settle(page)
        for latent, name in ((404, untrusted.HTML_NAME), (405, untrusted.MARKDOWN_NAME)):
            name_latent(page, latent, name=name, note=untrusted.NOTE)
            save_form(page)
            settle(page)
            page.wait_for_selector("text=Saved #", timeout=60_000)
            page.wait_for_function(
                "(t) => document.body.innerText.includes(t)", arg=f"Saved #{latent} {name}."
            )
            assert_shown_as_text(page, f"#{latent} {name}", f"Saved #{latent} {name}.")
        go_to(page, "Interventions")
        settle(page)
        page.get_by_text("More latents and per-latent scales").click()
        pick(page, "Also these latents", f"#404 {untrusted.HTML_NAME}")
        settle(page)
        assert_shown_as_text(page, f"#404 {untrusted.HTML_NAME}")
        go_to(page, "Upload")
        settle(page)
        upload = page.locator("[data-testid=stFileUploaderDropzoneInput]")
        upload.set_input_files(str(hostile))
        settle(page)
        page.wait_for_selector("[data-testid=stMetricValue]", timeout=120_000)
        page.get_by_text("Metadata (allow-listed)").click()
        page.get_by_text("manufacturer_model_name").first.wait_for(timeout=30_000)  # the table, expanded
        page.wait_for_timeout(500)
        assert_shown_as_text(page, untrusted.MODEL_NAME, untrusted.WINDOW_NAME, untrusted.UPLOAD_NAME)
        assert dialogs == [], f"a payload ran: {dialogs}"
    finally:
        context.close()


# --- where is the evidence? (the small analysis bundle: evidence maps, flags, shortcut audit) ---------------


def first_study_views(bundle: Bundle) -> tuple[str, list]:
    study = study_table(bundle)["study_id"].iloc[0]
    return study, [v for v in hanging_views(bundle, study) if v.position is not None]


def markdown_lines(page, text: str) -> list[str]:
    lines = page.locator("[data-testid=stMarkdownContainer]").filter(has_text=text)
    return [lines.nth(i).inner_text().strip() for i in range(lines.count())]


def overlay_choice(page) -> str:
    radio = page.locator("[data-testid=stRadio]").filter(has_text="Overlay").first
    return radio.locator("input:checked").first.evaluate("e => e.closest('label').innerText").strip()


def shown_latent(page) -> int | None:
    """The latent whose map the views show (the "Showing #id ..." line), None when none is."""
    lines = markdown_lines(page, "Showing #")
    match = re.search(r"Showing #(\d+)", lines[0]) if lines else None
    return int(match.group(1)) if match else None


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert condition()


def test_case_review_opens_on_the_evidence_map_with_a_line_per_view(
    evidence_server: str, browser, evidence_bundle: Path
) -> None:
    bundle = Bundle.open(evidence_bundle)
    study, views = first_study_views(bundle)
    head = evq.study_head(bundle, [v.position for v in views])
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_page(page, evidence_server, "Case review")
    assert shown_study(page) == study[:8]
    assert page.get_by_role("combobox", name="Overlay").first.input_value() == "evidence map"
    assert page.get_by_role("combobox", name="Head").first.input_value() == head
    expected = [f"{v.laterality} {v.view} {evq.evidence_line(bundle, v.position, head)}" for v in views]
    assert markdown_lines(page, " evidence: ") == expected
    canvases = viewer_frame(page).locator("canvas[data-ready=true]")
    assert canvases.count() == len(views)
    shoot(page, "case_review_evidence")
    page.close()


def test_clicking_a_view_shows_what_fires_there_and_a_row_overlays_its_latent(
    evidence_server: str, browser, evidence_bundle: Path
) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_page(page, evidence_server, "Case review")
    canvas = viewer_frame(page).locator("canvas[data-ready=true]").first
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5)  # on the breast
    settle(page)
    page.wait_for_selector("text=, token ", timeout=60_000)
    table = page.locator("[data-testid=stDataFrame]").first
    assert table.is_visible()
    shoot(page, "case_review_what_fires_here")
    frame = table.bounding_box()
    page.mouse.click(frame["x"] + 16, frame["y"] + 35 + 17)  # the first row's selection box
    settle(page)
    wait_for(lambda: query(page).get("overlay") == "latent" and "latent" in query(page))
    page.close()


def test_clicking_a_contribution_bar_overlays_its_latent(
    evidence_server: str, browser, evidence_bundle: Path
) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_page(page, evidence_server, "Case review")
    assert query(page).get("overlay") != "latent", "the evidence map first"
    panel(page, "Drivers")
    bars = page.locator("[data-testid=stVegaLiteChart]").filter(has=page.locator("g.mark-rect")).last
    bar = bars.locator("g.mark-rect path").nth(2)
    latent = int(re.search(r"latent: #(\d+)", bar.get_attribute("aria-label")).group(1))
    bar.click()
    settle(page)
    wait_for(lambda: query(page).get("overlay") == "latent" and query(page).get("latent") == str(latent))
    page.close()


def test_flags_show_as_badges(evidence_server: str, browser, evidence_bundle: Path) -> None:
    flags = evq.latent_flags(Bundle.open(evidence_bundle))
    flagged = flags[flags != ""]
    if flagged.empty:
        pytest.skip("the small analysis bundle flags no latent")
    latent, text = int(flagged.index[0]), evq.flag_text(evq.flag_list(flagged.iloc[0])[0])
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{evidence_server}/case_review?overlay=latent&latent={latent}")  # a link opens that latent
    settle(page)
    wait_for_viewer(page)
    badge = (
        page.locator("[data-testid=stCaptionContainer]")
        .filter(has_text=f"Map: #{latent}")
        .locator("span", has_text=text)
    )
    assert badge.count() >= 1 and badge.first.is_visible(), f"a {text} badge beside #{latent}"
    open_page(page, evidence_server, "Concept neurons")
    number = page.get_by_role("spinbutton", name="Latent").first
    number.fill(str(latent))
    number.press("Enter")
    settle(page)
    page.wait_for_selector(f"h2:has-text('#{latent}')", timeout=60_000)
    assert page.locator("[data-testid=stMarkdownContainer] span", has_text=text).first.is_visible()
    page.close()


def test_the_shortcut_audit_button_suppresses_the_flagged_latents_on_interventions(
    evidence_server: str, browser, evidence_bundle: Path
) -> None:
    bundle = Bundle.open(evidence_bundle)
    flagged = evq.suppressed_latents(bundle)
    if not flagged:
        pytest.skip("the small analysis bundle flags no off-breast or marker latent")
    _, views = first_study_views(bundle)
    positions = [v.position for v in views]
    opened = intervention_views.finding_view(
        bundle, positions, intervention_views.finding_head(bundle, positions)
    )
    scale = intervention_scale(bundle, concept=None, k=10, mode="suppress", scales={t: 0.0 for t in flagged})
    expected = {r.head: (r.after, r.change) for r in case_intervention(bundle, opened, scale).itertuples()}
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    open_page(page, evidence_server, "Shortcut audit")
    shoot(page, "shortcut_audit")
    page.get_by_role("button", name=re.compile(r"Suppress the .* flagged latents")).first.click()
    settle(page)
    page.wait_for_selector("h1:has-text('Interventions')", timeout=60_000)
    page.wait_for_selector(f"text=Suppress the {len(flagged):,} flagged latents", timeout=60_000)
    wait_for_metrics(page, expected)
    page.close()
