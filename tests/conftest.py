"""Session-wide fixtures shared by several test modules (built from config objects, not argv)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from analysis_fixtures import Setting, analyze_config, build_setting
from ljpeg_encoder import install as install_lossless_jpeg_encoder

install_lossless_jpeg_encoder()  # the DICOM tests write JPEG Lossless files; the package ships no encoder

_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def _main_module_restored() -> Iterator[None]:
    """Streamlit's AppTest runs a page as ``__main__`` and can leave it in ``sys.modules``; a process pool
    started later in the same worker (spawn) would then re-import the page instead of the test runner."""
    yield
    if sys.modules.get("__main__") is not _MAIN:
        sys.modules["__main__"] = _MAIN


@pytest.fixture(scope="session")
def analysis_setting(tmp_path_factory: pytest.TempPathFactory) -> Setting:
    """Phantoms, a random resnet18 classifier, its store and a briefly trained SAE (built once)."""
    return build_setting(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="session")
def analysis_bundle_path(analysis_setting: Setting) -> Path:
    from mammo_sae.analyze import run as analyze  # the library function that `analyze` runs

    out = analysis_setting.root / "bundle"
    analyze(analyze_config(analysis_setting, out))
    return out


@pytest.fixture(scope="session")
def finetune_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small phantom studies with both classes of both findings in the training slice."""
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    root = tmp_path_factory.mktemp("finetune") / "phantoms"
    config = PhantomConfig(studies=6, seed=5, height=256, width=208, test_fraction=0.0, mass_rate=0.5)
    generate_dataset(root, config, workers=1)
    return root


@pytest.fixture(scope="session")
def demo_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's held-out phantoms, generated once per test run (about a minute on two cores) and shared,
    as hard links, by every module that needs them (see ``linked_demo_cache``). Under pytest-xdist the
    workers share one folder: the first generates, the others wait on the lock and find it ready."""
    from filelock import FileLock

    from mammo_sae.demo import ensure_demo_dataset

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder above every worker's own
    with FileLock(str(shared / "demo-phantoms.lock")):
        return ensure_demo_dataset(cache=shared / "demo-phantoms")
